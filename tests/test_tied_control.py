"""The tied-group control, dynamic sampling and the gradient-share logging of the compact trainer (issues 19, 24).

* ``objective.tied_loss_weight``: GRPO's run is bit-identical with 0 and 1 (its loss on tied rows is 0
  already); LAD's changes (its f(r) term on tied rows is the thing switched off);
* ``logging.tied_grad_share`` adds its metrics and changes no other number;
* ``rollout.dynamic_sampling``: every trained group is untied, the run is deterministic, and too few
  untied groups within ``rollout.max_sampling_rounds`` stop the run with one clear error;
* the pieces: tied_groups, extra_prompts, concat_rows.
"""

from __future__ import annotations

import json

import pytest
import torch
from test_llm_train import fast_args, read_rows, strip_times

from lad_ref.llm import train as train_mod
from lad_ref.llm.rollout import RolloutBatch

SHARE_KEYS = {"train/grad_norm_tied", "train/grad_norm_untied", "train/grad_share_tied"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("sft_cache_tied")


def run_rows(cache, out, *extra):
    assert train_mod.main(fast_args(cache, out, *extra)) == 0
    return strip_times(read_rows(out)), json.loads((out / "results.json").read_text())


def test_grpo_is_bit_identical_with_tied_loss_weight_0_and_1(cache, tmp_path):
    a = run_rows(cache, tmp_path / "w1", "--objective", "grpo")
    b = run_rows(cache, tmp_path / "w0", "--objective", "grpo", "--objective.tied_loss_weight", "0")
    assert a == b
    assert max(r.get("train/tied_groups", 0) for r in a[0]) > 0  # there were tied groups to weight


def test_lad_changes_with_tied_loss_weight_0(cache, tmp_path):
    a = run_rows(cache, tmp_path / "w1", "--objective", "lad")
    b = run_rows(cache, tmp_path / "w0", "--objective", "lad", "--objective.tied_loss_weight", "0")
    assert a[0][1]["train/reward_mean"] == b[0][1]["train/reward_mean"]  # same first rollouts
    # LAD moves only once an untied group moves the policy (at r = 1 its tied rows' gradient is 0); from the
    # first step with both kinds of group on, switching its f(r) term off on tied rows changes the update
    mixed = [i for i, r in enumerate(a[0]) if 0 < r.get("train/tied_groups", 0) < 1]
    assert mixed, "the tiny run had no step with tied and untied groups"
    assert a[0][mixed[0]]["train/loss"] != b[0][mixed[0]]["train/loss"]


def test_grad_share_logging_changes_no_other_number(cache, tmp_path):
    a, ra = run_rows(cache, tmp_path / "off", "--objective", "lad")
    b, rb = run_rows(cache, tmp_path / "on", "--objective", "lad", "--logging.tied_grad_share", "true")
    assert ra == rb
    for x, y in zip(a, b):
        extra = set(y) - set(x)
        assert extra <= SHARE_KEYS and (x["step"] == 0 or "train/grad_norm_tied" in extra)
        assert {k: y[k] for k in x} == x
    for y in b[1:]:
        if "train/grad_share_tied" in y:
            assert 0.0 <= y["train/grad_share_tied"] <= 1.0
            want = y["train/grad_norm_tied"] / (y["train/grad_norm_tied"] + y["train/grad_norm_untied"])
            assert y["train/grad_share_tied"] == pytest.approx(want)
    # with every group tied the untied part has no gradient, and vice versa
    assert any(y.get("train/tied_groups") == 1.0 and y["train/grad_norm_untied"] == 0.0 for y in b[1:])
    # on a step with both kinds of group, LAD's tied rows have a gradient once r has moved (the minibatches after
    # the first): a share measured on the first minibatch alone, where r = 1, would read 0
    assert any(0 < y.get("train/tied_groups", 0) < 1 and y["train/grad_share_tied"] > 0 for y in b[1:])


def test_grad_share_splits_the_gradient_exactly():
    # the two parts' gradients add up to the minibatch gradient (the loss is linear in the row weights)
    from lad_ref.llm.config import ModelConfig  # noqa: F401  (the trainer's config module imports cleanly)
    from lad_ref.losses import get_loss

    g = torch.Generator().manual_seed(0)
    theta = torch.randn(8, 3, generator=g, requires_grad=True)
    old = torch.randn(8, 3, generator=g)
    adv = torch.tensor([0.0, 0.0, 1.2, -0.7, 0.0, 0.0, 0.4, -0.9])
    tied = adv == 0
    mask = torch.ones(8, 3)
    fn = get_loss("lad")
    grads = []
    for w in (None, tied.float(), (~tied).float()):
        loss, _ = fn(old, theta, adv, mask, weights=w)
        grads.append(torch.autograd.grad(loss, theta)[0])
    torch.testing.assert_close(grads[1] + grads[2], grads[0])
    assert grads[1].abs().sum() > 0  # LAD has a gradient on tied rows once r != 1


def test_dynamic_sampling_trains_only_untied_groups_deterministically(cache, tmp_path):
    args = ("--objective", "grpo", "--rollout.dynamic_sampling", "true", "--rollout.max_sampling_rounds", "60",
            "--steps", "2", "--sft.steps", "150")
    a, _ = run_rows(cache, tmp_path / "a", *args)
    b, _ = run_rows(cache, tmp_path / "b", *args)
    assert a == b
    for r in a[1:]:
        assert r["rollout/sampling_rounds"] >= 1
        assert r["train/adv_abs_mean"] > 0.5  # no zero-advantage group in the trained batch


def test_dynamic_sampling_beyond_max_rounds_is_one_clear_error(cache, tmp_path):
    with pytest.raises(train_mod.DynamicSamplingError, match=r"rollout.max_sampling_rounds=1 rounds of 4 prompts"):
        train_mod.main(fast_args(cache, tmp_path / "x", "--objective", "grpo", "--rollout.dynamic_sampling", "true",
                                 "--rollout.max_sampling_rounds", "1", "--steps", "1"))


def test_tied_groups_extra_prompts_and_concat_rows():
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.5, 0.5])
    assert train_mod.tied_groups(rewards[:8], 2).tolist() == [True, False, True, False]
    assert train_mod.tied_groups(rewards[:9], 3).tolist() == [True, True, False]
    ex = list(range(50))
    p1 = train_mod.extra_prompts(ex, 3, 1, 8, seed=0)
    assert p1 == train_mod.extra_prompts(ex, 3, 1, 8, seed=0) and len(set(p1)) == 8
    assert p1 != train_mod.extra_prompts(ex, 3, 2, 8, seed=0) != train_mod.extra_prompts(ex, 4, 1, 8, seed=0)

    def batch(lp, lr, base):
        n = 2
        return RolloutBatch(torch.full((n, lp), base), torch.ones(n, lp, dtype=torch.long), torch.full((n, lr), base + 1),
                            torch.ones(n, lr, dtype=torch.long), torch.full((n, lr), -0.5), [f"{base}a", f"{base}b"],
                            torch.zeros(n, dtype=torch.bool))

    cat = train_mod.concat_rows([(batch(2, 3, 10), torch.tensor([1])), (batch(4, 1, 20), torch.tensor([0, 1]))], pad_id=0)
    assert cat.prompt_ids.tolist() == [[0, 0, 10, 10], [20, 20, 20, 20], [20, 20, 20, 20]]
    assert cat.prompt_mask.tolist() == [[0, 0, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]]
    assert cat.response_ids.tolist() == [[11, 11, 11], [21, 0, 0], [21, 0, 0]]
    assert cat.response_mask.tolist() == [[1, 1, 1], [1, 0, 0], [1, 0, 0]]
    assert cat.gen_log_probs[1].tolist() == [-0.5, 0.0, 0.0]
    assert cat.texts == ["10b", "20a", "20b"]

"""Masking (issue 21 item 5): every objective selects valid positions, so padding can hold anything.

* finite inputs give the numbers the code gave before the change, bit for bit (tests/data/loss_values.json,
  recorded from the old losses.py by tests/_masking_fixture.py before anything was changed);
* NaN / +-inf in the padding of log_prob, old_log_prob (and ref_log_prob, entropy, weights) leave the loss
  and the gradient exactly as with clean padding, for every objective and aggregation mode;
* a non-finite log-prob where the mask is 1 is one clear error;
* kl_cov and clip_cov stay finite at log-ratios of 89 and beyond.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from _masking_fixture import FIXTURE, cases, evaluate, fixed_batch

from lad_ref.losses import AGG_MODES, get_objective, objective_names

RECORD = json.loads(FIXTURE.read_text())


def test_fixture_covers_every_recorded_case():
    assert sorted(RECORD) == sorted(k for k, *_ in cases())
    assert len(RECORD) == 160


@pytest.mark.parametrize("key,name,mode,hp,use_w", cases(), ids=[c[0] for c in cases()])
def test_finite_inputs_bit_identical_to_the_recorded_values(key, name, mode, hp, use_w):
    loss, grads = evaluate(name, mode, hp, use_w, fixed_batch())
    want = RECORD[key]
    assert loss.item() == want["loss"]
    assert [g.flatten().tolist() for g in grads] == want["grads"]


def poisoned(batch, value):
    """A copy of ``batch`` with ``value`` in the padding of every per-token tensor (and weights per token)."""
    pad = ~batch["response_mask"].bool()
    out = dict(batch)
    for k in ("old_log_prob", "log_prob", "ref_log_prob", "entropy"):
        out[k] = batch[k].masked_fill(pad, value)
    return out


POISON = (math.nan, math.inf, -math.inf)


def _cases_all_objectives():
    out = []
    for name in objective_names():
        hp = {"kl_cov": {"kl_cov_ratio": 0.2}, "clip_cov": {"clip_cov_ratio": 0.2, "clip_cov_lb": -5.0}}.get(name, {})
        for mode in AGG_MODES:
            out.append((name, mode, hp))
    return out


@pytest.mark.parametrize("value", POISON, ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("name,mode,hp", _cases_all_objectives())
def test_nan_and_inf_in_padding_change_nothing(name, mode, hp, value):
    clean = fixed_batch()
    loss0, grads0 = evaluate(name, mode, hp, name != "lad_theory", clean)
    loss1, grads1 = evaluate(name, mode, hp, name != "lad_theory", poisoned(clean, value))
    assert loss1.item() == loss0.item()
    for g0, g1 in zip(grads0, grads1):
        assert torch.equal(g0, g1)


def test_per_token_weights_with_nan_in_padding_change_nothing():
    b = fixed_batch()
    pad = ~b["response_mask"].bool()
    w = b["weights"].unsqueeze(-1).expand_as(pad).contiguous()
    for name in ("grpo", "lad"):
        fn = get_objective(name).loss
        outs = []
        for ww in (w, w.masked_fill(pad, math.nan)):
            lp = b["log_prob"].clone().requires_grad_(True)
            loss, _ = fn(b["old_log_prob"], lp, b["advantages"], b["response_mask"], weights=ww)
            outs.append((loss.item(), torch.autograd.grad(loss, lp)[0]))
        assert outs[0][0] == outs[1][0] and torch.equal(outs[0][1], outs[1][1])


@pytest.mark.parametrize("field", ["log_prob", "old_log_prob"])
@pytest.mark.parametrize("value", POISON, ids=["nan", "inf", "-inf"])
def test_non_finite_log_prob_where_the_mask_is_one_is_one_clear_error(field, value):
    b = fixed_batch()
    b[field] = b[field].clone()
    b[field][0, 0] = value  # response 0 is valid at t = 0
    for name in ("grpo", "lad", "kl_cov", "flowrl"):
        with pytest.raises(ValueError, match=rf"^{field} contains NaN or inf where response_mask is 1"):
            evaluate(name, "token-mean", {}, False, b)


@pytest.mark.parametrize("name", ["kl_cov", "clip_cov"])
def test_kl_cov_and_clip_cov_are_finite_beyond_a_log_ratio_of_89(name):
    hp = {"kl_cov": {"kl_cov_ratio": 0.5}, "clip_cov": {"clip_cov_ratio": 0.5, "clip_cov_lb": -1e9,
                                                        "clip_cov_ub": 1e9}}[name]
    for log_r in (89.0, 100.0, 1000.0, -1000.0):
        b = fixed_batch()
        b["log_prob"] = b["old_log_prob"] + log_r
        loss, grads = evaluate(name, "token-mean", hp, False, b)
        assert math.isfinite(loss.item()) and all(bool(torch.isfinite(g).all()) for g in grads), (name, log_r)

"""The TRL adapter: LadGRPOTrainer trains a tiny local model and optimises exactly lad_ref.losses.

Each run builds nothing from the hub: a ~20k-parameter Qwen2 with a character tokenizer is
materialised in a temporary folder (lad_ref.llm.model.materialise_tiny) and loaded by path.
Skips cleanly without the ``[trl]`` extra. Run with ``pytest -m trl`` or ``pytest -k trl``.
"""

import math
import os

import pytest
import torch

trl = pytest.importorskip("trl", reason="needs the [trl] extra (trl==1.16.0)")
if trl.__version__ != "1.16.0":  # the adapter refuses other versions at import (see check_trl_version)
    pytest.skip(
        f"the TRL adapter is pinned to trl==1.16.0, found trl {trl.__version__}", allow_module_level=True
    )
pytest.importorskip("datasets", reason="needs the [trl] extra (trl==1.16.0)")

from datasets import Dataset  # noqa: E402

from lad_ref.advantages import compute_advantages  # noqa: E402
from lad_ref.divergences import DIVERGENCE_NAMES  # noqa: E402
from lad_ref.integrations.trl import (  # noqa: E402
    SUPPORTED_TRL_VERSION,
    LadGRPOConfig,
    LadGRPOTrainer,
    check_trl_version,
)
from lad_ref.losses import aggregate, get_loss, get_objective, kl_penalty  # noqa: E402

pytestmark = pytest.mark.trl

STEPS = 2


# ----------------------------------------------------------------------------------------------------
# tiny local model, data, reward
# ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory):
    from lad_ref.llm.config import TinyModelConfig
    from lad_ref.llm.model import materialise_tiny

    cfg = TinyModelConfig(
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    return str(materialise_tiny(cfg, tmp_path_factory.mktemp("tiny") / "model", seed=0))


@pytest.fixture(scope="module")
def dataset():
    return Dataset.from_dict({"prompt": ["ab", "cd", "ef", "gh", "ij", "kl", "mn", "op"]})


def char_reward(completions, **kwargs):
    """A deterministic reward with spread inside every group (so advantages are not all zero)."""
    return [(sum(map(ord, c)) % 13) / 13.0 for c in completions]


class RecordingTrainer(LadGRPOTrainer):
    """Records, for every loss call, the inputs, the returned loss and the current log-probs."""

    def _compute_loss(self, model, inputs):
        gen_state = self.clip_cov_generator.get_state()
        loss = super()._compute_loss(model, inputs)
        ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
        attn = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        with torch.no_grad():  # no dropout in the tiny model: this is the forward the loss saw
            logps, entropies, _ = self._get_per_token_logps_and_entropies(
                model, ids, attn, inputs["completion_ids"].size(1), compute_entropy=True
            )
        self.records.append(
            {
                "inputs": {k: v.detach().clone() for k, v in inputs.items() if isinstance(v, torch.Tensor)},
                "loss": loss.detach().clone(),
                "logps": logps,
                "entropies": entropies,
                "gen_state": gen_state,
                "accum": self.current_gradient_accumulation_steps,
            }
        )
        return loss


def make_args(tmp_path, **overrides):
    kw = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=6,
        max_steps=STEPS,
        num_iterations=2,  # so that TRL provides old log-probs and r != 1 on the reused batch
        learning_rate=0.1,
        use_cpu=True,
        report_to="none",
        logging_steps=1,
        save_strategy="no",
        seed=0,
        dataloader_num_workers=0,
    )
    kw.update(overrides)
    return LadGRPOConfig(**kw)


def train(tiny_model_path, dataset, args):
    trainer = RecordingTrainer(
        model=tiny_model_path, reward_funcs=char_reward, args=args, train_dataset=dataset
    )
    trainer.records = []
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p.detach())]
    assert changed == list(before), f"parameters that did not change: {sorted(set(before) - set(changed))}"
    assert trainer.state.global_step == STEPS
    return trainer


# ----------------------------------------------------------------------------------------------------
# the reference: lad_ref.losses on the recorded tensors, with TRL's normalisation written out by hand
# ----------------------------------------------------------------------------------------------------


def hparams(args, rec):
    if args.objective == "lad":
        return {"divergence": args.divergence, "eta": args.eta, "level": args.level}
    eps_hi = args.epsilon if args.epsilon_high is None else args.epsilon_high
    clip = {"clip_ratio_low": args.epsilon, "clip_ratio_high": eps_hi}
    if args.objective == "grpo":
        return {**clip, "clip_ratio_c": args.clip_ratio_c}
    if args.objective == "entadv":
        return {
            **clip,
            "clip_ratio_c": args.clip_ratio_c,
            "entropy": rec["entropies"],
            "alpha": args.alpha,
            "kappa": args.kappa,
        }
    if args.objective == "kl_cov":
        return {"kl_cov_ratio": args.kl_cov_ratio, "ppo_kl_coef": args.ppo_kl_coef}
    if args.objective == "clip_cov":
        gen = torch.Generator()
        gen.set_state(rec["gen_state"])
        return {
            **clip,
            "clip_cov_ratio": args.clip_cov_ratio,
            "clip_cov_lb": args.clip_cov_lb,
            "clip_cov_ub": args.clip_cov_ub,
            "generator": gen,
        }
    if args.objective == "ppo_penalty":
        return {**clip, "clip_ratio_c": args.clip_ratio_c, "beta": args.ppo_penalty_beta,
                "kl_estimator": args.kl_estimator, "tied_only": args.tied_only}
    raise AssertionError(args.objective)


def expected_loss(args, rec):
    inp, logps = rec["inputs"], rec["logps"]
    old = inp.get("old_per_token_logps", logps)
    mask, adv = inp["completion_mask"], inp["advantages"]
    accum = rec["accum"]
    if args.loss_agg_mode != "auto":
        mode, kw, divisor = args.loss_agg_mode, {}, accum
    elif args.loss_type == "dapo":  # tokens of one accumulation window (single process)
        window_tokens = inp["num_items_in_batch"] * accum / args.steps_per_generation
        mode, kw, divisor = "token-mean", {"batch_num_tokens": window_tokens}, 1
    elif args.loss_type == "bnpo":
        mode, kw, divisor = "token-mean", {}, accum
    elif args.loss_type == "grpo":  # TRL: mean over all B rows of each row's token mean
        mode, kw, divisor = "seq-mean-token-mean", {"global_batch_size": mask.shape[0]}, accum
    elif args.loss_type == "dr_grpo":  # sum / (B * max_completion_length)
        mode, kw, divisor = "token-sum", {}, accum * mask.shape[0] * args.max_completion_length
    else:
        raise AssertionError(args.loss_type)
    values = hparams(args, rec)  # the test's own reading of the fields; the inputs split off, the rest built once
    inputs = {k: values.pop(k) for k in ("entropy", "generator") if k in values}
    hp = get_objective(args.objective).make_hparams(values)
    loss, _ = get_loss(args.objective)(old, logps, adv, mask, mode, agg_kwargs=kw, hp=hp, **inputs)
    if args.beta != 0.0:
        kl = kl_penalty(logps, inp["ref_per_token_logps"])
        if args.use_bias_correction_kl:  # TRL 1.16's default: k3 times the ratio (DeepSeek-V3.2)
            kl = kl * torch.exp(logps - old)
        loss = loss + args.beta * aggregate(kl, mask, mode, **kw)
    return loss / divisor


def check_records(trainer, args):
    n_calls = STEPS * args.gradient_accumulation_steps
    assert len(trainer.records) == n_calls
    for rec in trainer.records:
        torch.testing.assert_close(rec["loss"], expected_loss(args, rec), rtol=1e-5, atol=1e-6)
        assert {"rewards", "group_ids"} <= set(rec["inputs"])  # carried through TRL's shuffle
    if trainer.ratio_is_one:
        assert all("old_per_token_logps" not in r["inputs"] for r in trainer.records)
    else:  # the reused batch was generated before an optimizer step: r != 1 there
        reused = trainer.records[-1]
        assert not torch.allclose(reused["inputs"]["old_per_token_logps"], reused["logps"])


def logged(trainer, key):
    return [h[key] for h in trainer.state.log_history if key in h]


# ----------------------------------------------------------------------------------------------------
# tests
# ----------------------------------------------------------------------------------------------------

# one configuration per divergence, spread over the aggregation / accumulation paths
LAD_CASES = {
    "js": {},  # default: loss_type=dapo, loss_agg_mode=auto, grad accumulation 1
    "kl": {"eta": 0.5, "loss_agg_mode": "seq-mean-token-mean"},
    "rkl": {"eta": 2.0, "loss_type": "dr_grpo"},
    "jf": {"loss_type": "grpo", "level": "sequence"},
    "tv": {"loss_agg_mode": "token-mean", "gradient_accumulation_steps": 2},
    "hd": {"eta": 4.0, "gradient_accumulation_steps": 2},  # dapo: global token count of the window
    "neyman": {"eta": 2.0},
}
assert set(LAD_CASES) == set(DIVERGENCE_NAMES)


@pytest.mark.parametrize("divergence", list(LAD_CASES))
def test_lad_trains_and_optimises_lad_ref_loss(divergence, tiny_model_path, dataset, tmp_path):
    args = make_args(tmp_path, objective="lad", divergence=divergence, **LAD_CASES[divergence])
    trainer = train(tiny_model_path, dataset, args)
    check_records(trainer, args)
    for key in ("lad/ratio_mean", "lad/weight_mean", "lad/weight_flip_frac", "policy_loss", "entropy"):
        values = logged(trainer, key)
        assert len(values) == STEPS and all(math.isfinite(v) for v in values), key
    assert logged(trainer, "lad/ratio_mean")[0] == pytest.approx(1.0, abs=1e-5)  # fresh batch: r = 1


def test_trl_advantages_match_carried_rewards(tiny_model_path, dataset, tmp_path):
    """rewards/group_ids arrive with the micro-batch and reproduce TRL's group-normalised advantages."""
    args = make_args(tmp_path, objective="lad", divergence="js", max_steps=1, num_iterations=1)
    trainer = train_one_step(tiny_model_path, dataset, args)
    assert trainer.ratio_is_one  # gradient_accumulation_steps 1, num_iterations 1: TRL gives no old log-probs
    inp = trainer.records[0]["inputs"]
    rewards, groups = inp["rewards"], inp["group_ids"]
    torch.testing.assert_close(rewards, torch.tensor(char_reward(trainer_completions(trainer, inp))))
    for g in groups.unique():  # one whole group per micro-batch here (4 rows, num_generations 4)
        sel = groups == g
        want = (rewards[sel] - rewards[sel].mean()) / (rewards[sel].std() + 1e-4)
        torch.testing.assert_close(inp["advantages"][sel], want, rtol=1e-5, atol=1e-6)


def train_one_step(tiny_model_path, dataset, args):
    trainer = RecordingTrainer(
        model=tiny_model_path, reward_funcs=char_reward, args=args, train_dataset=dataset
    )
    trainer.records = []
    trainer.train()
    return trainer


def trainer_completions(trainer, inp):
    tok = trainer.processing_class
    ids = inp["completion_ids"].masked_fill(inp["completion_mask"] == 0, tok.pad_token_id)
    return tok.batch_decode(ids, skip_special_tokens=True)


BASELINE_CASES = {
    "grpo": {"beta": 0.04, "loss_type": "bnpo", "epsilon_high": 0.28},  # + k3 KL to the reference model
    "entadv": {"loss_type": "grpo"},
    "kl_cov": {"kl_cov_ratio": 0.2, "advantage_estimator": "rloo"},
    "clip_cov": {"clip_cov_ratio": 0.2, "clip_cov_lb": -10.0, "clip_cov_ub": 10.0},
    # ppo_penalty_beta is ppo_penalty's beta (TRL's own beta stays the reference-KL coefficient)
    "ppo_penalty": {"ppo_penalty_beta": 0.3, "kl_estimator": "k2", "tied_only": True, "num_iterations": 2},
}


@pytest.mark.parametrize("objective", list(BASELINE_CASES))
def test_baselines_train_and_optimise_lad_ref_loss(objective, tiny_model_path, dataset, tmp_path):
    args = make_args(tmp_path, objective=objective, **BASELINE_CASES[objective])
    trainer = train(tiny_model_path, dataset, args)
    check_records(trainer, args)
    assert len(logged(trainer, "policy_loss")) == STEPS
    if args.beta:
        assert len(logged(trainer, "kl")) == STEPS
    if args.advantage_estimator == "rloo":
        inp = trainer.records[0]["inputs"]  # one whole group per micro-batch
        want = compute_advantages(inp["rewards"], inp["group_ids"], "rloo")
        torch.testing.assert_close(inp["advantages"], want)


def test_flowrl_and_unknown_objectives_fail_clearly(tmp_path):
    with pytest.raises(
        ValueError, match=r"FlowRL needs a learned log Z head.*lad, grpo, entadv, kl_cov, clip_cov"
    ):
        make_args(tmp_path, objective="flowrl")
    with pytest.raises(ValueError, match=r"unknown objective 'ppo'; valid choices are lad, grpo"):
        make_args(tmp_path, objective="ppo")
    with pytest.raises(ValueError, match="unknown divergence 'kl2'"):
        make_args(tmp_path, divergence="kl2")
    with pytest.raises(ValueError, match="eta must be a finite number > 0"):
        make_args(tmp_path, eta=0.0)
    with pytest.raises(ValueError, match="loss_type='cispo' names a TRL-only objective"):
        make_args(tmp_path, loss_type="cispo")
    with pytest.raises(ValueError, match="entropy bonus"):
        make_args(tmp_path, entropy_coef=0.01)


def test_grpo_loss_type_divides_by_all_rows_as_trl(tiny_model_path, dataset, tmp_path):
    """loss_type='grpo': TRL averages the per-row token means over ALL rows, fully masked ones included
    (trl/trainer/grpo_trainer.py, ``loss_type == "grpo"``); with 2 of 8 rows masked lad_ref divided by 6."""
    args = make_args(tmp_path, objective="grpo", loss_type="grpo", gradient_accumulation_steps=2)
    trainer = LadGRPOTrainer(model=tiny_model_path, reward_funcs=char_reward, args=args, train_dataset=dataset)
    g = torch.Generator().manual_seed(0)
    mat = torch.rand(8, 5, generator=g)
    mask = torch.ones(8, 5)
    mask[1] = 0
    mask[6] = 0
    mask[3, 2:] = 0
    trainer.current_gradient_accumulation_steps = 2  # set by TRL's training loop; the window of 2 micro-batches
    mode, kw, divisor = trainer.aggregation({}, "train", batch_size=8)
    ours = aggregate(mat, mask, mode, **kw) / divisor
    trl_grpo = ((mat * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean() / 2
    torch.testing.assert_close(ours, trl_grpo)


def test_objective_fields_are_the_hparam_dataclasses_names(tmp_path):
    """Every hyperparameter of every objective TRL can run is a LadGRPOConfig field (same default) or TRL's own."""
    import dataclasses

    from lad_ref.integrations.trl import TRL_SUPPLIED_HPARAMS, hp_from_args, objective_fields, trl_objectives
    from lad_ref.losses import get_objective

    fields = {f.name: f.default for f in dataclasses.fields(LadGRPOConfig)}
    derived = objective_fields()
    for name in trl_objectives():
        for key, default in get_objective(name).defaults().items():
            field_name = key if derived.get(key, (None, None))[1] == key and key in fields else f"{name}_{key}"
            assert key in TRL_SUPPLIED_HPARAMS or fields[field_name] == default, (name, key)
    assert "ppo_penalty_beta" in fields and fields["beta"] == 0.0  # GRPOConfig's beta stays TRL's reference KL
    args = make_args(tmp_path, objective="ppo_penalty", ppo_penalty_beta=0.3, kl_estimator="k1", beta=0.04)
    hp = hp_from_args(args, 0.2, 0.28)
    assert (hp.beta, hp.kl_estimator, hp.clip_ratio_high) == (0.3, "k1", 0.28)  # TRL's beta is not it
    with pytest.raises(ValueError, match=r"ppo_penalty_beta=0.5 applies to objective 'ppo_penalty' only"):
        make_args(tmp_path, objective="grpo", ppo_penalty_beta=0.5)
    assert "kl_cov_coef" not in fields and fields["ppo_kl_coef"] == 0.1  # verl's name
    with pytest.raises(ValueError, match=r"level='sequence' applies to objective 'lad' only; got objective 'grpo'"):
        make_args(tmp_path, objective="grpo", level="sequence")


def test_plain_grpo_config_rejected(tiny_model_path, tmp_path):
    from trl import GRPOConfig

    with pytest.raises(TypeError, match="LadGRPOConfig"):
        LadGRPOTrainer(
            model=tiny_model_path,
            reward_funcs=char_reward,
            args=GRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none"),
        )


def test_trl_version_check(monkeypatch):
    check_trl_version(SUPPORTED_TRL_VERSION)
    monkeypatch.delenv("LAD_REF_ALLOW_UNTESTED_TRL", raising=False)
    with pytest.raises(ImportError, match=r"needs trl==1\.16\.0.*found trl 1\.15\.0"):
        check_trl_version("1.15.0")
    monkeypatch.setenv("LAD_REF_ALLOW_UNTESTED_TRL", "1")
    with pytest.warns(UserWarning, match="found trl 1.17.0"):
        check_trl_version("1.17.0")
    assert os.environ["LAD_REF_ALLOW_UNTESTED_TRL"] == "1"

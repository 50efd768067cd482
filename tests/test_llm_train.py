"""The RL trainer end to end on the toy task: run folder, evaluate CLI, resume, NaN stop, shared loss objects."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import lad_ref.losses as losses
from lad_ref.llm import evaluate as evaluate_mod
from lad_ref.llm import train as train_mod
from lad_ref.llm.config import ModelConfig, TinyModelConfig, resolve
from lad_ref.llm.model import load_causal_lm, load_tokenizer, materialise_tiny
from lad_ref.llm.rollout import HFRollout, PromptFormatter
from lad_ref.losses import LadHparams

ROOT = Path(__file__).resolve().parents[1]
TOY = str(ROOT / "llm" / "configs" / "toy.yaml")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One SFT cache for the module: every run below starts from the same cached warm start."""
    return tmp_path_factory.mktemp("sft_cache")


def fast_args(cache: Path, out: Path, *extra: str) -> list[str]:
    """toy.yaml shrunk to seconds: 40 SFT steps, 4 RL steps of 4 prompts x 4 samples, 8 held-out prompts."""
    return [
        "--config", TOY, "--output-dir", str(out), "--sft.cache_dir", str(cache), "--no-progress",
        "--sft.steps", "40", "--sft.batch_size", "64", "--sft.warmup_steps", "5",
        "--rollout.prompts_per_step", "4", "--group-size", "4", "--steps", "4",
        "--optim.mini_batch_size", "8", "--optim.micro_batch_size", "4",
        "--eval.num_samples", "4", "--eval.pass_ks", "[1, 2]", "--data.max_eval_prompts", "8",
        "--checkpoint.every", "2", "--logging.plots", "false", *extra,
    ]


def strip_times(rows):
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def read_rows(run: Path):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_trainer_and_bandit_use_the_same_loss_objects(monkeypatch, cache, tmp_path):
    import lad_ref.bandit.train as bandit_train

    assert train_mod.get_objective is losses.get_objective is bandit_train.get_objective
    calls = []
    spec = losses.OBJECTIVES["grpo"]

    def spy(*args, **kwargs):
        calls.append(args[4] if len(args) > 4 else kwargs["loss_agg_mode"])
        return spec.loss(*args, **kwargs)

    monkeypatch.setitem(losses.OBJECTIVES, "grpo", dataclasses.replace(spec, loss=spy))
    assert train_mod.main(fast_args(cache, tmp_path / "run", "--objective", "grpo", "--steps", "1")) == 0
    # 1 step x 2 epochs x (16 / 8) minibatches x (8 / 4) micro-batches (the config's validation calls no loss:
    # building the hyperparameter dataclass validates the values)
    assert len(calls) == 8


@pytest.mark.slow
def test_toy_run_end_to_end(cache, tmp_path):
    run = tmp_path / "lad"
    args = fast_args(cache, run, "--objective", "lad", "--divergence", "js", "--eta", "1", "--logging.plots", "true")
    assert train_mod.main(args) == 0
    cfg = resolve(str(run / "config.yaml"), {})  # the saved config is complete and valid
    assert cfg.objective.name == "lad" and cfg.objective.lad == LadHparams(divergence="js", eta=1.0, level="token")
    rows = read_rows(run)
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4]
    assert "eval/avg_at_k" in rows[0] and "eval/avg_at_k" in rows[-1]
    for key in ("train/reward_mean", "train/accuracy", "train/distinct_correct", "lad/weight_mean", "train/grad_norm"):
        assert key in rows[1]
    assert rows[1]["rollout/logprob_max_abs_diff"] < 1e-4
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert ckpts == ["step_000002", "step_000004"]
    for c in ckpts:
        assert (run / "checkpoints" / c / "model.safetensors").exists()
        assert (run / "checkpoints" / c / "trainer_state.pt").exists()
    assert sorted(p.name for p in (run / "plots").iterdir()) == ["accuracy.png", "distinct_correct.png", "reward.png"]
    results = json.loads((run / "results.json").read_text())
    for split in ("start", "final"):
        for key in ("avg_at_k", "pass_at_k", "distinct_correct", "dist_3", "dist_1", "response_length"):
            assert key in results[split]
    info = json.loads((run / "run_info.json").read_text())
    assert info["start"]["sft"] and Path(info["start"]["cache_path"]).parent == cache
    assert info["start_policy"] == "start_policy" and (run / "start_policy" / "config.json").is_file()  # relative: the run holds its start

    # the standalone evaluator reproduces the final numbers (same seed -> same samples)
    assert evaluate_mod.main(["--run", str(run), "--no-progress"]) == 0
    again = json.loads((run / "eval_step_000004.json").read_text())
    assert {k: again[k] for k in results["final"]} == results["final"]
    assert evaluate_mod.main(["--run", str(run), "--checkpoint", "start", "--no-progress"]) == 0
    start = json.loads((run / "eval_start.json").read_text())
    assert {k: start[k] for k in results["start"]} == results["start"]
    # the Python API (notebooks, studies) gives the CLI's numbers and the samples behind them
    metrics, samples = evaluate_mod.evaluate_run(run, "start")
    assert metrics == start
    k = results["start"]["k"]
    assert samples and all(len(s["responses"]) == k for s in samples)
    assert np.mean([np.mean(s["correct"]) for s in samples]) == pytest.approx(start["avg_at_k"], abs=1e-6)


@pytest.mark.slow
def test_resume_matches_uninterrupted_run(cache, tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert train_mod.main(fast_args(cache, full, "--objective", "lad", "--checkpoint.every", "1")) == 0
    assert train_mod.main(fast_args(cache, cut, "--objective", "lad", "--checkpoint.every", "1", "--stop-after", "3")) == 0
    assert not (cut / "results.json").exists()
    # simulate a crash after step 3 was logged but before its checkpoint was written
    import shutil

    shutil.rmtree(cut / "checkpoints" / "step_000003")
    assert [r["step"] for r in read_rows(cut)] == [0, 1, 2, 3]
    assert train_mod.main(["--resume", str(cut), "--no-progress"]) == 0
    assert json.loads((cut / "results.json").read_text()) == json.loads((full / "results.json").read_text())
    assert strip_times(read_rows(cut)) == strip_times(read_rows(full))
    a = (full / "checkpoints" / "step_000004" / "model.safetensors").read_bytes()
    b = (cut / "checkpoints" / "step_000004" / "model.safetensors").read_bytes()
    assert a == b  # bit-for-bit identical weights


def test_nan_loss_stops_with_last_good_checkpoint(monkeypatch, cache, tmp_path, capsys):
    real_get_loss = losses.get_loss
    seen_steps = []

    def poisoned(name):
        fn = real_get_loss(name)

        def wrapper(*args, **kwargs):
            loss, metrics = fn(*args, **kwargs)
            seen_steps.append(1)
            if len(seen_steps) > 8 * 2:  # 8 loss calls per step: poison step 3
                loss = loss * float("nan")
            return loss, metrics

        return wrapper

    monkeypatch.setattr(train_mod, "get_loss", poisoned)
    run = tmp_path / "nan"
    assert train_mod.main(fast_args(cache, run, "--objective", "grpo")) == 1
    err = capsys.readouterr().err
    assert "nan" in err and "RL step 3" in err and "step_000002" in err and "--resume" in err
    good = run / "checkpoints" / "step_000002"
    assert (good / "model.safetensors").exists() and (good / "trainer_state.pt").exists()
    assert not (run / "results.json").exists()
    model = load_causal_lm(good, ModelConfig(), torch.device("cpu"))
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra, metric",
    [
        (["--objective", "entadv"], "entadv/psi_mean"),
        (["--objective", "kl_cov"], "kl_cov/penalised_frac"),
        (["--objective", "clip_cov"], "clip_cov/zeroed_frac"),
        (["--objective", "flowrl"], "flowrl/delta_abs_mean"),
        (["--objective", "lad", "--level", "sequence", "--kl-coef", "0.05", "--divergence", "hd"], "train/kl_ref"),
    ],
)
def test_every_objective_trains(cache, tmp_path, extra, metric):
    run = tmp_path / "obj"
    assert train_mod.main(fast_args(cache, run, "--steps", "2", *extra)) == 0
    rows = read_rows(run)
    assert metric in rows[1] and all(v == v for v in rows[1].values() if isinstance(v, float))
    if "flowrl" in extra:
        assert (run / "checkpoints" / "step_000002" / "logz_head.safetensors").exists()


def test_prompt_stream_is_a_permutation_per_epoch():
    examples = list(range(10))
    seq = [x for step in range(1, 6) for x in train_mod.prompts_for_step(examples, step, 4, seed=0)]
    assert sorted(seq[:10]) == examples and sorted(seq[10:20]) == examples
    assert seq == [x for step in range(1, 6) for x in train_mod.prompts_for_step(examples, step, 4, seed=0)]
    assert seq != [x for step in range(1, 6) for x in train_mod.prompts_for_step(examples, step, 4, seed=1)]


def test_gradient_accumulation_equals_one_big_minibatch(tmp_path):
    """Micro-batches normalised by the minibatch's token count give the minibatch's exact gradient."""
    folder = materialise_tiny(TinyModelConfig(), tmp_path / "tiny", seed=0)
    tok = load_tokenizer(folder)
    rollout = HFRollout(tok, PromptFormatter(tok, None, None), [tok.eos_token_id], 64)
    params_after = []
    for micro in (16, 4):
        cfg = resolve(TOY, {"optim.mini_batch_size": 16, "optim.micro_batch_size": micro, "optim.epochs": 1,
                            "rollout.prompts_per_step": 4, "rollout.group_size": 4, "objective.name": "lad"})
        model = load_causal_lm(folder, cfg.model, torch.device("cpu"))
        batch = rollout.generate(model, ["17!58=", "5!1=", "12!34=", "20!19="], 4, max_new_tokens=8, seed=0)
        adv = torch.randn(16, generator=torch.Generator().manual_seed(0))
        old = train_mod.batched_log_probs(model, batch, 1.0, 16)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=1.0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
        learner = SimpleNamespace(cfg=cfg, spec=losses.get_objective("lad"), loss_fn=losses.get_loss("lad"),
                                  hp=cfg.objective.lad, model=model, logz_head=None, params=params, optimizer=opt,
                                  scheduler=sched)
        train_mod.update_policy(learner, 1, batch, old, None, adv)
        params_after.append(torch.cat([p.detach().flatten() for p in params]))
    assert torch.allclose(params_after[0], params_after[1], atol=1e-6)

"""lad_ref's compact trainer vs TRL's GRPOTrainer on the same work.

Same tiny model (the toy run's SFT start policy, loaded by path), same prompts (the toy task's
training split), 16 prompts x 8 samples per generation, completions of at most 8 tokens, two
passes over each batch in two minibatches of 64 (4 optimizer steps per generation), LAD(js)
with eta = 1 in both (TRL through lad_ref.integrations.trl.LadGRPOTrainer, whose loss is the same
function). A "step" is one generation plus its 4 optimizer steps. Runs alternate lad_ref / TRL.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.bench_trainer import toy_run
from lad_ref.llm.config import resolve
from lad_ref.llm.tasks import build_task

CONFIG = "llm/configs/toy.yaml"


def _lad_ref_steps(steps: int, root: Path) -> tuple[list[float], str]:
    overrides = {
        "objective.name": "lad", "objective.lad.divergence": "js",
        "rollout.prompts_per_step": 16, "rollout.group_size": 8, "rollout.max_new_tokens": 8,
        "optim.epochs": 2, "optim.mini_batch_size": 64, "optim.micro_batch_size": 64,
    }
    rows, run = toy_run(root, steps, overrides, CONFIG)  # at the process's thread count, as TRL runs
    from lad_ref.llm import checkpoint as ckpt

    start = str(ckpt.start_policy_path(run, ckpt.read_run_info(run)))  # stored relative to the run
    return [r["time/step_s"] for r in rows], start


def _trl_steps(steps: int, model_path: str, root: Path) -> list[float]:
    from datasets import Dataset
    from transformers import TrainerCallback

    from lad_ref.integrations.trl import LadGRPOConfig, LadGRPOTrainer

    logging.getLogger("lad_ref.integrations.trl").setLevel(logging.ERROR)
    cfg = resolve(CONFIG, {"output_dir": str(root / "unused")})
    task = build_task(cfg)
    prompts = [e.prompt for e in task.train]
    data = Dataset.from_dict({"prompt": prompts, "idx": list(range(len(prompts)))})

    def reward(completions, idx, **_):
        return [task.reward(task.train[i], c) for c, i in zip(completions, idx)]

    class Timer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []

        def on_step_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.times.append(time.perf_counter() - self.t0)

    timer = Timer()
    args = LadGRPOConfig(
        output_dir=str(root / "trl"), objective="lad", divergence="js", eta=1.0,
        per_device_train_batch_size=64, gradient_accumulation_steps=1, steps_per_generation=2,
        num_generations=8, num_iterations=2, max_completion_length=8, temperature=1.0, learning_rate=1e-4,
        max_steps=4 * steps, use_cpu=True, report_to="none", logging_steps=10_000, save_strategy="no", seed=0,
        dataloader_num_workers=0, beta=0.0,
    )
    trainer = LadGRPOTrainer(model=model_path, reward_funcs=reward, args=args, train_dataset=data,
                             callbacks=[timer])
    trainer.train()
    # one lad_ref step = one generation + 4 optimizer steps = 4 TRL steps
    return [sum(timer.times[i:i + 4]) for i in range(0, len(timer.times) - 3, 4)]


def run(steps: int = 8, repeats: int = 3) -> dict:
    ours, theirs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # lad_ref, TRL, TRL, lad_ref, ...: neither always runs first. TRL loads, by path, the warm
        # start that lad_ref's first run trained and cached.
        model_path = None
        for rep in range(repeats):
            for who in ("ours", "theirs") if rep % 2 == 0 else ("theirs", "ours"):
                if who == "ours":
                    t, model_path = _lad_ref_steps(steps, root / f"ours{rep}")
                    ours += t[1:]  # warm-up discarded
                else:
                    theirs += _trl_steps(steps, model_path, root / f"theirs{rep}")[1:]
    med = statistics.median
    res = {
        "lad_ref_step": {"median_s": med(ours), "min_s": min(ours), "max_s": max(ours), "n": len(ours)},
        "trl_step": {"median_s": med(theirs), "min_s": min(theirs), "max_s": max(theirs), "n": len(theirs)},
        "threads": torch.get_num_threads(),
    }
    res["ratio_lad_ref_over_trl"] = med(ours) / med(theirs)
    a, b = res["lad_ref_step"], res["trl_step"]
    res["markdown"] = "\n".join([
        "| same work, LAD(js), 128 completions, 4 optimizer steps | median ms | min-max ms |",
        "|---|---|---|",
        f"| lad_ref compact trainer step | {a['median_s'] * 1e3:.0f} | {a['min_s'] * 1e3:.0f}-{a['max_s'] * 1e3:.0f} |",
        f"| TRL 1.16.0 GRPOTrainer (LadGRPOTrainer) step | {b['median_s'] * 1e3:.0f} | "
        f"{b['min_s'] * 1e3:.0f}-{b['max_s'] * 1e3:.0f} |",
        f"\nlad_ref / TRL = {res['ratio_lad_ref_over_trl']:.2f} (target <= 1).",
    ])
    return res

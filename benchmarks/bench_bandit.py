"""Bandit: wall time of the full ``--all`` sweep, steps/s of one objective, and the closed-form floor."""

from __future__ import annotations

import time

from benchmarks.common import interleaved, summarise
from lad_ref.bandit import BanditRun, TrimodalBandit, sweep_runs, train_bandit


def run(steps: int = 4000, repeats: int = 3) -> dict:
    sweep = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        results = train_bandit(sweep_runs("exact"), steps=steps, progress=False)
        sweep.append(time.perf_counter() - t0)
    one = interleaved(
        {
            "lad_js": lambda: train_bandit([BanditRun("lad", "js")], steps=1000, progress=False),
            "grpo": lambda: train_bandit([BanditRun("grpo")], steps=1000, progress=False),
        },
        repeats=repeats,
        warmup=1,
    )
    t0 = time.perf_counter()
    for _ in range(1000):
        TrimodalBandit().target(1.0)
    floor = (time.perf_counter() - t0) / 1000
    return {
        "sweep_runs": len(results),
        "sweep_steps": steps,
        "sweep_wall": summarise(sweep),
        "target_sweep_s": 2.0,
        "steps_per_s": {k: 1000 / v["median_s"] for k, v in one.items()},
        "closed_form_optimum_s": floor,
    }

"""Bandit: wall time of the full ``--all`` sweep, steps/s of one objective, the cost of one loss call
with and without metrics / validation, the closed-form floor, and (``python -m benchmarks.bench_bandit
--baseline DIR``) the sweep of another checkout side by side with this one.

The machine is shared, so every comparison is interleaved (A B, B A, ...) in one process and
reported as medians with their range, never as a single number.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import interleaved, machine, summarise
from lad_ref.bandit import BanditRun, TrimodalBandit, sweep_runs, train_bandit
from lad_ref.losses import get_objective

ROOT = Path(__file__).resolve().parents[1]


def loss_call_cost(repeats: int = 7, number: int = 2000, objective: str = "lad") -> dict:
    """One bandit-shaped loss call (50 arms x 1 token) + backward, as the sweep's inner loop makes it:
    with metrics and checks (every call before this change), without metrics, and without both."""
    spec = get_objective(objective)
    bandit = TrimodalBandit()
    k = bandit.n_arms
    logits = torch.zeros(k, requires_grad=True)
    old = torch.full((k, 1), -torch.log(torch.tensor(float(k))).item())
    adv = bandit.advantages().unsqueeze(-1)
    mask = torch.ones(k, 1, dtype=torch.bool)
    hp = spec.hparams()

    def call(**kw):
        def fn():
            lp = torch.log_softmax(logits, -1).unsqueeze(-1)
            loss, _ = spec.loss(old, lp, adv, mask, "token-mean", hp=hp, **kw)
            loss.backward()

        return fn

    timings = interleaved(
        {
            "metrics+checks": call(),
            "checks only": call(compute_metrics=False),
            "bare (bandit loop)": call(compute_metrics=False, check=False),
        },
        repeats=repeats,
        warmup=1,
        number=number,
    )
    return {k: v["median_s"] * 1e6 for k, v in timings.items()}


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
        "target_sweep_s": 8.0,
        "steps_per_s": {k: 1000 / v["median_s"] for k, v in one.items()},
        "loss_call_us": loss_call_cost(),
        "closed_form_optimum_s": floor,
    }


def _cli_sweep(checkout: Path, config: Path) -> tuple[float, float]:
    """(process wall s, sweep s reported by the run) of ``python -m lad_ref.bandit --all`` in ``checkout``."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "lad_ref.bandit", "--config", str(config), "--all", "--json"],
        cwd=checkout, env=env, capture_output=True, text=True, check=True,
    ).stdout
    wall = time.perf_counter() - t0
    first = json.loads(out.splitlines()[0])
    return wall, first["wall_s_all_runs"]


def compare_checkouts(baseline: Path, repeats: int = 3, config: str = "bandit/paper_exact.yaml") -> dict:
    """The ``--all`` sweep of ``baseline`` (another checkout, e.g. main before a change) and of this
    checkout, run alternately (B A, A B, ...) as separate processes; medians and ranges of both."""
    samples: dict[str, dict[str, list[float]]] = {"baseline": {"wall": [], "sweep": []},
                                                   "this": {"wall": [], "sweep": []}}
    order = [("baseline", Path(baseline).resolve()), ("this", ROOT)]
    for i in range(repeats):
        for name, where in order if i % 2 == 0 else reversed(order):
            wall, sweep = _cli_sweep(where, where / config)
            samples[name]["wall"].append(wall)
            samples[name]["sweep"].append(sweep)
    out = {name: {k: summarise(v) for k, v in s.items()} for name, s in samples.items()}
    out["sweep_ratio_this_over_baseline"] = out["this"]["sweep"]["median_s"] / out["baseline"]["sweep"]["median_s"]
    out["baseline_path"] = str(baseline)
    out["machine"] = machine()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_bandit", description=__doc__)
    p.add_argument("--baseline", type=Path, required=True, help="another checkout to compare the sweep with")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, help="also write the JSON here")
    args = p.parse_args(argv)
    res = compare_checkouts(args.baseline, args.repeats)
    res["loss_call_us"] = loss_call_cost()
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

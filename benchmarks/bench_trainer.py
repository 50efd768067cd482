"""Compact trainer: toy-run step time split into rollout, log-prob recomputation and update, per
objective, with every objective started from the same cached SFT policy; LAD / GRPO ratio.

The objectives are interleaved run by run (one short run of each, in turn, the order reversed each repeat) so that drifts in the
machine's load hit each alike; the first step of each is discarded as warm-up. The runs use the
process's torch thread count (``python -m benchmarks --threads N``), not toy.yaml's ``threads: 1``.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import torch

from benchmarks.common import sft_cache
from lad_ref.llm import checkpoint as ckpt
from lad_ref.llm.config import resolve
from lad_ref.llm.tasks import build_task
from lad_ref.llm.train import train

OBJECTIVES = {"grpo": {}, "lad(js)": {"objective.lad.divergence": "js"}, "entadv": {}, "kl_cov": {},
              "clip_cov": {}, "flowrl": {}}
PHASES = ("time/rollout_s", "time/logprob_s", "time/update_s", "time/step_s")


def toy_run(out: Path, steps: int, overrides: dict, config: str = "llm/configs/toy.yaml") -> tuple[list[dict], Path]:
    """Train ``steps`` RL steps of ``config`` into ``out`` as the benchmarks time them; returns the
    metrics rows of the RL steps and the run folder. ``overrides`` are dotted config keys."""
    settings = {
        "optim.steps": steps, "output_dir": str(out), **overrides,
        "eval.every": 0, "eval.num_samples": 1, "eval.pass_ks": [1],  # start/end eval only, and cheap
        "logging.plots": False, "logging.log_every": 1, "checkpoint.every": 10_000,
        # the warm start is shared and not timed; every section runs at the process's thread count
        "sft.cache_dir": str(sft_cache()), "threads": torch.get_num_threads(),
    }
    cfg = resolve(config, settings)
    run = ckpt.prepare_run_dir(cfg.output_dir, resume=False, overwrite=True)
    train(cfg, build_task(cfg), run, progress=False)
    return [r for r in ckpt.read_metrics(run) if r.get("step", 0) > 0 and "time/step_s" in r], run


def run(steps: int = 8, repeats: int = 3, config: str = "llm/configs/toy.yaml") -> dict:
    samples: dict[str, dict[str, list[float]]] = {k: {p: [] for p in PHASES} for k in OBJECTIVES}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for rep in range(repeats):  # interleaved whole runs, the order reversed every repeat (A B C, C B A, ...)
            for name in list(OBJECTIVES) if rep % 2 == 0 else reversed(OBJECTIVES):
                overrides = {"objective.name": name.split("(")[0], **OBJECTIVES[name]}
                rows, _ = toy_run(root / f"r{rep}" / name, steps, overrides, config)
                for row in rows[1:]:  # first step: warm-up
                    for p in PHASES:
                        if p in row:
                            samples[name][p].append(row[p])
    summary = {
        name: {p: {"median_s": statistics.median(v), "min_s": min(v), "max_s": max(v), "n": len(v)}
               for p, v in phases.items() if v}
        for name, phases in samples.items()
    }
    base = summary["grpo"]["time/step_s"]["median_s"]
    base_update = summary["grpo"].get("time/update_s", {}).get("median_s")
    ratios = {k: v["time/step_s"]["median_s"] / base for k, v in summary.items()}
    update_ratios = ({k: v["time/update_s"]["median_s"] / base_update for k, v in summary.items()
                      if "time/update_s" in v} if base_update else {})
    lines = ["| trainer step (toy run) | rollout ms | log-prob ms | update ms | step ms (min-max) | step / GRPO |",
             "|---|---|---|---|---|---|"]
    def ms(v: dict, p: str) -> str:
        return f"{v[p]['median_s'] * 1e3:.0f}" if p in v else "-"

    for k, v in summary.items():
        s = v["time/step_s"]
        lines.append(f"| {k} | {ms(v, 'time/rollout_s')} | {ms(v, 'time/logprob_s')} | {ms(v, 'time/update_s')} | "
                     f"{s['median_s'] * 1e3:.0f} ({s['min_s'] * 1e3:.0f}-{s['max_s'] * 1e3:.0f}) | {ratios[k]:.2f} |")
    lines.append("\nTarget: LAD / GRPO <= 1.05 for the trainer step.")
    return {"config": config, "steps_per_run": steps, "repeats": repeats, "phases": summary,
            "step_ratio_to_grpo": ratios, "update_ratio_to_grpo": update_ratios, "target_lad_over_grpo": 1.05,
            "markdown": "\n".join(lines)}

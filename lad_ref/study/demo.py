"""The LLM half of ``make demo``: GRPO and LAD-js trained side by side on one seed, next to the study's result.

    python -m lad_ref.study.demo                          # seed 0, runs/demo/, 2 jobs (about 4-5 min on 2 cores)
    python -m lad_ref.study.demo --seed 3 --jobs 1

It runs the toy study's headline pair (``llm/configs/study.yaml``: the study protocol, K = 16 updates per
rollout batch) for ONE seed through the study's own scheduler (``lad_ref.study.runs.execute``: the SFT
start once, then both runs side by side, resumable), reads both runs with the study's ``run_metrics``,
and prints a table: the SFT start, GRPO, LAD-js and their difference on this seed, beside the committed
multi-seed paired difference of the same metric from ``paper_figures/toy_study.json`` with its 95% CI and
verdict. One seed is one draw from a spread that is larger than the effect; the committed column is the
result, the seed's column shows what a single run looks like.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lad_ref.llm.config import ConfigError
from lad_ref.study.report import HEADLINE, demo_table

METHODS = ("grpo", "lad(js)")


def updates_per_batch(cfg) -> int:
    """K = epochs x minibatches per rollout batch (prompts_per_step x group_size responses)."""
    n = cfg.rollout.prompts_per_step * cfg.rollout.group_size
    return cfg.optim.epochs * -(-n // cfg.optim.mini_batch_size)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lad_ref.study.demo", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="llm/configs/study.yaml", help="The study whose protocol the demo uses.")
    p.add_argument("--seed", type=int, default=0, help="The one seed both methods train on (default 0).")
    p.add_argument("--output-dir", default="runs/demo", help="Where the two run folders go (resumable).")
    p.add_argument("--jobs", type=int, default=2, help="Runs side by side (each on one torch thread).")
    p.add_argument("--json", default="paper_figures/toy_study.json",
                   help="The committed study result shown for context (its headline comparison).")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from lad_ref.study.analysis import run_metrics
    from lad_ref.study.plan import GroupConfig, RunSpec, load_study, run_config
    from lad_ref.study.runs import execute

    try:
        if args.jobs < 1:
            raise ConfigError(f"--jobs {args.jobs} must be >= 1.")
        if args.seed < 0:
            raise ConfigError(f"--seed {args.seed} must be >= 0.")
        study, _ = load_study(args.config)
        study.output_dir = args.output_dir
        groups = {"demo": GroupConfig(methods=list(METHODS), seeds=[args.seed], comparisons=[f"{HEADLINE}"])}
        print(f"[demo] GRPO and LAD-js on seed {args.seed}, the protocol of {args.config} "
              f"(runs in {args.output_dir}/; a second call reuses finished runs)", file=sys.stderr, flush=True)
        execute(study, groups, ["demo"], args.jobs, log=lambda m: print(m, file=sys.stderr, flush=True))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    root = Path(args.output_dir)
    runs = {m: run_metrics(RunSpec("main", m, args.seed).folder(root)) for m in METHODS}
    k_updates = updates_per_batch(run_config(study, RunSpec("main", "lad(js)", args.seed), {}, root))
    committed, n = None, 0
    if Path(args.json).is_file():
        entry = (json.loads(Path(args.json).read_text()).get("paired") or {}).get(HEADLINE) or {}
        committed, n = entry, len(entry.get("seeds", []))
    print(f"\nToy LM, seed {args.seed}: held-out prompts, the study protocol (K = {k_updates} updates per rollout batch). "
          f"'committed' = the same difference over {n} paired seeds ({args.json}).\n")
    print(demo_table(runs, committed))
    print("\nOne seed is one draw; the seed-to-seed spread is larger than the effect, so read the committed column "
          "for the result (README, 'What we found'; docs/results.md).")
    return 0


if __name__ == "__main__":
    sys.exit(main())

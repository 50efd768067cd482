"""``python -m lad_ref.bandit``: the 50-armed trimodal bandit from the command line.

Examples::

    python -m lad_ref.bandit --objective lad --divergence js          # one run, paper settings
    python -m lad_ref.bandit --all --mode exact                       # every objective and divergence
    python -m lad_ref.bandit --all --mode sampled --seeds 0 1 2 3 4 --json > runs.jsonl
    python -m lad_ref.bandit --all --jobs 1                           # one process (default: one per CPU)
    python -m lad_ref.bandit --config bandit/paper_exact.yaml --plot bandit.png
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lad_ref.bandit.jobs import default_bandit_jobs, train_split
from lad_ref.bandit.train import MODES, BanditRun, sweep_runs, validate_schedule
from lad_ref.config_io import build, load_yaml


@dataclass
class BanditCLIConfig:
    """What ``python -m lad_ref.bandit`` runs; a ``--config`` YAML file holds any of these keys.

    Attributes:
        objective: an objective of lad_ref.losses (ignored with ``all``).
        divergence: f-divergence of lad / lad_theory.
        eta: temperature of the target P_A ∝ exp(A/eta).
        steps: Adam steps.
        lr: Adam learning rate.
        mode: ``exact`` expectation over all arms, or ``sampled`` arms.
        samples: arms sampled per step in sampled mode.
        seeds: one run per seed (``seed: N`` in a file, or ``--seed N``, is the one-seed form).
        all: run every objective once and LAD with every divergence.
        refresh_old_every: LAD: refresh pi_old to the current policy every N steps (0 = never).
    """

    objective: str = "lad"
    divergence: str = "js"
    eta: float = 1.0
    steps: int = 4000
    lr: float = 5e-3
    mode: str = "exact"
    samples: int = 64
    seeds: list[int] = field(default_factory=lambda: [0])
    all: bool = False
    refresh_old_every: int = 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m lad_ref.bandit",
        description="Train softmax policies on the 50-armed trimodal bandit with LAD and its baselines "
        "(defaults: the paper's bandit settings, Adam lr 5e-3, 4000 steps, eta 1).",
    )
    p.add_argument("--config", type=Path, help="YAML file whose keys are any of the long options below")
    p.add_argument("--objective", help="a registered objective of lad_ref.losses (default lad)")
    p.add_argument("--divergence", help="f-divergence for lad: a registered name (lad_ref.divergences; default js)")
    p.add_argument("--eta", type=float, help="temperature of the target P_A ∝ exp(A/eta) (default 1)")
    p.add_argument("--steps", type=int, help="Adam steps (default 4000)")
    p.add_argument("--lr", type=float, help="Adam learning rate (default 5e-3)")
    p.add_argument("--mode", choices=MODES, help="exact expectation over all arms, or sampled arms (default exact)")
    p.add_argument("--samples", type=int, help="arms sampled per step in sampled mode (default 64)")
    p.add_argument("--seed", type=int, dest="seed", help="one seed (default 0)")
    p.add_argument("--seeds", type=int, nargs="+", help="several seeds: one run per seed")
    p.add_argument("--refresh-old-every", type=int, dest="refresh_old_every",
                   help="LAD (lad, lad_theory): refresh pi_old to the current policy every N steps (default 0 = never)")
    p.add_argument("--all", action="store_true", default=None,
                   help="run every objective once and LAD with every divergence")
    p.add_argument("--jobs", type=int, help="worker processes training chunks of the runs side by side (same "
                   "numbers; default: the number of CPUs, capped by the number of objective and seed groups)")
    p.add_argument("--json", action="store_true", help="print one JSON object per run per line; no progress bar")
    p.add_argument("--plot", type=Path, help="write a PNG of the target and the learned policies")
    return p


def resolve(args: argparse.Namespace) -> BanditCLIConfig:
    """Defaults < YAML config < command line, typed by :class:`BanditCLIConfig` (lad_ref.config_io):
    an unknown key or a value of the wrong type fails with one sentence before any work."""
    values = load_yaml(args.config) if args.config is not None else {}
    for key, val in vars(args).items():
        if key in ("config", "json", "plot", "jobs") or val is None:
            continue
        values[key] = val
    if "seed" in values:  # the one-seed form
        values["seeds"] = [values.pop("seed")]
    return build(BanditCLIConfig, values)


def make_runs(cfg: BanditCLIConfig) -> list[BanditRun]:
    validate_schedule(cfg.steps, cfg.lr)
    seeds = tuple(cfg.seeds)
    if cfg.all:
        runs = sweep_runs(cfg.mode, cfg.eta, seeds, cfg.samples)
    else:
        runs = [
            BanditRun(cfg.objective, cfg.divergence, cfg.eta, cfg.mode, cfg.samples, s)
            for s in seeds
        ]
    for run in runs:
        run.refresh_old_every = cfg.refresh_old_every
        run.validate()
    return runs


def print_table(results: list[dict]) -> None:
    head = f"{'objective':<18}{'mode':<9}{'eta':>5}{'seed':>5}{'tv_to_target':>14}{'kl_to_target':>14}" \
           f"{'max_prob':>10}{'modes':>7}"
    print(head)
    print("-" * len(head))
    for r in results:
        print(
            f"{r['label']:<18}{r['mode']:<9}{r['eta']:>5g}{r['seed']:>5}{r['tv_to_target']:>14.4f}"
            f"{r['kl_to_target']:>14.4f}{r['max_prob']:>10.3f}{r['modes_recovered']:>7}"
        )
    if results:
        print(f"\n{len(results)} runs x {results[0]['steps']} steps in {results[0]['wall_s_all_runs']:.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = resolve(args)
        runs = make_runs(cfg)
        if args.plot is not None and args.plot.suffix.lower() not in (".png", ".pdf"):
            raise ValueError(f"--plot must name a .png or .pdf file, got {str(args.plot)!r}.")
        if args.jobs is not None and args.jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {args.jobs}.")
    except ValueError as err:
        parser.error(str(err))
    try:
        # train_bandit evaluates every run's loss once with its checks on (e.g. |A|/eta that would
        # overflow: --eta 1e-9) before the first step; such a ValueError is a bad setting, said in one line
        jobs = args.jobs if args.jobs is not None else default_bandit_jobs(runs)
        results = train_split(runs, steps=cfg.steps, lr=cfg.lr, jobs=jobs, progress=not args.json)
    except ValueError as err:
        parser.error(str(err))
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the sweep runner has stopped its workers
        print("interrupted: no results written", file=sys.stderr)
        return 130
    if args.json:
        for r in results:
            print(json.dumps(r))
    else:
        print_table(results)
    if args.plot is not None:
        from lad_ref.bandit.plot import plot_policies

        plot_policies(results, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

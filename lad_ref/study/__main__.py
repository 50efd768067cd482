"""The toy diversity study: paired seeds, every comparison with a bootstrap CI, resumable, jobs side by side.

    python -m lad_ref.study --config llm/configs/study.yaml                    # every group
    python -m lad_ref.study --config llm/configs/study.yaml --group headline --jobs 2
    python -m lad_ref.study --config llm/configs/study.yaml --analyse-only     # JSON + figures from finished runs
    python -m lad_ref.study --config llm/configs/study.yaml --list             # the plan, what is done

A study is one base run config (``base_config``, e.g. ``llm/configs/toy.yaml``) plus the study's
protocol (``overrides``), and named **groups** of runs. Each group lists methods, seeds and the
comparisons to report (``"lad(js) - grpo"``). A method is an objective name (``grpo``, ``entadv``,
``kl_cov``, ``clip_cov``, ``flowrl``, ``ppo_penalty``) or ``lad(<divergence>)``, with options in parentheses
(``lad(js,eta=2)``, ``lad(js,level=sequence)``, ``lad(js,tied=0)``, ``grpo(ds=1)``,
``ppo_penalty(beta=1,kl=k1,tied_only=true)``; the grammar of :mod:`lad_ref.methods`).
A group may also name protocol **variants** (extra overrides, e.g. ``optim.epochs: 8``), which
is how the updates-per-rollout sweep is written.

Runs live in ``<output_dir>/<variant>/<method>/seed<k>/`` (variant ``main`` = the study protocol):
groups that need the same run share it (the headline's ``lad(js)`` runs are also the divergence
ablation's). A run with ``results.json`` is finished and skipped; an unfinished one is resumed
from its last checkpoint (``lad_ref.llm.train``'s own ``--resume``), so the command can be
stopped and started again at any time. A run folder whose ``config.yaml`` differs from the
config the study would build now is an error (a changed protocol needs a new ``output_dir``).

**Pairing.** Every run of seed k shares with the other methods' seed-k runs: the SFT start (cached
by a hash of the model, task, SFT settings and seed: ``lad_ref.llm.sft.sft_key``, which the study
also uses to schedule each SFT once), the order of the training prompts (a function of the seed
and step alone: ``train.prompts_for_step``), the rollout random numbers' seeds, and the held-out
evaluation's random numbers (``evaluate.eval_seed``: a function of the seed and the prompt chunk).
So a per-seed difference LAD - X removes the seed-to-seed spread of the start, which is larger
than the effects being measured. Differences are summarised by their mean, a 95% percentile
bootstrap CI over seeds (``lad_ref.metrics.bootstrap_mean_ci``: seeds resampled with replacement, fixed seed)
and the number of seeds on which LAD's value is larger ("wins").

**Jobs side by side** go through the sweep runner (:func:`lad_ref.study.runs.execute` ->
:func:`lad_ref.sweep.run_jobs`): a fresh spawned worker per job (a torch thread pool cannot be
shared safely between runs), stopped on Ctrl-C, SIGTERM or a failed job. Each run job takes the run
folder's lock (``checkpoint.RunLock``, the trainer's), so a second study on the same folders waits
for a run another process is writing and then finds it finished. Each run sets ``threads: 1``: on a
2-core machine two single-threaded runs finish sooner than two runs each trying to use both cores.
The SFT starts the runs need are computed first, one job per SFT key, then the runs.

Each run's config is built with the Python API (:func:`lad_ref.study.plan.run_config`: the base YAML, then the
protocol, the variant, the method and the seed as dotted overrides, then ``validate``), not by
assembling command lines.

Outputs: ``--json`` (``paper_figures/toy_study.json``) and figures under ``--figures``
(``toy_study_pass_at_k``, ``toy_study_forest``, ``toy_study_brake`` as .png and .pdf).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lad_ref.llm.config import ConfigError
from lad_ref.llm.files import write_json
from lad_ref.study.analysis import analyse, carry_over, markdown_table
from lad_ref.study.figures import write_figures
from lad_ref.study.plan import load_study, plan
from lad_ref.study.runs import execute, is_finished


def code_version() -> dict:
    """The git commit of the checkout (and whether it has uncommitted changes): the numbers depend on it."""
    import subprocess

    root = Path(__file__).resolve().parents[2]  # the checkout: lad_ref/study/ -> ..
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "lad_ref"],
                                    cwd=root, capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "lad_ref_dirty": None}
    return {"commit": commit or None, "lad_ref_dirty": dirty if commit else None}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lad_ref.study", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="Study YAML (llm/configs/study.yaml).")
    p.add_argument("--group", action="append", default=None,
                   help="Run only this group (repeatable; default: every group, in the file's order). The JSON and "
                   "figures always summarise every group's finished runs.")
    p.add_argument("--jobs", type=int, default=2, help="Runs side by side (each on one torch thread).")
    p.add_argument("--output-dir", default=None, help="Override the study's output_dir.")
    p.add_argument("--json", default=None, help="Where to write the results (default: no JSON).")
    p.add_argument("--figures", default=None, help="Folder for the figures (default: none).")
    p.add_argument("--analyse-only", action="store_true", help="Do not run anything; summarise finished runs.")
    p.add_argument("--list", action="store_true", help="Print the planned runs and whether each is finished.")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        study, groups = load_study(args.config)
        if args.output_dir:
            study.output_dir = args.output_dir
        names = args.group or list(groups)
        for n in names:
            if n not in groups:
                raise ConfigError(f"--group {n!r} is not a group of {args.config}; valid groups are {', '.join(groups)}.")
        if args.jobs < 1:
            raise ConfigError(f"--jobs {args.jobs} must be >= 1.")
        if args.list:
            root = Path(study.output_dir)
            for s in plan(study, groups, names):
                print(f"{'done' if is_finished(s.folder(root)) else 'todo'}  {s.folder(root)}")
            return 0
        info = {"ran": 0, "wall_s": 0.0}
        if not args.analyse_only:
            info = execute(study, groups, names, args.jobs, log=lambda m: print(m, file=sys.stderr, flush=True))
        # the summary covers every group's finished runs (not only the groups run now), so running one group
        # at a time still leaves a complete toy_study.json; each group says how many of its runs finished
        result = analyse(study, groups, list(groups))  # a damaged run's files are named (ConfigError)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result["protocol"] = {"base_config": study.base_config, "overrides": study.overrides,
                          "bootstrap": {"resamples": study.bootstrap_resamples, "seed": study.bootstrap_seed,
                                        "method": "percentile, seeds resampled with replacement"}}
    result["this_invocation"] = {**info, "jobs": args.jobs, "groups": names, "code": code_version()}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        if Path(args.json).is_file():  # results of runs not on this machine stay (same protocol only)
            result = carry_over(json.loads(Path(args.json).read_text()), result)
        regime = Path(args.json).parent / "bandit_regime.json"  # item 1's table, written by make bandit-regime
        if regime.is_file():
            rec = json.loads(regime.read_text())
            result["bandit_regime"] = {"source": regime.name, "seeds": rec.get("seeds"), "rows": rec.get("rows"),
                                       "paired": rec.get("paired")}
        write_json(args.json, result, indent=1)
    if args.figures:
        write_figures(result, Path(args.figures))
    print(markdown_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

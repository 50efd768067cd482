"""The toy diversity study: paired seeds, every comparison with a bootstrap CI, resumable, jobs side by side.

    python -m lad_ref.llm.study --config llm/configs/study.yaml                    # every group
    python -m lad_ref.llm.study --config llm/configs/study.yaml --group headline --jobs 2
    python -m lad_ref.llm.study --config llm/configs/study.yaml --analyse-only     # JSON + figures from finished runs
    python -m lad_ref.llm.study --config llm/configs/study.yaml --list             # the plan, what is done

A study is one base run config (``base_config``, e.g. ``llm/configs/toy.yaml``) plus the study's
protocol (``overrides``), and named **groups** of runs. Each group lists methods, seeds and the
comparisons to report (``"lad(js) - grpo"``). A method is an objective name (``grpo``, ``entadv``,
``kl_cov``, ``clip_cov``, ``flowrl``, ``ppo_penalty``) or ``lad(<divergence>)``, with options in parentheses
(``lad(js,eta=2)``, ``lad(js,level=sequence)``, ``lad(js,tied=0)``, ``grpo(ds=1)``,
``ppo_penalty(beta=1,kl=k1,tied_only=true)``; :func:`method_overrides`).
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

**Jobs side by side** run in one ``multiprocessing`` process per job, started and owned by
:func:`execute` (a process per job because a torch thread pool cannot be shared safely between
runs, and ``spawn`` so that no torch state is forked; stopped with ``Process.terminate``). Each
job takes the run folder's lock (``checkpoint.RunLock``, the trainer's), so a second study on the
same folders waits for a run another process is writing and then finds it finished. Each run sets ``threads: 1``: on a 2-core machine
two single-threaded runs finish sooner than two runs each trying to use both cores.
The SFT start of a seed is computed once, as its own job, before that seed's runs start.

Each run's config is built with the Python API (:func:`run_config`: the base YAML, then the
protocol, the variant, the method and the seed as dotted overrides, then ``validate``), not by
assembling command lines.

Outputs: ``--json`` (``paper_figures/toy_study.json``) and figures under ``--figures``
(``toy_study_pass_at_k``, ``toy_study_forest``, ``toy_study_brake`` as .png and .pdf).
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import pickle
import queue
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lad_ref.config_io import build
from lad_ref.llm.config import (
    Config,
    ConfigError,
    from_dict,
    load_yaml,
    merge_overrides,
    to_dict,
    validate,
)
from lad_ref.llm.files import write_atomic, write_json
from lad_ref.llm.report import MIN_SEEDS, diff_cell, verdict
from lad_ref.llm.tasks import get_task_spec
from lad_ref.losses import objective_names
from lad_ref.metrics import bootstrap_mean_ci

MAIN_VARIANT = "main"
# fewer seeds than this: the forest plot draws the CI grey whatever it is (2-4 seeds give only a handful of resamples);
# the same rule gives the report tables' verdicts
MIN_SEEDS_FOR_CI = MIN_SEEDS
# metrics read from each run's results.json ("final"); pass_at_<k> for the largest k is added per study
RESULT_METRICS = (
    "avg_at_k", "pass_at_1", "pass_at_16", "distinct_correct", "correct_answer_entropy", "solution_coverage",
    "policy_entropy", "dist_3",
)
HIGHER_IS_MORE_DIVERSE = ("distinct_correct", "correct_answer_entropy", "solution_coverage", "policy_entropy")


# ======================================================================================
# the study's configuration
# ======================================================================================


@dataclass
class GroupConfig:
    """One named set of runs and the paired comparisons reported for it."""

    methods: list[str] = field(default_factory=list, metadata={"help": "Methods to run (grpo, lad(js), lad(kl,eta=2), ...)."})
    seeds: list[int] = field(default_factory=list, metadata={"help": "Seeds; empty = the study's seeds."})
    comparisons: list[str] = field(
        default_factory=list, metadata={"help": "'A - B' pairs (both methods of this group) reported with CIs."}
    )
    variants: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Protocol variants: name -> dotted overrides on top of the study protocol; empty = main."},
    )


@dataclass
class StudyConfig:
    """A paired multi-seed study on the toy task (llm/configs/study.yaml)."""

    base_config: str = field(default="llm/configs/toy.yaml", metadata={"help": "The run config every run starts from."})
    overrides: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "The study protocol: dotted overrides applied to every run."}
    )
    output_dir: str = field(default="runs/study", metadata={"help": "Where the run folders go."})
    seeds: list[int] = field(default_factory=lambda: list(range(8)), metadata={"help": "Default seeds of a group."})
    groups: dict[str, Any] = field(default_factory=dict, metadata={"help": "name -> GroupConfig."})
    bootstrap_resamples: int = field(default=10_000, metadata={"help": "Bootstrap resamples of the seeds."})
    bootstrap_seed: int = field(default=0, metadata={"help": "Seed of the bootstrap (fixed: the CI is reproducible)."})
    brake_variants: list[str] = field(
        default_factory=lambda: ["k4", MAIN_VARIANT],
        metadata={"help": "Variants whose per-step brake engagement the brake figure compares."},
    )
    brake_group: str = field(default="protocol", metadata={"help": "Group whose runs feed the brake figure."})
    curve_group: str = field(default="headline", metadata={"help": "Group whose methods the pass@k figure shows."})
    curve_methods: list[str] = field(
        default_factory=lambda: ["grpo", "lad(js)"], metadata={"help": "Methods on the pass@k figure (plus the start)."}
    )


def _group(name: str, values) -> GroupConfig:
    try:
        return build(GroupConfig, values)
    except ConfigError as e:
        raise ConfigError(f"groups.{name}: {e}") from None


def load_study(path: str | Path) -> tuple[StudyConfig, dict[str, GroupConfig]]:
    """Read and check a study YAML; every method name and comparison is checked before any work."""
    data = load_yaml(path)
    study = build(StudyConfig, data)
    groups = {}
    for name, g in study.groups.items():
        if not isinstance(g, dict):
            raise ConfigError(f"study group {name!r} must be a mapping of methods, seeds, comparisons, variants.")
        grp = _group(name, g)
        if not grp.methods:
            raise ConfigError(f"study group {name!r} lists no methods.")
        if not grp.seeds:
            grp.seeds = list(study.seeds)
        for m in grp.methods:
            method_overrides(m)
        for c in grp.comparisons:
            a, b = parse_comparison(c)
            for x in (a, b):
                if x not in grp.methods:
                    raise ConfigError(
                        f"comparison {c!r} of group {name!r} names {x!r}, which is not one of its methods "
                        f"({', '.join(grp.methods)})."
                    )
        for v, ov in grp.variants.items():
            if not isinstance(ov, dict):
                raise ConfigError(f"variant {v!r} of group {name!r} must be a mapping of dotted overrides.")
        groups[name] = grp
    if not groups:
        raise ConfigError(f"study config {str(path)!r} defines no groups.")
    return study, groups


_METHOD = re.compile(r"^(?P<name>[a-z_0-9]+)(?:\((?P<args>[^()]*)\))?$")
# options every method takes: key -> (dotted config field, parser)
_COMMON_OPTIONS = {"tied": "objective.tied_loss_weight", "ds": "rollout.dynamic_sampling",
                   "gs": "logging.tied_grad_share"}
# lad(...) options after the divergence
_LAD_OPTIONS = {"eta": "objective.lad.eta", "level": "objective.lad.level"}
# ppo_penalty(...) options
_PENALTY_OPTIONS = {"beta": "objective.ppo_penalty.beta", "kl": "objective.ppo_penalty.kl_estimator",
                    "tied_only": "objective.ppo_penalty.tied_only"}
_FLAGS = {"1": True, "true": True, "0": False, "false": False}


def method_overrides(method: str) -> dict[str, Any]:
    """Dotted config overrides of a method name: ``<objective>`` or ``<objective>(<options>)``.

    ``grpo`` -> objective grpo; ``lad(js)`` -> LAD with JS (the divergence comes first and is
    required); options are ``key=value``:

    * every method: ``tied=<number>`` (objective.tied_loss_weight: ``grpo(tied=0)``, ``lad(js,tied=0)``),
      ``ds=1|0`` (rollout.dynamic_sampling: ``grpo(ds=1)``), ``gs=1|0`` (logging.tied_grad_share);
    * lad: ``eta=<number>``, ``level=token|sequence`` (``lad(kl,eta=0.5,level=sequence)``);
    * ppo_penalty: ``beta=<number>``, ``kl=k1|k2|k3``, ``tied_only=true|false``
      (``ppo_penalty(beta=1,kl=k1,tied_only=true)``).
    """
    from lad_ref.divergences import DIVERGENCE_NAMES
    from lad_ref.losses import LEVELS

    llm_objectives = objective_names(scope="any")  # what a sampled LLM batch can use (the specs say)
    m = _METHOD.match(method.replace(" ", ""))
    if m is None or m["name"] not in llm_objectives or (m["name"] == "lad" and m["args"] is None):
        raise ConfigError(
            f"unknown method {method!r}; valid methods are {', '.join(o for o in llm_objectives if o != 'lad')}, "
            "lad(<divergence>) and lad(<divergence>,eta=<number>,level=<token|sequence>); every method takes "
            "the options tied=<number>, ds=<1|0>, gs=<1|0> in parentheses, ppo_penalty also "
            "beta=<number>, kl=<k1|k2|k3>, tied_only=<true|false>."
        )
    name = m["name"]
    out: dict[str, Any] = {"objective.name": name}
    opts = m["args"].split(",") if m["args"] is not None else []
    if name == "lad":
        div = opts.pop(0) if opts else ""
        if div not in DIVERGENCE_NAMES:
            raise ConfigError(
                f"method {method!r} names divergence {div!r}; valid divergences are {', '.join(DIVERGENCE_NAMES)}."
            )
        out["objective.lad.divergence"] = div
    own = {"lad": _LAD_OPTIONS, "ppo_penalty": _PENALTY_OPTIONS}.get(name, {})
    valid = {**own, **_COMMON_OPTIONS}
    for opt in opts:
        key, sep, value = opt.partition("=")
        if not sep or key not in valid:
            raise ConfigError(f"method {method!r} has option {opt!r}; valid options are "
                              f"{', '.join(k + '=<value>' for k in valid)}.")
        if key in ("eta", "beta", "tied"):
            try:
                out[valid[key]] = float(value)
            except ValueError:
                raise ConfigError(f"method {method!r} has {key}={value!r}, which is not a number.") from None
        elif key == "level":
            if value not in LEVELS:
                raise ConfigError(f"method {method!r} has level={value!r}; valid levels are {', '.join(LEVELS)}.")
            out[valid[key]] = value
        elif key == "kl":
            if value not in ("k1", "k2", "k3"):
                raise ConfigError(f"method {method!r} has kl={value!r}; valid estimators are k1, k2, k3.")
            out[valid[key]] = value
        else:  # ds, gs, tied_only
            if value not in _FLAGS:
                raise ConfigError(f"method {method!r} has {key}={value!r}; valid values are 1, 0, true, false.")
            out[valid[key]] = _FLAGS[value]
    return out


def parse_comparison(text: str) -> tuple[str, str]:
    parts = [p.strip() for p in text.split(" - ")]
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"comparison {text!r} must read 'A - B' (two method names around ' - ').")
    return parts[0], parts[1]


# ======================================================================================
# runs: config, folder, status
# ======================================================================================


@dataclass(frozen=True)
class RunSpec:
    variant: str
    method: str
    seed: int

    def folder(self, root: Path) -> Path:
        return root / self.variant / method_slug(self.method) / f"seed{self.seed}"


def method_slug(method: str) -> str:
    """A shell-friendly folder name: ``lad(js,eta=0.5)`` -> ``lad-js-eta0.5``."""
    return method.replace("(", "-").replace(")", "").replace(",", "-").replace("=", "").replace(" ", "")


def run_config(study: StudyConfig, spec: RunSpec, variants: dict[str, dict], root: Path) -> Config:
    """The run's Config: base YAML <- study protocol <- variant <- method <- seed/output/threads; validated."""
    if spec.variant != MAIN_VARIANT and spec.variant not in variants:
        raise ConfigError(f"unknown variant {spec.variant!r}; valid variants are {', '.join([MAIN_VARIANT, *variants])}.")
    data = load_yaml(study.base_config)
    merge_overrides(data, study.overrides)
    merge_overrides(data, variants.get(spec.variant, {}))
    merge_overrides(data, method_overrides(spec.method))
    merge_overrides(data, {
        "seed": spec.seed, "output_dir": str(spec.folder(root)), "threads": 1,
        "logging.progress_bar": False, "logging.plots": False,
    })
    return validate(from_dict(data))


def plan(study: StudyConfig, groups: dict[str, GroupConfig], names: list[str]) -> list[RunSpec]:
    """The runs the named groups need, seed-major (a seed's runs finish together, so pairs complete early)."""
    specs: list[RunSpec] = []
    for name in names:
        g = groups[name]
        for seed in g.seeds:
            for variant in (g.variants or {MAIN_VARIANT: {}}):
                for method in g.methods:
                    s = RunSpec(variant, method, seed)
                    if s not in specs:
                        specs.append(s)
    return specs


def all_variants(groups: dict[str, GroupConfig]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for name, g in groups.items():
        for v, ov in g.variants.items():
            if v in out and out[v] != ov and v != MAIN_VARIANT:
                raise ConfigError(f"variant {v!r} is defined differently in two groups (one is {name!r}).")
            if v != MAIN_VARIANT:
                out[v] = ov
            elif ov:
                raise ConfigError(f"variant {MAIN_VARIANT!r} of group {name!r} must have no overrides (it is the protocol).")
    return out


def read_results(run: Path) -> dict | None:
    """A finished run's results.json, or None if there is none; a file that does not parse (a crash while
    it was written by an older version) or lacks its sections is a ConfigError naming the run."""
    from lad_ref.llm.files import read_json

    f = run / "results.json"
    if not f.is_file():
        return None
    res = read_json(f, f"run {str(run)!r}")
    if not isinstance(res, dict) or not {"start", "final"} <= set(res):
        raise ConfigError(f"run {str(run)!r}: {str(f)!r} lacks its start or final section.")
    return res


def is_finished(run: Path, log=None) -> bool:
    """Whether ``run`` has a results.json that parses. A damaged one is reported (``log``) with the run's
    name and counts as unfinished: training resumes from the final checkpoint and re-derives it."""
    try:
        return read_results(run) is not None
    except ConfigError as e:
        if log is not None:
            log(f"[study] {e} It is re-derived from the run's last checkpoint.")
        return False


# ======================================================================================
# jobs (top-level functions: they run in worker processes)
# ======================================================================================


def _sft_job(cfg_dict: dict) -> str:
    import torch

    from lad_ref.llm.checkpoint import pick_device
    from lad_ref.llm.sft import prepare_start_policy
    from lad_ref.llm.tasks import build_task
    from lad_ref.threads import torch_threads

    cfg = validate(from_dict(cfg_dict))
    with torch_threads(cfg.threads):
        torch.manual_seed(cfg.seed)
        path, _ = prepare_start_policy(cfg, build_task(cfg), pick_device(cfg.device), False)
    return path


def _run_job(cfg_dict: dict) -> dict:
    """Train (or resume) one run; returns its wall time. Resumes from the run's last checkpoint if any."""
    from lad_ref.llm import checkpoint as ckpt
    from lad_ref.llm.files import read_json
    from lad_ref.llm.tasks import build_task
    from lad_ref.llm.train import train

    cfg = validate(from_dict(cfg_dict))
    run = Path(cfg.output_dir)
    run.mkdir(parents=True, exist_ok=True)
    # The trainer's lock: a run another study (or a trainer) is writing is waited for, never written twice.
    with ckpt.RunLock(run, wait=True):
        if is_finished(run):  # finished meanwhile by another study process
            return {"run": str(run), "wall_s": 0.0, "skipped": "finished"}
        resume = (run / "config.yaml").is_file()
        ckpt.prepare_run_dir(cfg.output_dir, resume=resume, overwrite=True)
        t0 = time.time()
        train(cfg, build_task(cfg), run, resume=resume)
        wall = time.time() - t0
        prev = read_json(run / "study_time.json", f"run {str(run)!r}")["wall_s"] if (run / "study_time.json").exists() else 0.0
        write_json(run / "study_time.json", {"wall_s": prev + wall}, indent=None)
    return {"run": str(run), "wall_s": wall}


def check_folder(cfg: Config, run: Path) -> None:
    """A run folder written under another config is an error (a changed protocol needs a new output_dir)."""
    f = run / "config.yaml"
    if not f.is_file():
        return
    old = load_yaml(f)
    try:  # a folder written before a field was added reads with that field's default (what it trained with)
        old = to_dict(from_dict(old))
    except (ConfigError, TypeError, ValueError):
        pass  # not a config this version can read: compared as written, so the difference is named below
    new = to_dict(cfg)
    # output_dir: the folder is the run's identity (a study folder moved or reached by another path is still it)
    ignore = {"logging", "checkpoint", "threads", "device", "output_dir"}
    diff = sorted(k for k in set(old) | set(new) if k not in ignore and old.get(k) != new.get(k))
    if diff:
        raise ConfigError(
            f"run folder {str(run)!r} was written with a different config (sections {', '.join(diff)} differ); "
            "use a new study output_dir, or delete that folder to recompute it."
        )


def execute(study: StudyConfig, groups: dict[str, GroupConfig], names: list[str], jobs: int,
            log=print) -> dict:
    """Run every unfinished run of the named groups, ``jobs`` at a time; SFT starts first, once per key."""
    from lad_ref.llm.sft import default_cache_dir, sft_key

    root = Path(study.output_dir)
    variants = all_variants(groups)
    specs = plan(study, groups, names)
    cfgs = {s: run_config(study, s, variants, root) for s in specs}  # every config checked before any work
    for s, c in cfgs.items():
        check_folder(c, s.folder(root))
    todo = [s for s in specs if not is_finished(s.folder(root), log)]
    log(f"[study] {len(specs)} runs in groups {', '.join(names)}: {len(specs) - len(todo)} finished, {len(todo)} to run")
    if not todo:
        return {"ran": 0, "wall_s": 0.0}

    def sft_folder(c: Config) -> Path | None:
        if not c.sft.enabled or not get_task_spec(c.data.task).can_sample_solutions:
            return None
        cache = Path(c.sft.cache_dir) if c.sft.cache_dir else default_cache_dir()
        return cache / sft_key(c)

    sft_done = {}
    for s in todo:
        f = sft_folder(cfgs[s])
        if f is not None:
            sft_done.setdefault(str(f), (f / "sft_info.json").exists())
    t0 = time.time()
    ctx = multiprocessing.get_context("spawn")
    running: dict[int, tuple[str, Any]] = {}
    sft_running: set[str] = set()
    pending = list(todo)
    finished = 0
    # One process per job, started and owned here (not a pool's private worker list): a fresh interpreter
    # per run, non-daemonic (a job may start processes of its own, e.g. parallel graders), and
    # Process.terminate() stops it at once on Ctrl-C / SIGTERM / a failed job.
    done_q = ctx.Queue()
    procs: dict[int, Any] = {}
    ticket = iter(range(10**9))

    def submit(fn, arg, what) -> None:
        t = next(ticket)
        running[t] = what
        procs[t] = ctx.Process(target=_job_entry, args=(fn, arg, t, done_q), name=f"study-job-{t}")
        procs[t].start()

    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        while pending or running:
            while len(running) < jobs and pending:
                ready = [s for s in pending if (f := sft_folder(cfgs[s])) is None or sft_done[str(f)]]
                if ready:
                    s = ready[0]
                    pending.remove(s)
                    submit(_run_job, to_dict(cfgs[s]), ("run", s))
                    continue
                need = [str(sft_folder(cfgs[s])) for s in pending]
                nxt = next((k for k in need if k not in sft_running), None)
                if nxt is None:
                    break
                s = next(s for s in pending if str(sft_folder(cfgs[s])) == nxt)
                sft_running.add(nxt)
                submit(_sft_job, to_dict(cfgs[s]), ("sft", nxt))
            t, ok, value = _next_result(done_q, procs, running)
            kind, what = running.pop(t)
            procs.pop(t).join()
            if not ok:
                raise value  # a failed job stops the study with its error (finished runs are kept)
            elapsed = time.time() - t0
            if kind == "sft":
                sft_done[what] = True
                log(f"[study] {elapsed:7.0f}s  SFT start ready: {what}")
            elif value.get("skipped"):
                log(f"[study] {elapsed:7.0f}s  skipped {what.variant}/{what.method}/seed{what.seed}: {value['skipped']}")
            else:
                finished += 1
                log(f"[study] {elapsed:7.0f}s  finished {what.variant}/{what.method}/seed{what.seed} "
                    f"({finished}/{len(todo)})")
    except BaseException:
        # Ctrl-C / SIGTERM / a failed job: stop the workers too (they would otherwise run on, orphaned).
        # Finished runs are kept; unfinished ones resume from their last checkpoint next time.
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            p.join()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    return {"ran": finished, "wall_s": time.time() - t0}


def _job_entry(fn, arg, ticket: int, done_q) -> None:
    """A job's process: run ``fn(arg)`` and put (ticket, ok, result or error) on ``done_q``."""
    try:
        done_q.put((ticket, True, fn(arg)))
    except BaseException as e:  # noqa: BLE001 - any failure is the job's result
        try:
            pickle.dumps(e)
        except Exception:
            e = RuntimeError(f"{type(e).__name__}: {e}")
        done_q.put((ticket, False, e))


def _next_result(done_q, procs: dict, running: dict) -> tuple:
    """The next finished job's (ticket, ok, value); a job whose process died without a result is an error."""
    gone: dict[int, float] = {}
    while True:  # a timeout keeps the main thread responsive to Ctrl-C / SIGTERM
        try:
            return done_q.get(timeout=0.5)
        except queue.Empty:
            pass
        now = time.time()
        for t, p in procs.items():
            if not p.is_alive():
                gone.setdefault(t, now)
                if now - gone[t] > 5.0:  # its result would have arrived by now
                    kind, what = running[t]
                    return t, False, RuntimeError(f"the {kind} job for {what} ended (exit code {p.exitcode}) "
                                                  "without a result")


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


# ======================================================================================
# analysis: paired differences, bootstrap CIs
# ======================================================================================


def paired_summary(a: list[float], b: list[float], resamples: int, seed: int) -> dict:
    """mean, 95% CI and wins of the per-seed differences a_i - b_i (NaN pairs dropped)."""
    d = [x - y for x, y in zip(a, b) if x == x and y == y]
    if not d:
        return {"mean": None, "ci95": None, "wins": 0, "n": 0}
    # one seed has no interval (the forest plot and the report tables leave such comparisons out)
    ci = list(bootstrap_mean_ci(torch.tensor(d), n_boot=resamples, seed=seed)) if len(d) >= 2 else None
    return {"mean": float(np.mean(d)), "ci95": ci, "wins": int(sum(x > 0 for x in d)),
            "losses": int(sum(x < 0 for x in d)), "n": len(d), "per_seed": d}


def _read_samples(path: Path) -> list[dict]:
    from lad_ref.llm.files import read_jsonl

    return read_jsonl(path, f"run {str(path.parent)!r}")


def run_metrics(run: Path) -> dict:
    """The metrics of one finished run: final held-out metrics, KL to the start's answers, costs, brake."""
    from lad_ref.llm.checkpoint import read_metrics
    from lad_ref.metrics import correct_answer_kl

    res = read_results(run)
    if res is None:
        raise ConfigError(f"run {str(run)!r} has no results.json; it has not finished.")
    final, start = res["final"], res["start"]
    k = int(final["k"])
    out = {m: final[m] for m in RESULT_METRICS if m in final}
    out[f"pass_at_{k}"] = final["pass_at_k"]
    out["start"] = {**{m: start[m] for m in RESULT_METRICS if m in start}, f"pass_at_{k}": start["pass_at_k"]}
    out["curve"], out["start_curve"] = final.get("pass_at_k_curve"), start.get("pass_at_k_curve")
    fs, ss = run / "final_samples.jsonl", run / "start_samples.jsonl"
    if fs.exists() and ss.exists():
        kls = []
        final_s, start_s = _read_samples(fs), _read_samples(ss)
        if [x.get("uid") for x in final_s] != [x.get("uid") for x in start_s]:
            raise ConfigError(
                f"run {str(run)!r}: final_samples.jsonl ({len(final_s)} prompts) and start_samples.jsonl "
                f"({len(start_s)} prompts) do not list the same prompts; the KL from the start needs both whole "
                "(delete results.json to re-derive them)."
            )
        for f, s in zip(final_s, start_s):
            v = correct_answer_kl(f["responses"], f["correct"], s["responses"], s["correct"])
            if v == v:
                kls.append(v)
        out["correct_answer_kl_from_start"] = sum(kls) / len(kls) if kls else float("nan")
    rows = read_metrics(run)
    steps = [r for r in rows if r.get("step", 0) > 0 and "time/step_s" in r]
    out["rl_seconds"] = sum(r["time/step_s"] for r in steps)
    out["update_seconds_per_step"] = sum(r["time/update_s"] for r in steps) / max(1, len(steps))
    out["brake"] = {
        key: [r.get(key) for r in steps]
        for key in ("lad/weight_flip_frac", "grpo/clipfrac", "brake/log_ratio_q05", "brake/log_ratio_q50",
                    "brake/log_ratio_q95", "brake/log_ratio_abs_max", "brake/last_q05", "brake/last_q95")
        if any(key in r for r in steps)
    }
    # the tied groups (all G rewards equal): their share of the batches and, where the run logged it
    # (logging.tied_grad_share), their share of the objective's gradient norm; means over the RL steps
    for key, name in (("train/tied_groups", "tied_groups"), ("train/grad_share_tied", "grad_share_tied")):
        vals = [r[key] for r in steps if r.get(key) is not None]
        if vals:
            out[name] = float(np.mean(vals))
    return out


PAIRED_METRICS_ORDER = (
    "avg_at_k", "pass_at_1", "pass_at_16", "pass_at_{K}", "distinct_correct", "correct_answer_entropy",
    "correct_answer_kl_from_start", "solution_coverage", "policy_entropy", "dist_3", "update_seconds_per_step",
)


def analyse(study: StudyConfig, groups: dict[str, GroupConfig], names: list[str]) -> dict:
    """toy_study.json's content from the finished runs of the named groups."""
    root = Path(study.output_dir)
    variants = all_variants(groups)
    cache: dict[RunSpec, dict | None] = {}

    def metrics(spec: RunSpec) -> dict | None:
        if spec not in cache:
            run = spec.folder(root)
            cache[spec] = run_metrics(run) if is_finished(run, log=lambda m: print(m, file=sys.stderr)) else None
        return cache[spec]

    out: dict[str, Any] = {"groups": {}, "paired": {}, "methods": {}}
    all_seeds: set[int] = set()
    # A comparison (or method) under one variant may be listed by several groups (the protocol group's
    # `main` runs are the headline's): it is reported once, over the union of those groups' seeds.
    comp_seeds: dict[tuple[str, str], list[int]] = {}
    comp_groups: dict[tuple[str, str], list[str]] = {}
    method_seeds: dict[tuple[str, str], list[int]] = {}
    for name in names:
        g = groups[name]
        gv = list(g.variants or {MAIN_VARIANT: {}})
        done = [s for s in plan(study, groups, [name]) if metrics(s) is not None]
        out["groups"][name] = {
            "methods": g.methods, "seeds": g.seeds, "comparisons": g.comparisons,
            "variants": {v: variants.get(v, {}) for v in gv},
            "runs_finished": len(done), "runs_planned": len(plan(study, groups, [name])),
        }
        for variant in gv:
            for method in g.methods:
                lst = method_seeds.setdefault((method, variant), [])
                lst += [x for x in g.seeds if x not in lst]
            for comp in g.comparisons:
                lst = comp_seeds.setdefault((comp, variant), [])
                lst += [x for x in g.seeds if x not in lst]
                comp_groups.setdefault((comp, variant), []).append(name)

    for (method, variant), seeds in method_seeds.items():
        tag = "" if variant == MAIN_VARIANT else f" [{variant}]"
        rows = {s: metrics(RunSpec(variant, method, s)) for s in sorted(seeds)}
        rows = {s: r for s, r in rows.items() if r is not None}
        if not rows:
            continue
        # numbers every run of the method has (runs of an older code version may lack a newer metric)
        keys = [k for k, v in next(iter(rows.values())).items() if isinstance(v, (int, float))
                and all(isinstance(r.get(k), (int, float)) for r in rows.values())]
        starts = [r["start"] for r in rows.values()]
        out["methods"][method + tag] = {
            "seeds": sorted(rows), "variant": variant,
            "mean": {k: _nanmean([r[k] for r in rows.values()]) for k in keys},
            "per_seed": {str(s): {k: r[k] for k in keys} for s, r in rows.items()},
            "start_mean": {k: _nanmean([s[k] for s in starts]) for k in starts[0]},
            "start_per_seed": {str(s): r["start"] for s, r in rows.items()},
        }

    for (comp, variant), comp_seed_list in comp_seeds.items():
        tag = "" if variant == MAIN_VARIANT else f" [{variant}]"
        a, b = parse_comparison(comp)
        ra = {s: metrics(RunSpec(variant, a, s)) for s in comp_seed_list}
        rb = {s: metrics(RunSpec(variant, b, s)) for s in comp_seed_list}
        seeds = sorted(s for s in comp_seed_list if ra[s] is not None and rb[s] is not None)
        if not seeds:
            continue
        all_seeds.update(seeds)
        first = ra[seeds[0]]
        k = max(int(m.split("_")[-1]) for m in first if re.fullmatch(r"pass_at_\d+", m))  # n: pass@n, "any correct"
        names_ = [m.replace("{K}", str(k)) for m in PAIRED_METRICS_ORDER]
        entry = {"groups": comp_groups[(comp, variant)], "variant": variant, "seeds": seeds}
        for m in names_:
            if m in first:
                entry[m] = paired_summary([ra[s][m] for s in seeds], [rb[s][m] for s in seeds],
                                          study.bootstrap_resamples, study.bootstrap_seed)
        if first.get("curve"):
            ca = np.array([ra[s]["curve"] for s in seeds])
            cb = np.array([rb[s]["curve"] for s in seeds])
            entry["pass_at_k_curve_diff"] = {
                "k": list(range(1, ca.shape[1] + 1)), "mean": (ca - cb).mean(0).tolist(),
                "ci95": [list(bootstrap_mean_ci(torch.from_numpy(ca[:, j] - cb[:, j]), n_boot=2000,
                                                seed=study.bootstrap_seed)) for j in range(ca.shape[1])]
                if len(seeds) >= 2 else None,  # one seed: no interval
            }
        out["paired"][comp + tag] = entry
    out["seeds"] = sorted(all_seeds)
    out["curves"] = _curves(study, groups, metrics)
    out["brake"] = _brake(study, groups, metrics)
    return out


def carry_over(previous: dict, result: dict) -> dict:
    """Keep a previous JSON's results whose runs are not in this output_dir (same protocol only).

    Run folders are large and stay on the machine that trained them; the JSON is what is committed.
    So a study extended later (a new group run on another machine or day) must not drop the
    comparisons it cannot recompute: an entry of ``previous`` is kept when this analysis has no
    entry under that name, or one over fewer seeds (its runs are partly absent). Kept entries are
    marked ``"carried_over": true``. Nothing is carried when the protocol (base config, overrides,
    bootstrap) differs: those numbers would answer another question.
    """
    if previous.get("protocol") != result.get("protocol"):
        return result
    for section in ("paired", "methods"):
        new, old = result.setdefault(section, {}), previous.get(section) or {}
        for key, entry in old.items():
            if key not in new or len(new[key].get("seeds", [])) < len(entry.get("seeds", [])):
                new[key] = {**entry, "carried_over": True}
    for name, entry in (previous.get("groups") or {}).items():
        g = result.setdefault("groups", {}).get(name)
        if g is not None and g.get("runs_finished", 0) < entry.get("runs_finished", 0):
            result["groups"][name] = {**entry, "carried_over": True}
    for section in ("curves", "brake"):
        if not result.get(section) and previous.get(section):
            result[section] = previous[section]
    result["seeds"] = sorted({*result.get("seeds", []), *previous.get("seeds", [])})
    return result


def _nanmean(values) -> float:
    """Mean of the non-NaN values (NaN: no correct sample, so no answer distribution); NaN if none."""
    v = [x for x in values if x == x]
    return float(np.mean(v)) if v else float("nan")


def _curves(study, groups, metrics) -> dict:
    g = groups.get(study.curve_group)
    if g is None:
        return {}
    out = {}
    for method in study.curve_methods:
        rows = [metrics(RunSpec(MAIN_VARIANT, method, s)) for s in g.seeds]
        rows = [r for r in rows if r is not None and r.get("curve")]
        if rows:
            out[method] = np.mean([r["curve"] for r in rows], 0).tolist()
            out.setdefault("start", np.mean([r["start_curve"] for r in rows], 0).tolist())
    return out


def _brake(study, groups, metrics) -> dict:
    g = groups.get(study.brake_group)
    if g is None:
        return {}
    out = {}
    for variant in study.brake_variants:
        for method in g.methods:
            rows = [metrics(RunSpec(variant, method, s)) for s in g.seeds]
            rows = [r for r in rows if r is not None]
            if rows:
                out[f"{method} [{variant}]"] = {
                    key: [_nanmean(col) for col in zip(*[[np.nan if x is None else x for x in r["brake"][key]]
                                                          for r in rows])]
                    for key in rows[0]["brake"]
                }
                out[f"{method} [{variant}]"]["seeds"] = len(rows)
    return out


# ======================================================================================
# figures
# ======================================================================================


def write_figures(result: dict, folder: Path) -> list[Path]:
    """pass@k curves (log k), the paired-difference forest plot, brake engagement per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lad_ref.style import method_color

    folder.mkdir(parents=True, exist_ok=True)
    written = []

    def save(fig, stem):
        for ext in ("png", "pdf"):
            buf = io.BytesIO()  # written whole (temp file + rename), like every other output
            fig.savefig(buf, format=ext, dpi=150)
            write_atomic(folder / f"{stem}.{ext}", buf.getvalue())
            written.append(folder / f"{stem}.{ext}")
        plt.close(fig)

    curves = result.get("curves") or {}
    if curves:
        comp = next((c for c in result["paired"] if c == "lad(js) - grpo"), None)
        fig, axes = plt.subplots(1, 2 if comp else 1, figsize=(9.5 if comp else 5, 3.6), squeeze=False)
        ax = axes[0, 0]
        for name, ys in curves.items():
            ax.plot(range(1, len(ys) + 1), ys, label=name, color=method_color(name), ls="--" if name == "start" else "-")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("k (samples)")
        ax.set_ylabel("pass@k (held-out, mean over seeds)")
        ax.legend()
        if comp:
            d = result["paired"][comp]["pass_at_k_curve_diff"]
            ax = axes[0, 1]
            if d["ci95"] is not None:
                lo, hi = zip(*d["ci95"])
                ax.fill_between(d["k"], lo, hi, alpha=0.3, label="95% bootstrap CI over seeds")
            ax.plot(d["k"], d["mean"], label=f"{comp} (paired, {len(result['paired'][comp]['seeds'])} seeds)")
            ax.axhline(0, color="k", lw=0.8)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("k (samples)")
            ax.set_ylabel("pass@k difference")
            ax.legend(fontsize=7)
        fig.tight_layout()
        save(fig, "toy_study_pass_at_k")

    paired = result.get("paired") or {}
    if any(len(e["seeds"]) >= 2 for e in paired.values()):
        metric_names = [m for m in ("avg_at_k", "pass_at_256", "distinct_correct", "correct_answer_entropy",
                                    "correct_answer_kl_from_start", "policy_entropy")
                        if any(m in e for e in paired.values())]
        if not any(m.startswith("pass_at_") and m != "pass_at_1" for m in metric_names):
            metric_names.insert(1, next((m for e in paired.values() for m in e
                                         if re.fullmatch(r"pass_at_\d+", m) and m not in ("pass_at_1", "pass_at_16")),
                                        "pass_at_1"))
        comps = [c for c in paired if len(paired[c]["seeds"]) >= 2]  # one seed has no CI: left out of the plot
        fig, axes = plt.subplots(1, len(metric_names), figsize=(2.6 * len(metric_names), 0.35 * len(comps) + 1.4),
                                 sharey=True, squeeze=False)
        for ax, m in zip(axes[0], metric_names):
            for i, c in enumerate(comps):
                e = paired[c].get(m)
                if not e or e["mean"] is None:
                    continue
                ax.errorbar(e["mean"], i, xerr=[[e["mean"] - e["ci95"][0]], [e["ci95"][1] - e["mean"]]],
                            fmt="o", ms=3, capsize=2,
                            color="C0" if verdict(e) in ("holds", "reversed") else "0.5")
            ax.axvline(0, color="k", lw=0.8)
            ax.set_title(m, fontsize=8)
            ax.tick_params(labelsize=7)
        axes[0, 0].set_yticks(range(len(comps)))
        axes[0, 0].set_yticklabels([f"{c} (n={len(paired[c]['seeds'])})" for c in comps], fontsize=7)
        axes[0, 0].invert_yaxis()
        fig.suptitle(f"paired difference A - B per seed: mean and 95% bootstrap CI over seeds (blue: CI excludes 0 "
                     f"with >= {MIN_SEEDS_FOR_CI} seeds; a CI over 2-4 seeds is too coarse to test anything)", fontsize=8)
        fig.tight_layout()
        save(fig, "toy_study_forest")

    brake = result.get("brake") or {}
    if brake:
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
        for i, (name, b) in enumerate(brake.items()):
            color = f"C{i}"
            steps = range(1, len(b.get("brake/log_ratio_q50", [])) + 1)
            if "lad/weight_flip_frac" in b:
                axes[0].plot(steps, b["lad/weight_flip_frac"], color=color, label=name)
            if "grpo/clipfrac" in b:
                axes[0].plot(steps, b["grpo/clipfrac"], color=color, ls=":", label=name + " clip frac")
            if "brake/log_ratio_q95" in b:
                axes[1].fill_between(steps, b["brake/log_ratio_q05"], b["brake/log_ratio_q95"], color=color, alpha=0.25)
                axes[1].plot(steps, b["brake/log_ratio_q50"], color=color, label=name)
                axes[2].plot(steps, b["brake/log_ratio_abs_max"], color=color, label=name)
        axes[0].set_ylabel("LAD weight-flip fraction / GRPO clip fraction")
        axes[1].set_ylabel("log r: 5-95% band, median")
        axes[2].set_ylabel("max |log r| in the step")
        for ax in axes:
            ax.set_xlabel("RL step")
            ax.legend(fontsize=6)
        fig.tight_layout()
        save(fig, "toy_study_brake")
    return written


def markdown_table(result: dict, metrics: tuple[str, ...] = ("avg_at_k", "pass_at_256", "distinct_correct",
                                                             "correct_answer_entropy", "correct_answer_kl_from_start",
                                                             "policy_entropy")) -> str:
    """The paired differences as a Markdown table: mean [95% CI] (wins/seeds) per comparison and metric.

    ``pass_at_256`` stands for pass@n with n the study's samples per prompt (pass_at_8 in the FAST study).
    """
    ks = [int(m[8:]) for e in result.get("paired", {}).values() for m in e if re.fullmatch(r"pass_at_\d+", m)]
    if ks:
        metrics = tuple(f"pass_at_{max(ks)}" if m == "pass_at_256" else m for m in metrics)
    lines = ["| comparison (seeds) | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for comp, e in result.get("paired", {}).items():
        cells = []
        for m in metrics:
            cells.append(diff_cell(e.get(m), m))
        lines.append(f"| {comp} ({len(e['seeds'])}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ======================================================================================
# CLI
# ======================================================================================


def code_version() -> dict:
    """The git commit of the checkout (and whether it has uncommitted changes): the numbers depend on it."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "lad_ref"],
                                    cwd=root, capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "lad_ref_dirty": None}
    return {"commit": commit or None, "lad_ref_dirty": dirty if commit else None}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lad_ref.llm.study", description=__doc__.split("\n\n")[0],
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

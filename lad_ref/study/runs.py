"""Scheduling the study's runs: which are finished, the SFT start and training jobs, and :func:`execute`,
which runs them side by side through the sweep runner (lad_ref.sweep).

**Jobs side by side.** Every job runs in a worker process of :func:`lad_ref.sweep.run_jobs` started with
``spawn`` and one job per worker (``fresh=True``): a torch thread pool cannot be shared safely between
runs, and a fresh interpreter per run costs seconds against runs of minutes. The SFT starts the runs
need are computed first, one job per SFT key (``lad_ref.llm.sft.sft_key``), side by side; then the runs.
Each run job takes the run folder's lock (``lad_ref.llm.checkpoint.RunLock``, the trainer's), so a second
study on the same folders waits for a run another process is writing and then finds it finished: that
lock is what makes the study resumable and safe to start twice. Ctrl-C, SIGTERM and a failed job stop the
workers (finished runs are kept; unfinished ones resume from their last checkpoint next time).
"""

from __future__ import annotations

import time
from pathlib import Path

from lad_ref.llm.config import Config, ConfigError, from_dict, load_yaml, to_dict, validate
from lad_ref.llm.files import write_json
from lad_ref.llm.tasks import get_task_spec
from lad_ref.study.plan import GroupConfig, StudyConfig, all_variants, plan, run_config
from lad_ref.sweep import Job, run_jobs


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




def recorded_wall_s(run: Path) -> float | None:
    """The wall time the study's workers spent training ``run`` (study_time.json, summed over resumes); None if
    it has none. A damaged file is a ConfigError naming it."""
    from lad_ref.llm.files import read_json

    f = run / "study_time.json"
    return float(read_json(f, f"run {str(run)!r}")["wall_s"]) if f.exists() else None


# jobs (top-level functions: they run in worker processes)


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
        write_json(run / "study_time.json", {"wall_s": (recorded_wall_s(run) or 0.0) + wall}, indent=None)
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
    """Run every unfinished run of the named groups, ``jobs`` at a time; the SFT starts first, once per key."""
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

    t0 = time.time()
    sft: dict[str, dict] = {}  # SFT folder -> the config of the first run that needs it
    for s in todo:
        f = sft_folder(cfgs[s])
        if f is not None and not (f / "sft_info.json").exists():
            sft.setdefault(str(f), to_dict(cfgs[s]))
    if sft:
        run_jobs([Job(f"SFT start {f}", _sft_job, c) for f, c in sft.items()], jobs, progress=False, fresh=True,
                 desc="study SFT", log=lambda name: log(f"[study] {time.time() - t0:7.0f}s  {name} ready"))
    finished = 0

    def done(name: str) -> None:
        nonlocal finished
        finished += 1
        log(f"[study] {time.time() - t0:7.0f}s  finished {name} ({finished}/{len(todo)})")

    results = run_jobs([Job(f"{s.variant}/{s.method}/seed{s.seed}", _run_job, to_dict(cfgs[s])) for s in todo],
                       jobs, progress=False, fresh=True, desc="study runs", log=done)
    skipped = [s for s, r in zip(todo, results) if r.get("skipped")]
    for s in skipped:
        log(f"[study] skipped {s.variant}/{s.method}/seed{s.seed}: finished meanwhile by another process")
    return {"ran": len(todo) - len(skipped), "wall_s": time.time() - t0}

"""One sweep runner: jobs side by side in worker processes (the bandit's ``--all``, the regime bandit's
K sweep and controls, the study's runs).

:func:`run_jobs` takes a list of :class:`Job` (a name, a picklable top-level function and its
argument), runs them ``jobs`` at a time on a :class:`concurrent.futures.ProcessPoolExecutor` and
returns their results in submission order. Progress is a tqdm bar over finished jobs. A failed job
stops the sweep: the other workers are stopped and its exception is re-raised with the job's name
added (a note on Python >= 3.11, else in the message of a RuntimeError chained to it). Ctrl-C and
SIGTERM stop the workers too (SIGTERM is turned into KeyboardInterrupt while the sweep runs), so no
worker runs on orphaned. The workers' process ids are learnt through the executor's public
``initializer`` (each worker reports its pid on a queue), never through private attributes.

``jobs=1`` runs every job in this process, in order (no worker, no pickling): the sequential path
that tests and small sweeps use.

**Start method.** ``fork`` (the default on Linux, what torch's DataLoader uses there) where the
platform has it, ``spawn`` elsewhere or when asked. Forking copies the parent's imported modules, so
a worker starts in milliseconds; ``spawn`` starts a fresh interpreter that imports torch again
(1-3 s per worker on the 2-core development machine), which would eat most of what two workers save
on the bandit's 15 s sweep. Forking is safe here because the parent has done no torch computation
on an intra-op thread pool (the callers build configs and runs only) and every job sets its own
thread count (``lad_ref.threads.torch_threads``). The study asks for ``spawn`` with one job per
worker (``fresh=True``: ``max_tasks_per_child=1`` on Python >= 3.11): its jobs take minutes, each
run gets a fresh interpreter with no torch state from an earlier run, and the start cost is
negligible.

Workers are not daemonic (ProcessPoolExecutor's, since Python 3.9), so a job may start processes
of its own (parallel graders).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm


@dataclass(frozen=True)
class Job:
    """One unit of work: ``fn(arg)`` in a worker; ``name`` labels its progress and its errors."""

    name: str
    fn: Callable[[Any], Any]
    arg: Any = None


def default_jobs(groups: int) -> int:
    """The default number of workers: the CPUs this process may use, capped by ``groups`` (at least 1)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, groups))


def start_method(fresh: bool = False) -> str:
    """``spawn`` when a fresh interpreter per job is wanted or fork is unavailable, else ``fork`` (module doc)."""
    if fresh or "fork" not in multiprocessing.get_all_start_methods() or sys.platform == "darwin":
        return "spawn"
    return "fork"


def _report_pid(q) -> None:
    # a worker dies on SIGTERM / Ctrl-C (a forked one would inherit the sweep's SIGTERM handler) instead of
    # turning it into an exception and taking the next job
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    q.put(os.getpid())


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _named(err: BaseException, name: str) -> BaseException:
    """``err`` with the job's name attached (a note where Python has them, else a chained RuntimeError)."""
    if hasattr(err, "add_note"):
        err.add_note(f"in sweep job {name!r}")
        return err
    return RuntimeError(f"sweep job {name!r} failed: {type(err).__name__}: {err}")


def run_jobs(jobs_list: Sequence[Job], jobs: int = 1, *, progress: bool = True, desc: str = "jobs",
             fresh: bool = False, log: Callable[[str], None] | None = None) -> list[Any]:
    """Run ``jobs_list`` with ``jobs`` workers; their results in submission order (module doc).

    ``fresh``: a new spawned interpreter per job (long jobs that must not share torch state).
    ``log``: called with a line per finished job (e.g. the study's progress log), besides the bar.
    """
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}.")
    jobs_list = list(jobs_list)
    results: list[Any] = [None] * len(jobs_list)
    bar = tqdm(total=len(jobs_list), desc=desc, disable=not progress, mininterval=0.5)
    if jobs == 1 or len(jobs_list) <= 1:
        try:
            for i, job in enumerate(jobs_list):
                try:
                    results[i] = job.fn(job.arg)
                except Exception as err:
                    named = _named(err, job.name)
                    if named is err:
                        raise
                    raise named from err
                bar.update()
                if log is not None:
                    log(job.name)
        finally:
            bar.close()
        return results

    ctx = multiprocessing.get_context(start_method(fresh))
    pids = ctx.SimpleQueue()
    kwargs: dict[str, Any] = {"max_workers": min(jobs, len(jobs_list)), "mp_context": ctx,
                              "initializer": _report_pid, "initargs": (pids,)}
    if fresh and sys.version_info >= (3, 11):
        kwargs["max_tasks_per_child"] = 1
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if _main_thread() else None
    pool = ProcessPoolExecutor(**kwargs)
    futures = {}
    try:
        futures = {pool.submit(job.fn, job.arg): i for i, job in enumerate(jobs_list)}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for fut in done:
                i = futures[fut]
                err = fut.exception()
                if err is not None:
                    named = _named(err, jobs_list[i].name)
                    if named is err:
                        raise err  # its __cause__ is the worker's traceback
                    raise named from err
                results[i] = fut.result()
                bar.update()
                if log is not None:
                    log(jobs_list[i].name)
    except BaseException:
        # a failed job, Ctrl-C or SIGTERM: nothing more starts, and the running workers are stopped
        for fut in futures:
            fut.cancel()
        _stop_workers(pids)
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    else:
        pool.shutdown(wait=True)
    finally:
        bar.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return results


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _is_child(pid: int) -> bool:
    """Whether ``pid`` is still a child of this process (a finished worker's pid may have been reused)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1]) == os.getpid()
    except OSError:
        return not os.path.isdir("/proc")  # no procfs: trust the pid; a gone process fails os.kill below
    except (IndexError, ValueError):
        return False


def _stop_workers(pids) -> None:
    """SIGTERM every worker that reported its pid and is still this process's child."""
    while not pids.empty():
        pid = pids.get()
        if not _is_child(pid):
            continue
        try:
            os.kill(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass

"""Grade a batch of completions across cores, with a deadline per item.

* :func:`grade_math` -- :func:`lad_ref.rewards.math.math_reward` over a batch in a warm
  ``multiprocessing`` pool (math-verify/sympy holds the GIL, so the work must leave this process to use
  more cores). The pool is started on the first call and reused by later ones; items travel in chunks
  (few IPC round trips) and each is graded on a worker's main thread under its own SIGALRM deadline. A
  chunk that overruns ``items x timeout_s`` plus a grace period (a computation that ignores the alarm) has
  the pool terminated (``Pool.terminate``, public API) and replaced; its items score 0.0.
* :func:`grade_code` -- :func:`lad_ref.rewards.code.code_reward` over a batch from a pool of threads:
  each test already runs in its own sandboxed OS process and the grading thread only waits on pipes (the
  GIL is released). Every test has its own wall-clock limit (``timeout_s``), so an item takes at most
  about ``tests x timeout_s``.

*Library first*: ``multiprocessing.Pool`` for math (a standard executor that, unlike
``concurrent.futures.ProcessPoolExecutor``, can kill a stuck worker through its public API), started with
``fork`` (spawn and forkserver would re-import the caller's ``__main__`` in every worker: a script
without an ``if __name__ == "__main__"`` guard would hang), and ``concurrent.futures.ThreadPoolExecutor`` for code. Throughput
with 1 and N workers is measured side by side in ``benchmarks/bench_rewards.py``.

Neither function raises because of an item: a reference answer math-verify cannot read, or a test layout
that is not recognised, scores 0.0 with a warning naming it (once per distinct message). A sandbox that
cannot run here raises :class:`~lad_ref.rewards.code.SandboxError` before any work, so a misconfigured
machine is not mistaken for a policy that never solves anything.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import multiprocessing.pool
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from lad_ref.rewards.math import DEFAULT_TIMEOUT_S, check_math_settings, math_reward

__all__ = ["default_workers", "grade_code", "grade_math"]

logger = logging.getLogger(__name__)


def default_workers() -> int:
    """The CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _check_workers(workers) -> int:
    if workers is None:
        return default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer (or None for every core), got {workers!r}")
    return workers


def _check_lengths(a: Sequence, b: Sequence, names: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{names} must have the same length, got {len(a)} and {len(b)}")


# ----------------------------------------------------------------------------------------------------
# Math: threads, each driving one of math_reward's helper processes
# ----------------------------------------------------------------------------------------------------


def _grade_chunk(items: list[tuple], settings: dict, timeout_s: float) -> list[float]:
    """Worker side: each item on this process's main thread under its own SIGALRM deadline."""
    from lad_ref.rewards.math import math_reward

    return [math_reward(c, a, timeout_s=timeout_s, **settings) for c, a in items]


def _warm(_: int) -> bool:
    from lad_ref.rewards.math import _import_math_verify

    _import_math_verify()
    return True


_pools: dict[int, multiprocessing.pool.Pool] = {}
_pools_lock = threading.Lock()
_POOL_GRACE_S = 5.0


def _math_pool(workers: int) -> multiprocessing.pool.Pool:
    """The warm pool of ``workers`` processes, started once and reused by every later call."""
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is None:
            # fork: spawn and forkserver re-import the caller's __main__ in every worker, so a training
            # script without an `if __name__ == "__main__":` guard would start pools recursively and hang.
            # The workers are forked once (and only replaced after a kill), so the fork-with-threads
            # hazard is limited to that moment; they only run math-verify.
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            pool = multiprocessing.get_context(method).Pool(workers)
            pool.map(_warm, range(workers))  # math-verify imported in every worker before timing starts
            _pools[workers] = pool
        return pool


def _drop_pool(workers: int) -> None:
    with _pools_lock:
        pool = _pools.pop(workers, None)
    if pool is not None:
        pool.terminate()  # kills every worker, including one stuck past its deadline
        pool.join()


def shutdown_pools() -> None:
    """Stop every warm grading pool (also run at exit)."""
    for workers in list(_pools):
        _drop_pool(workers)


atexit.register(shutdown_pools)


def grade_math(
    completions: Sequence[str],
    answers: Sequence,
    *,
    workers: int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    **settings,
) -> list[float]:
    """``[math_reward(c, a, timeout_s=timeout_s, **settings) for c, a in zip(completions, answers)]``,
    across ``workers`` processes (default: every core; ``workers=1`` grades in this process).

    The processes are a ``multiprocessing`` pool started on the first call with that ``workers`` and reused
    by later calls (warm: math-verify imported, its caches kept). Items go out in chunks (about four per
    worker, so one IPC round trip carries many items); each item runs on a worker's main thread under its
    own SIGALRM deadline ``timeout_s``. If a chunk does not come back within ``chunk x timeout_s`` plus a
    grace period (a computation that ignores the alarm), the pool is terminated and replaced, and that
    chunk's items score 0.0.

    Raises ValueError for mismatched lengths or an invalid setting; never because of an item.
    """
    _check_lengths(completions, answers, "completions and answers")
    workers = _check_workers(workers)
    check_math_settings(timeout_s, **settings)
    if not completions:
        return []
    if workers == 1:
        return [math_reward(c, a, timeout_s=timeout_s, **settings) for c, a in zip(completions, answers)]
    items = [(c if isinstance(c, str) else None, a if isinstance(a, (str, int, float)) else None)
             for c, a in zip(completions, answers)]
    size = max(1, min(64, len(items) // (4 * workers)))
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    pool = _math_pool(workers)
    pending = [pool.apply_async(_grade_chunk, (chunk, settings, timeout_s)) for chunk in chunks]
    scores: list[float] = []
    for chunk, result in zip(chunks, pending):
        try:
            scores += result.get(timeout=len(chunk) * timeout_s + _POOL_GRACE_S)
        except multiprocessing.TimeoutError:
            logger.warning("grade_math: a chunk of %d items overran its deadline; the pool is replaced and "
                           "they score 0.0", len(chunk))
            _drop_pool(workers)  # the later chunks' results went with it: they are graded again
            scores += [0.0] * len(chunk)
            remaining = items[len(scores) :]
            return scores + grade_math([c for c, _ in remaining], [a for _, a in remaining], workers=workers,
                                       timeout_s=timeout_s, **settings)
    return scores


# ----------------------------------------------------------------------------------------------------
# Code: a thread pool over sandboxed processes
# ----------------------------------------------------------------------------------------------------

_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned and len(_warned) < 10_000:
        _warned.add(message)
        logger.warning(message)


def grade_code(
    programs: Sequence[str],
    tests: Sequence,
    *,
    workers: int | None = None,
    partial_credit: bool = False,
    **limits,
) -> list[float]:
    """``[code_reward(p, t, partial_credit=..., **limits) for p, t in zip(programs, tests)]`` across
    ``workers`` threads (default: every core), each item's tests run one after another in the sandbox.

    ``tests[i]`` is any layout :func:`lad_ref.rewards.code.run_tests` accepts (or its JSON string). An
    item whose tests cannot be read scores 0.0 with a warning. Raises SandboxError up front if the sandbox
    cannot run here, ValueError for mismatched lengths or an invalid limit.
    """
    from lad_ref.rewards.code import check_code_limits, code_reward, sandbox_mode

    _check_lengths(programs, tests, "programs and tests")
    workers = _check_workers(workers)
    if not programs:
        return []
    check_code_limits(**limits)  # a bad limit is the caller's error: raise, do not score 0
    sandbox_mode()  # SandboxError now, not once per item

    def one(program, test) -> float:
        try:
            return code_reward(program, test, partial_credit=partial_credit, **limits)
        except ValueError as exc:
            _warn_once(f"grade_code: an item scores 0.0 because its tests or program are unusable: {exc}")
            return 0.0

    if workers == 1:
        return [one(p, t) for p, t in zip(programs, tests)]
    with ThreadPoolExecutor(max_workers=min(workers, len(programs))) as pool:
        return list(pool.map(one, programs, tests))

"""Grade a batch of completions across cores, with a deadline per item.

* :func:`grade_math` -- :func:`lad_ref.rewards.math.math_reward` over a batch in a pool of worker
  *processes*: math-verify/sympy is pure Python and holds the GIL, so threads would run one at a time.
  Each worker runs ``math_reward`` on its main thread, so every item has its own SIGALRM deadline
  (``timeout_s``); a worker stuck in uninterruptible C code past the batch deadline is terminated with the
  whole pool (rebuilt on the next call) and its unfinished items score 0.0.
* :func:`grade_code` -- :func:`lad_ref.rewards.code.code_reward` over a batch in a pool of *threads*: each
  test already runs in its own sandboxed OS process and the grading thread only waits on pipes (the GIL is
  released), so threads give full parallelism without pickling programs and tests to other processes.
  Every test has its own wall-clock limit (``timeout_s``), so an item takes at most about
  ``tests x timeout_s``.

*Library first*: the pools are the standard library's ``multiprocessing.Pool`` (persistent, so the
one-time ~1 s import of sympy per worker is paid once per process, and with ``terminate()`` to kill a
stuck worker, which ``concurrent.futures.ProcessPoolExecutor`` lacks before Python 3.14) and
``concurrent.futures.ThreadPoolExecutor``. Throughput one core vs all cores is measured in
``benchmarks/bench_rewards.py``.

Neither function raises because of an item: a reference answer math-verify cannot read, or a test layout
that is not recognised, scores 0.0 with a warning naming it (once per distinct message). A sandbox that
cannot run here raises :class:`~lad_ref.rewards.code.SandboxError` before any work, so a misconfigured
machine is not mistaken for a policy that never solves anything.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from lad_ref.rewards.math import DEFAULT_TIMEOUT_S, check_math_settings, math_reward

__all__ = ["default_workers", "grade_code", "grade_math"]

logger = logging.getLogger(__name__)

# A worker that has not answered this long after the batch's last possible deadline is stuck.
_GRACE_S = 5.0


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
# Math: a persistent process pool
# ----------------------------------------------------------------------------------------------------

_pool_lock = threading.Lock()
_pool: multiprocessing.pool.Pool | None = None
_pool_size = 0
_pool_pid = 0


def _warm_up() -> None:
    math_reward("\\boxed{1}", "1")  # imports math-verify and sympy once per worker


def _math_item(args) -> float:
    completion, answer, timeout_s, settings = args
    return math_reward(completion, answer, timeout_s=timeout_s, **settings)


def _get_pool(workers: int):
    global _pool, _pool_size, _pool_pid
    if _pool is None or _pool_size != workers or _pool_pid != os.getpid():
        _close_pool()
        # spawn: a fresh interpreter, safe even when the caller has threads (torch, tqdm) that fork would
        # copy mid-operation.
        _pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_warm_up)
        _pool_size, _pool_pid = workers, os.getpid()
    return _pool


def _close_pool() -> None:
    global _pool
    if _pool is not None and _pool_pid == os.getpid():
        _pool.terminate()
        _pool.join()
    _pool = None


atexit.register(_close_pool)


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

    Raises ValueError for mismatched lengths or an invalid setting; never because of an item.
    """
    _check_lengths(completions, answers, "completions and answers")
    workers = _check_workers(workers)
    check_math_settings(timeout_s, **settings)
    if not completions:
        return []
    if workers == 1:
        return [math_reward(c, a, timeout_s=timeout_s, **settings) for c, a in zip(completions, answers)]
    items = [(c, a, timeout_s, settings) for c, a in zip(completions, answers)]
    # Every item has its own deadline inside a worker; the batch cannot legitimately take longer than
    # the items' deadlines laid end to end on the busiest worker.
    batch_deadline = time.monotonic() + timeout_s * -(-len(items) // workers) + _GRACE_S + 120.0 * (_pool is None)
    with _pool_lock:
        pool = _get_pool(workers)
        pending = [pool.apply_async(_math_item, (item,)) for item in items]
        scores: list[float] = []
        stuck = False
        for result in pending:
            left = batch_deadline - time.monotonic()
            try:
                scores.append(float(result.get(timeout=max(left, 0.01))) if not stuck else 0.0)
            except multiprocessing.TimeoutError:
                stuck = True
                scores.append(0.0)
        if stuck:
            logger.warning("grade_math: a worker overran the batch deadline; its items score 0 and the pool restarts")
            _close_pool()
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

"""Grade a batch of completions across cores, with a deadline per item.

* :func:`grade_math` -- :func:`lad_ref.rewards.math.math_reward` over a batch from a pool of threads.
  Called off the main thread, ``math_reward`` sends each item to one of its long-lived helper
  *processes* (math-verify/sympy holds the GIL, so the work must leave this process to use more cores),
  which grades it under its own SIGALRM deadline; a helper that does not answer within the deadline plus
  a grace period is killed and replaced, and that item scores 0.0. So every item has its own deadline.
* :func:`grade_code` -- :func:`lad_ref.rewards.code.code_reward` over a batch from a pool of threads:
  each test already runs in its own sandboxed OS process and the grading thread only waits on pipes (the
  GIL is released). Every test has its own wall-clock limit (``timeout_s``), so an item takes at most
  about ``tests x timeout_s``.

*Library first*: ``concurrent.futures.ThreadPoolExecutor`` for both. For math the processes are
``math_reward``'s own helper processes (plain ``subprocess`` children, killable one at a time) rather than
``multiprocessing.Pool``: a spawn pool re-imports the caller's ``__main__`` in every worker (a script
without an ``if __name__ == "__main__"`` guard then hangs) and cannot kill one stuck worker without
killing the pool. Throughput one core vs all cores is measured in ``benchmarks/bench_rewards.py``.

Neither function raises because of an item: a reference answer math-verify cannot read, or a test layout
that is not recognised, scores 0.0 with a warning naming it (once per distinct message). A sandbox that
cannot run here raises :class:`~lad_ref.rewards.code.SandboxError` before any work, so a misconfigured
machine is not mistaken for a policy that never solves anything.
"""

from __future__ import annotations

import logging
import os
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


def grade_math(
    completions: Sequence[str],
    answers: Sequence,
    *,
    workers: int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    **settings,
) -> list[float]:
    """``[math_reward(c, a, timeout_s=timeout_s, **settings) for c, a in zip(completions, answers)]``,
    across ``workers`` helper processes (default: every core; ``workers=1`` grades in this process).

    Raises ValueError for mismatched lengths or an invalid setting; never because of an item.
    """
    _check_lengths(completions, answers, "completions and answers")
    workers = _check_workers(workers)
    check_math_settings(timeout_s, **settings)
    if not completions:
        return []

    def one(completion, answer) -> float:
        return math_reward(completion, answer, timeout_s=timeout_s, **settings)

    if workers == 1:
        return [one(c, a) for c, a in zip(completions, answers)]
    with ThreadPoolExecutor(max_workers=min(workers, len(completions))) as pool:
        return list(pool.map(one, completions, answers))


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

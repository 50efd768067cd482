"""Tests for lad_ref.rewards.math: answer extraction and the math-verify based reward.

The table below is scored the way a careful human grader would score it. Where math-verify's raw
verdict disagreed, ``math_reward`` normalises the input (documented there as N0-N4); the expectation
here was never bent to fit the library.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("math_verify")

from lad_ref.rewards.math import extract_answer, math_reward  # noqa: E402

# (completion, reference answer, expected reward, why)
CASES = [
    # --- equivalent forms -------------------------------------------------------------------------
    ("So the answer is \\boxed{\\frac{1}{2}}.", "1/2", 1.0, "latex fraction vs slash"),
    ("\\boxed{0.5}", "\\frac{1}{2}", 1.0, "decimal vs fraction"),
    ("\\boxed{\\dfrac{1}{2}}", "0.5", 1.0, "dfrac vs decimal"),
    ("The answer is 1/2.", "$\\frac12$", 1.0, "marker answer, $-wrapped reference, \\frac12"),
    ("We get \\boxed{0.75}", "\\boxed{\\frac{3}{4}}", 1.0, "boxed reference"),
    ("\\boxed{\\frac{\\sqrt{2}}{2}}", "\\sqrt{2}/2", 1.0, "sqrt in a fraction"),
    ("\\boxed{2\\sqrt{3}}", "\\sqrt{12}", 1.0, "simplified radical"),
    ("\\boxed{\\frac{\\pi}{2}}", "\\pi/2", 1.0, "pi"),
    ("\\boxed{50\\%}", "50", 1.0, "percent sign on a percentage answer"),
    ("\\boxed{50\\%}", "0.5", 1.0, "percent vs decimal (N4)"),
    ("\\boxed{0.25}", "25\\%", 1.0, "decimal vs percent reference (N4)"),
    ("The side is \\boxed{5 \\text{ cm}}", "5", 1.0, "latex unit"),
    ("Answer: 5 cm", "5", 1.0, "plain unit"),
    ("Answer: 12 dollars", "12", 1.0, "unit word math-verify does not know (N3)"),
    ("\\boxed{\\$18.90}", "18.9", 1.0, "currency sign, trailing zero"),
    ("\\boxed{30^\\circ}", "30", 1.0, "degrees"),
    ("\\boxed{30°}", "30^\\circ", 1.0, "degree sign vs ^\\circ"),
    ("\\boxed{\\left[1, 2\\right)}", "[1,2)", 1.0, "half-open interval with \\left/\\right"),
    ("\\boxed{(-\\infty, 3]}", "(-\\infty,3]", 1.0, "unbounded interval"),
    ("\\boxed{\\{3, 1, 2\\}}", "\\{1,2,3\\}", 1.0, "set order does not matter"),
    ("\\boxed{-7}", "-7", 1.0, "negative number"),
    ("\\boxed{\u22127}", "-7", 1.0, "unicode minus (N0)"),
    ("\\boxed{1.5 \\times 10^{3}}", "1500", 1.0, "scientific notation, latex"),
    ("The answer is 1.5e3.", "1500", 1.0, "scientific e-notation (N1)"),
    ("\\boxed{2e-3}", "0.002", 1.0, "negative exponent e-notation (N1)"),
    ("\\boxed{10^{-3}}", "0.001", 1.0, "power of ten"),
    ("\\boxed{1,000}", "1000", 1.0, "comma thousands separator"),
    ("\\boxed{1\\,000}", "1000", 1.0, "thin-space thousands separator (N2)"),
    ("#### 1,234,567", "1234567", 1.0, "GSM8K marker with separators"),
    ("\\boxed{x = 5}", "5", 1.0, "assignment vs value"),
    ("\\boxed{2(x+1)}", "2x+2", 1.0, "expanded polynomial"),
    ("\\boxed{\\frac{x+1}{2}}", "(x+1)/2", 1.0, "symbolic fraction"),
    ("Adding up, 3 + 4 = 7", "7", 1.0, "trailing equation"),
    ("42", "42", 1.0, "bare answer"),
    ("First \\boxed{3}. Wait, that is wrong: \\boxed{4}", "4", 1.0, "last box wins"),
    # --- near misses ------------------------------------------------------------------------------
    ("\\boxed{0.33}", "\\frac{1}{3}", 0.0, "rounded too early"),
    ("\\boxed{-5}", "5", 0.0, "wrong sign"),
    ("\\boxed{(1, 2)}", "[1, 2]", 0.0, "open vs closed interval"),
    ("\\boxed{[1, 2)}", "[1, 2]", 0.0, "half-open vs closed"),
    ("\\boxed{2x}", "x^2", 0.0, "2x is not x^2"),
    ("\\boxed{3.14}", "\\pi", 0.0, "approximation of an exact answer"),
    ("\\boxed{\\sqrt{2}}", "2", 0.0, "missing square"),
    ("\\boxed{x^2 + 1}", "x^2 - 1", 0.0, "sign inside a polynomial"),
    ("\\boxed{12}", "\\{1, 2\\}", 0.0, "12 is not the set {1, 2}"),
    ("First I tried 7, which fails; the count is \\boxed{8}", "7", 0.0, "right number mid-text, wrong final"),
    ("First \\boxed{4}. Wait, that is wrong: \\boxed{3}", "4", 0.0, "earlier box does not count"),
    ("", "7", 0.0, "empty output"),
    ("\\boxed{\\frac{1}{2}", "\\frac{1}{2}", 0.0, "unbalanced braces (truncated)"),
    ("The answer is \\boxed{}", "0", 0.0, "empty box"),
    ("I don't know.", "3", 0.0, "no answer"),
    ("\\boxed{\\frac{{{}}", "1", 0.0, "garbage latex"),
    ("\\boxed{5}", "25", 0.0, "plain wrong"),
]


@pytest.mark.parametrize(
    ("completion", "answer", "expected"),
    [pytest.param(c, a, e, id=why) for c, a, e, why in CASES],
)
def test_math_reward_table(completion: str, answer: str, expected: float) -> None:
    assert math_reward(completion, answer) == expected


def test_table_is_large_and_balanced() -> None:
    assert len(CASES) >= 30
    assert sum(e == 1.0 for *_, e, _ in CASES) >= 15
    assert sum(e == 0.0 for *_, e, _ in CASES) >= 10


def test_plain_text_pi_is_pi() -> None:  # N5
    assert math_reward("Answer: 2pi", "2\\pi") == 1.0
    assert math_reward("Answer: pi/2", "\\frac{\\pi}{2}") == 1.0
    assert math_reward("Answer: 3pi", "2\\pi") == 0.0


def test_numeric_reference_answers() -> None:
    assert math_reward("\\boxed{3}", 3) == 1.0
    assert math_reward("\\boxed{1/2}", 0.5) == 1.0
    assert math_reward("\\boxed{4}", 3) == 0.0


# --------------------------------------------------------------------------------------------------
# extract_answer: order of precedence
# --------------------------------------------------------------------------------------------------

EXTRACTION_CASES = [
    # 1. boxed: the last box anywhere wins over every other rule
    ("The answer is 3. Then \\boxed{4}", "4"),
    ("\\boxed{4}. The answer is 3.", "4"),
    ("\\boxed{1} and later \\boxed{2}", "2"),
    ("\\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{1}{\\sqrt{2}}"),
    ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
    ("$\\boxed{x = \\{a\\}}$.", "x = \\{a\\}"),
    ("\\fbox{7}", "7"),
    ("so \\boxed 5 is it", "5"),
    ("\\boxed{1} then \\boxed{2", None),  # truncated final box: no fallback to the earlier one
    ("The answer is 3. \\boxed{ }", "3"),  # empty boxes carry no answer and are ignored
    ("Put the final answer in \\boxed{}.\nSo the answer is 5.", "5"),  # echoed instruction
    ("\\boxed{2}, then \\boxed{}", "2"),
    ("The answer is \\boxed{}", None),
    # 2. answer markers: the last marker wins, first sentence/line only
    ("The answer is 3. Actually, the final answer is 5.", "5"),
    ("Final Answer:\n\n$42$", "42"),
    ("Natalia sold 48 + 24 = 72 clips.\n#### 72", "72"),
    ("**Answer:** 12", "12"),
    ("The answer is 3.5. Let me double-check: 7/2 = 3.5.", "3.5"),
    ("The answer is $x = 2.5$.", "x = 2.5"),
    ("the answer is: \\(\\frac{3}{4}\\)", "\\frac{3}{4}"),
    ("The final answer is\n$$\n\\frac{3}{4}\n$$", "\\frac{3}{4}"),
    ("The answer is 5.\nSo x = 7", "5"),  # a marker beats a trailing equation
    # 3. trailing equation on the last non-empty line
    ("We add.\n2 + 2 = 4\n\n", "4"),
    ("We add.\n\\[ 2 + 2 = 4 \\]", "4"),
    ("Thus\n$x = \\frac{1}{2}$.", "\\frac{1}{2}"),
    ("We know that\nx <= 3", None),  # comparisons are not answers
    # 4. bare one-line answer
    ("  $\\frac{1}{2}$  ", "\\frac{1}{2}"),
    ("42", "42"),
    ("This single line is far too long to be just an answer, so no.", None),
    # 5. nothing
    ("", None),
    ("   \n  ", None),
    ("Let me think.\nI am not sure what to do here.", None),
]


@pytest.mark.parametrize(("completion", "expected"), EXTRACTION_CASES)
def test_extract_answer(completion: str, expected: str | None) -> None:
    assert extract_answer(completion) == expected


@pytest.mark.parametrize("bad", [None, 42, b"\\boxed{1}", ["\\boxed{1}"]])
def test_extract_answer_non_string_is_none(bad) -> None:
    assert extract_answer(bad) is None


# --------------------------------------------------------------------------------------------------
# robustness: garbage in -> 0.0, bounded time, thread safety, argument errors
# --------------------------------------------------------------------------------------------------

GARBAGE = [
    None,
    123,
    "\\boxed{",
    "}}}{{{",
    "\\frac",
    "$$$$",
    "\x00\xff\ufffd",
    "a" * 100_000,
    "\\boxed{" + "{" * 5000 + "}",
    "Answer: " + "1+" * 3000 + "1",
    "\\boxed{\\begin{pmatrix}",
    "\\boxed{1/0}",
    "\\boxed{0/0}",
    "\\boxed{\\sqrt{-1}}",
    "\\boxed{\\log(0)}",
    "\\boxed{\\left(}",
    "\\boxed{\\\\\\\\}",
]


@pytest.mark.parametrize("completion", GARBAGE, ids=[repr(g)[:30] for g in GARBAGE])
def test_garbage_scores_zero_without_raising(completion) -> None:
    assert math_reward(completion, "7") == 0.0


# sympy would need astronomically long to evaluate this tower exactly.
PATHOLOGICAL = "\\boxed{9^{9^{9^{9}}}}"


def test_pathological_input_respects_deadline() -> None:
    start = time.monotonic()
    assert math_reward(PATHOLOGICAL, "1", timeout_s=1.0) == 0.0
    assert time.monotonic() - start < 1.0 + 1.0


def test_callers_sigalrm_timer_is_restored() -> None:
    fired = []

    def handler(signum, frame):
        fired.append(signum)

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 30.0)
        assert math_reward("\\boxed{1/2}", "0.5") == 1.0
        assert math_reward(PATHOLOGICAL, "1", timeout_s=0.5) == 0.0
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert signal.getsignal(signal.SIGALRM) is handler
        assert 25.0 < remaining <= 30.0
        assert not fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_works_from_worker_threads_with_a_deadline() -> None:
    # math-verify's own timeouts use signal.alarm and refuse to run off the main thread.
    with ThreadPoolExecutor(max_workers=2) as pool:
        # warm-up: the first threaded call starts a helper process (an interpreter + sympy import)
        assert pool.submit(math_reward, "\\boxed{1/2}", "0.5").result() == 1.0
        start = time.monotonic()
        futures = [
            pool.submit(math_reward, PATHOLOGICAL, "1", timeout_s=1.0),
            pool.submit(math_reward, "\\boxed{\\frac{3}{4}}", "0.75"),
            pool.submit(math_reward, "\\boxed{-5}", "5"),
        ]
        results = [f.result(timeout=30) for f in futures]
        elapsed = time.monotonic() - start
    assert results == [0.0, 1.0, 0.0]
    # deadline + helper grace period + (possibly) starting a second helper
    assert elapsed < 1.0 + 2.0 + 10.0


def test_unresponsive_helper_is_killed_and_replaced(monkeypatch) -> None:
    import lad_ref.rewards.math as math_module

    monkeypatch.setattr(math_module, "_WORKER_GRACE_S", 0.2)
    stuck = math_module._VerifyWorker()
    os.kill(stuck.proc.pid, signal.SIGSTOP)  # stands in for a helper wedged in uninterruptible C code
    with math_module._idle_lock:
        math_module._idle_workers.append(stuck)  # the next threaded call picks it (LIFO)
    with ThreadPoolExecutor(max_workers=1) as pool:
        start = time.monotonic()
        assert pool.submit(math_reward, "\\boxed{1}", "1", timeout_s=0.5).result(timeout=30) == 0.0
        assert time.monotonic() - start < 0.5 + 0.2 + 1.0
        assert stuck.proc.poll() is not None, "the stuck helper was not killed"
        assert pool.submit(math_reward, "\\boxed{1}", "1").result(timeout=60) == 1.0  # a fresh helper


def test_thread_results_match_main_thread() -> None:
    cases = CASES[::4]
    with ThreadPoolExecutor(max_workers=2) as pool:
        threaded = list(pool.map(lambda c: math_reward(c[0], c[1]), cases))
    assert threaded == [e for _, _, e, _ in cases]
    assert threading.current_thread() is threading.main_thread()


@pytest.mark.parametrize("answer", [None, ["1"], True, {"a": 1}])
def test_bad_reference_type(answer) -> None:
    with pytest.raises(TypeError, match="answer must be"):
        math_reward("\\boxed{1}", answer)


@pytest.mark.parametrize("answer", ["", "   ", "$ $", "\\boxed{}"])
def test_empty_reference(answer) -> None:
    with pytest.raises(ValueError, match="empty"):
        math_reward("\\boxed{1}", answer)


@pytest.mark.parametrize("timeout_s", [0, -1.0, float("nan"), float("inf"), True, "5"])
def test_bad_timeout(timeout_s) -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        math_reward("\\boxed{1}", "1", timeout_s=timeout_s)

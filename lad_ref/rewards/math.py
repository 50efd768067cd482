"""Answer extraction and a verifiable correctness reward for math completions.

Two public functions:

* :func:`extract_answer` finds the *final* answer a model committed to in a free-form completion
  (``\\boxed{...}`` first, then "the answer is X" style markers, then a trailing ``= X``).
* :func:`math_reward` returns 1.0 when that answer is mathematically equivalent to the reference answer
  and 0.0 otherwise. Equivalence is decided by Hugging Face's ``math-verify`` library
  (https://github.com/huggingface/Math-Verify, ``parse`` + ``verify``), the checker used for the
  rule-based rewards of DeepSeek-R1-style RL (GRPO, DAPO, ...), after a few documented normalisations
  that fix verdicts where math-verify 0.9 disagrees with a careful human grader (see
  :func:`math_reward`).

The reward is a pure function of strings: no torch, no model. It never raises because of what the model
wrote (unparsable, huge or adversarial output scores 0.0) and never hangs: every call runs under a
wall-clock deadline, enforced with ``SIGALRM`` on the main thread and by a killable helper process
when called from any other thread (math-verify's own timeouts are ``signal.alarm`` based and refuse to
run off the main thread).

``math-verify`` lives in the ``[llm]`` extra; it is imported lazily so that :func:`extract_answer` and
the rest of :mod:`lad_ref.rewards` work without it.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["extract_answer", "math_reward", "DEFAULT_TIMEOUT_S"]

logger = logging.getLogger(__name__)

#: Default wall-clock budget of one :func:`math_reward` call (parsing + verification, all variants).
DEFAULT_TIMEOUT_S = 5.0

# An extracted final answer longer than this is not a final answer (it is usually a run-on paragraph
# picked up by a marker); refusing it early also keeps parsing time bounded.
_MAX_ANSWER_CHARS = 1000


# ----------------------------------------------------------------------------------------------------
# Answer extraction
# ----------------------------------------------------------------------------------------------------

# ``\boxed`` and ``\fbox`` (the command ``\boxed`` expands to), but not e.g. ``\boxedfoo``.
_BOX_CMD = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_EMPTY_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])\s*\{\s*\}")

# Phrases that announce a final answer. The *last* one in the completion wins (models restate).
#   "The answer is X", "The final answer is: X", "Final Answer: X", "**Answer:** X", "Answer = X",
#   and GSM8K's "#### X".
_MARKER = re.compile(
    r"(?:"
    r"(?:\bthe\s+)?(?:\bfinal\s+)?\banswer\s*(?:\*\*|__)?\s*(?:is\b\s*:?|:|=)(?:\s*\*\*|\s*__)?"
    r"|####"
    r")",
    re.IGNORECASE,
)

# A sentence ends at a period/!/? followed by whitespace or the end; "3.5" and "e.g." mid-token do not.
_SENTENCE_END = re.compile(r"(?<=\S)[.!?](?=\s|$)")

# Wrappers a model puts around an answer that are not part of it.
_MATH_DELIMS = (
    ("$$", "$$"),
    ("$", "$"),
    ("\\(", "\\)"),
    ("\\[", "\\]"),
    ("**", "**"),
    ("__", "__"),
    ("`", "`"),
)


def _braced_group(text: str, open_at: int) -> str | None:
    """Content of the ``{...}`` group whose ``{`` is at ``open_at``; None if it never closes.

    Escaped braces (``\\{`` and ``\\}``, LaTeX's literal braces as in ``\\{1, 2\\}``) do not count.
    """
    depth = 0
    i = open_at
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2  # skip the escaped character, whatever it is
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i]
        i += 1
    return None


def _box_argument(text: str, after_cmd: int) -> str | None:
    """Argument of the box command ending at ``after_cmd``: its text, "" if empty, None if unterminated."""
    rest = text[after_cmd:]
    stripped = rest.lstrip()
    if stripped.startswith("{"):
        return _braced_group(text, after_cmd + (len(rest) - len(stripped)))
    # TeX also accepts a single-token argument: ``\boxed 5`` (models write ``\boxed 42`` too).
    token = re.match(r"[^\s$}]+", stripped)
    return token.group(0) if token and rest[:1].isspace() else ""


def _find_boxed(text: str) -> tuple[str, str | None]:
    """Locate the boxed final answer.

    Returns ``("found", content)`` for the last non-empty ``\boxed``/``\fbox``; ``("truncated", None)``
    if the last box never closes (a generation cut off inside it); ``("absent", None)`` if there is no
    box or only empty ones (e.g. an echoed instruction "put your answer in \boxed{}").
    """
    matches = list(_BOX_CMD.finditer(text))
    for i, match in enumerate(reversed(matches)):
        content = _box_argument(text, match.end())
        if content is None:
            if i == 0:
                return "truncated", None
            continue
        if content.strip():
            return "found", content.strip()
    return "absent", None


def _strip_wrappers(text: str) -> str:
    """Remove the decoration around an answer: math delimiters, markdown emphasis, trailing punctuation."""
    text = text.strip()
    for _ in range(4):  # wrappers nest, e.g. "**$5$**."
        before = text
        text = text.rstrip(" \t.,;:!")
        for left, right in _MATH_DELIMS:
            if len(text) >= len(left) + len(right) and text.startswith(left) and text.endswith(right):
                text = text[len(left) : len(text) - len(right)].strip()
        if text == before:
            break
    return text


def _after_marker(completion: str) -> str | None:
    """The answer announced by the last answer marker, or None."""
    matches = list(_MARKER.finditer(completion))
    if not matches:
        return None
    rest = completion[matches[-1].end() :]
    lines = rest.split("\n")
    # "Final Answer:\n\n42": the answer may start on a later line.
    first = next((line for line in lines if line.strip()), "")
    first = first.strip()
    # A display formula ``\[ ... \]`` or ``$$ ... $$`` may span lines; take it whole.
    for left, right in (("\\[", "\\]"), ("$$", "$$")):
        if first.startswith(left) and right not in first[len(left) :]:
            joined = " ".join(line.strip() for line in rest.split("\n"))
            start = joined.find(left)
            close = joined.find(right, start + len(left))
            if close != -1:
                first = joined[start : close + len(right)]
            break
    # Only the first sentence: "The answer is 5. To check, ..." -> "5". A period that is part of a
    # math span ($...$) is not a sentence end, so cut only outside dollars (counted incrementally:
    # linear time even on adversarial lines).
    cut, dollars, counted_to = len(first), 0, 0
    for m in _SENTENCE_END.finditer(first):
        dollars += first.count("$", counted_to, m.start())
        counted_to = m.start()
        if dollars % 2 == 0:
            cut = m.start()
            break
    answer = _strip_wrappers(first[:cut])
    return answer or None


def _after_last_equals(completion: str) -> str | None:
    """Text after the last ``=`` of the last non-empty line ("... = 42"), or None."""
    lines = [line for line in completion.strip().split("\n") if line.strip()]
    if not lines:
        return None
    last = lines[-1]
    # Comparisons are not assignments: "<=", ">=", "!=", "==" do not announce a value.
    eqs = [m.start() for m in re.finditer(r"(?<![<>!=])=(?!=)", last)]
    if not eqs:
        return None
    answer = _strip_wrappers(last[eqs[-1] + 1 :])
    # "... = 42 \]" / "... = 42$": closing delimiters of a formula that started before the "=".
    answer = re.sub(r"(?:\\\]|\\\)|\$+)\s*$", "", answer).strip()
    answer = _strip_wrappers(answer)
    return answer or None


def extract_answer(completion: str) -> str | None:
    """Return the final answer stated in a model completion, or None if it states none.

    Order of precedence (the first rule that applies decides; later rules are not consulted):

    1. **Boxed.** If the completion contains a non-empty ``\\boxed{...}`` or ``\\fbox{...}`` anywhere,
       the answer is the content of the *last* non-empty one, with balanced braces
       (``\\boxed{\\frac{1}{2}}`` -> ``\\frac{1}{2}``; escaped ``\\{``/``\\}`` are literal braces).
       If the last box is unterminated (a generation truncated inside it), the result is None: the
       model's final answer is unreadable, so no earlier box or plain-text answer is substituted.
       Empty boxes (``\\boxed{}``, e.g. an echoed instruction) are ignored everywhere.
    2. **Answer marker.** Otherwise the text after the *last* of "the answer is", "final answer is",
       "Answer:", "Final Answer:", "answer =", or GSM8K's "####" (case-insensitive, markdown
       ``**Answer:**`` allowed), up to the end of its first sentence or line. If the marker ends its
       line, the next non-empty line is the answer.
    3. **Trailing equation.** Otherwise, if the last non-empty line contains ``=`` (not ``<=``,
       ``>=``, ``!=``, ``==``), the text after its last ``=`` ("so 3 + 4 = 7" -> "7").
    4. **Bare answer.** Otherwise, if the whole completion is one short line (at most 40 characters,
       e.g. ``"42"`` or ``"$\\frac{1}{2}$"``) without an answer marker, that line. This goes beyond
       marker-based extraction so that a policy answering with nothing but the answer is still graded.
    5. Otherwise None.

    In rules 2-4 surrounding ``$...$``, ``\\(...\\)``, ``\\[...\\]``, markdown ``**``/backticks and
    trailing punctuation are removed. The returned string is stripped and never empty.

    Non-string input returns None (the reward functions treat that as a wrong answer).
    """
    if not isinstance(completion, str) or not completion.strip():
        return None
    state, boxed = _find_boxed(completion)
    if state == "found":
        return boxed
    if state == "truncated":
        return None
    completion = _EMPTY_BOX.sub("", completion)
    if not completion.strip():
        return None
    answer = _after_marker(completion)
    if answer is not None:
        return answer
    answer = _after_last_equals(completion)
    if answer is not None:
        return answer
    whole = completion.strip()
    if "\n" not in whole and len(whole) <= 40 and not _MARKER.search(whole):
        return _strip_wrappers(whole) or None
    return None


# ----------------------------------------------------------------------------------------------------
# Normalisation (fixes for math-verify verdicts that disagree with a human grader)
# ----------------------------------------------------------------------------------------------------

# A plain number: optional sign, digits with optional "," thousands groups, optional decimals.
_NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+"

# N1. Scientific "e" notation: math-verify parses "1.5e3" as 1.5 * e * 3 (Euler's number).
_SCI_E = re.compile(r"^\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+))\s*[eE]\s*([-+]?\d+)\s*$")

# N2. Thousands separated by a space or a LaTeX spacing command ("1 000", "1\,000", "1\ 000", "1~000"):
# math-verify reads these as a product (1 * 000 = 0). Only exact groups of three digits qualify.
_SPACED_THOUSANDS = re.compile(
    r"(?<![\d.])\d{1,3}(?:(?:\\,|\\;|\\:|\\ |~|\u2009|\u202f|\u00a0| )\d{3})+(?![\d])"
)
_THOUSANDS_SEP = re.compile(r"\\,|\\;|\\:|\\ |~|\u2009|\u202f|\u00a0| ")

# N3. A number followed by a unit or count noun in plain words ("5 dollars", "12 red apples").
# math-verify strips only the units on its own list (cm, kg, inches, ...) and otherwise multiplies the
# letters as symbols (5 * d * o * l * ...). Words that are mathematics, not units, are kept.
_NUMBER_WITH_WORDS = re.compile(
    rf"^\s*(?:\\\$\s*)?({_NUMBER})\s*(?:\\text\s*\{{\s*([A-Za-z][A-Za-z .]*)\}}|([A-Za-z][A-Za-z]+(?:\s+[A-Za-z]+){{0,3}}))\s*\.?\s*$"
)
_MATH_WORDS = frozenset(
    {
        "pi",
        "e",
        "i",
        "inf",
        "infty",
        "infinity",
        "sqrt",
        "and",
        "or",
        "x",
        "y",
        "z",
        "n",
        "k",
        "deg",
        "degree",
        "degrees",
        "percent",
        "mod",
        "times",
        "cdot",
        "over",
        "i.e",
        "rad",
        "radians",
    }
)

# N4. Percent: math-verify reads "50\%" as 50, so "50\%" vs "0.5" fails although they are equal.
# Accept both readings (50 and 0.5) of a "number %" answer.
_PERCENT = re.compile(rf"^\s*({_NUMBER})\s*(?:\\%|%|\\text\s*\{{\s*percent\s*\}}|\s+percent)\s*$")

# N5. Plain-text pi ("2pi", "pi/2"): math-verify reads the letters as the symbols p * i.
_PLAIN_PI = re.compile(r"(?<![\\A-Za-z])pi(?![A-Za-z])")


def _normalise(answer: str) -> list[str]:
    """Spellings of ``answer`` to hand to math-verify: the normalised form first, then alternatives.

    N0 (always): Unicode minus signs become ``-``; ``\\$`` currency signs, stray ``$`` delimiters and
    markdown wrappers are removed; the text is stripped.
    N1: ``1.5e3`` / ``2E-4`` (a number in e-notation, alone) -> ``1.5\\times10^{3}``.
    N2: digit groups separated by spaces or LaTeX spacing (``1\\,000``) -> ``1000``.
    N3: ``5 dollars`` / ``5 \\text{apples}`` -> ``5`` (a number followed only by unit words).
    N4: ``50\\%`` -> alternatives ``50`` and ``\\frac{50}{100}``.
    N5: plain-text ``pi`` (``2pi``, ``pi/2``) -> ``\\pi``.
    """
    text = answer.replace("\u2212", "-").replace("\u2013", "-").replace("\\$", "").replace("\\!", "")
    text = _strip_wrappers(text).replace("$", "").strip()
    m = _SCI_E.match(text)
    if m:
        mantissa, exponent = m.group(1), int(m.group(2))
        text = f"{mantissa}\\times10^{{{exponent}}}"
    text = _SPACED_THOUSANDS.sub(lambda g: _THOUSANDS_SEP.sub("", g.group(0)), text)
    m = _NUMBER_WITH_WORDS.match(text)
    if m:
        words = (m.group(2) or m.group(3) or "").strip().rstrip(".").lower()
        if words and not (set(words.split()) & _MATH_WORDS):
            text = m.group(1)
    text = _PLAIN_PI.sub(r"\\pi", text)
    variants = [text]
    m = _PERCENT.match(text)
    if m:
        number = m.group(1).replace(",", "")
        variants = [number, f"\\frac{{{number}}}{{100}}"]
    return variants


def _reference_text(answer: str) -> str:
    """The bare reference answer: the content of a ``\\boxed{}`` if given boxed, without delimiters."""
    state, boxed = _find_boxed(answer)
    if state == "found":
        return _strip_wrappers(boxed or "")
    if state == "truncated":
        return ""  # an unterminated box holds no usable reference answer
    return _strip_wrappers(_EMPTY_BOX.sub("", answer))


# ----------------------------------------------------------------------------------------------------
# Verification under a deadline
# ----------------------------------------------------------------------------------------------------


class _Deadline(BaseException):
    """Raised by our SIGALRM handler.

    A BaseException on purpose: math-verify and sympy wrap their work in ``except Exception`` and
    would otherwise swallow the interruption and carry on past the deadline.
    """


_deadline_armed = False  # only the main thread touches this


def _on_alarm(signum, frame):
    if _deadline_armed:
        raise _Deadline


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`_Deadline` in the main thread after ``seconds``; restore any previous timer.

    The timer re-fires every 50 ms after the deadline, so even a ``except BaseException: pass`` deep in
    a dependency cannot swallow it for good. A caller's own SIGALRM handler and pending ``ITIMER_REAL``
    timer (e.g. pytest-timeout's) are restored, with the time we used subtracted.
    """
    global _deadline_armed
    old_handler = signal.signal(signal.SIGALRM, _on_alarm)
    started = time.monotonic()
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, seconds, 0.05)
    _deadline_armed = True
    try:
        yield
    finally:
        # Disarm in a loop: a tick landing between these statements raises _Deadline once more.
        while True:
            try:
                _deadline_armed = False
                signal.setitimer(signal.ITIMER_REAL, 0)
                break
            except _Deadline:
                continue
        signal.signal(signal.SIGALRM, old_handler if old_handler is not None else signal.SIG_DFL)
        if old_delay > 0:
            left = max(old_delay - (time.monotonic() - started), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, left, old_interval)


_LOGGING_CONFIGURED = False


def _quiet_math_verify() -> None:
    """Drop math-verify's 'Timeout is disabled' warning: we pass timeouts=None *because* we enforce one."""
    global _LOGGING_CONFIGURED
    if _LOGGING_CONFIGURED:
        return

    class _NoTimeoutDisabledWarning(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "Timeout is disabled" not in record.getMessage()

    for name in ("math_verify.parser", "math_verify.grader", "math_verify.utils"):
        logging.getLogger(name).addFilter(_NoTimeoutDisabledWarning())
    _LOGGING_CONFIGURED = True


def _import_math_verify():
    try:
        import math_verify
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ImportError(
            "math_reward needs the 'math-verify' package: pip install 'lad_ref[llm]' (or math-verify>=0.7)"
        ) from exc
    _quiet_math_verify()
    return math_verify


def _verify_variants(pred_variants: list[str], gold_variants: list[str]) -> bool:
    """math-verify verdict for any (gold, prediction) pair of spellings; no timeout of its own."""
    mv = _import_math_verify()
    config = [mv.LatexExtractionConfig(), mv.ExprExtractionConfig()]

    def parse(text: str):
        # Wrapped in $...$ so the LaTeX extractor takes the whole string as one expression; the plain
        # expression extractor is the fallback for inputs that are not valid LaTeX.
        # parsing_timeout/timeout_seconds=None: math-verify's signal.alarm timers would clobber ours.
        return mv.parse(f"${text}$", extraction_config=config, parsing_timeout=None)

    golds = [parse(g) for g in gold_variants]
    for pred_text in pred_variants:
        pred = parse(pred_text)
        if not pred:
            continue
        for gold in golds:
            if gold and mv.verify(gold, pred, timeout_seconds=None):
                return True
    return False


def _verdict_in_this_thread(pred_variants: list[str], gold_variants: list[str], timeout_s: float) -> bool:
    """Verify on the main thread under a SIGALRM deadline; a timeout counts as not equivalent.

    Raises ValueError if SIGALRM cannot be used here (the caller then falls back to a helper process).
    """
    try:
        with _deadline(timeout_s):
            try:
                return _verify_variants(pred_variants, gold_variants)
            except Exception:  # math-verify/sympy failures on odd input are a wrong answer, not a crash
                logger.debug("math_reward: verification failed", exc_info=True)
                return False
    except _Deadline:
        logger.debug("math_reward: verification exceeded %.1fs, scoring 0", timeout_s)
        return False


# ----- helper processes for calls from non-main threads ---------------------------------------------

# Off the main thread there is no SIGALRM, and nothing else can interrupt a runaway sympy computation
# (e.g. 9^{9^{9^{9}}}) inside this process. Such calls are sent to a long-lived helper process that runs
# the same code on *its* main thread under the same deadline; if it still does not answer within the
# deadline plus a grace period, it is killed and replaced. One helper per concurrently calling thread,
# capped at the CPU count; extra threads wait for a free helper.
_WORKER_GRACE_S = 2.0
_WORKER_START_TIMEOUT_S = 120.0
_MAX_WORKERS = max(1, os.cpu_count() or 1)
_worker_slots = threading.BoundedSemaphore(_MAX_WORKERS)
_idle_lock = threading.Lock()


class _VerifyWorker:
    """A ``python`` child process that answers verification requests, one JSON line each way."""

    def __init__(self) -> None:
        env = dict(os.environ)
        # The child must import this very package, whether it is installed or run from a checkout.
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        self.owner_pid = os.getpid()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from lad_ref.rewards.math import _serve_worker; _serve_worker()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        self._buffer = b""
        if self._read_line(_WORKER_START_TIMEOUT_S) != "ready":
            self.kill()
            raise RuntimeError("math_reward: the verification helper process failed to start")

    def _read_line(self, timeout_s: float) -> str | None:
        """Next protocol line, or None if the child died or stayed silent for ``timeout_s``."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], left)
            if readable:
                chunk = os.read(fd, 65536)
                if not chunk:
                    return None
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def ask(self, pred_variants: list[str], gold_variants: list[str], timeout_s: float) -> bool | None:
        """The helper's verdict, or None if it did not answer in ``timeout_s`` plus a grace period."""
        assert self.proc.stdin is not None
        request = json.dumps({"pred": pred_variants, "gold": gold_variants, "timeout_s": timeout_s})
        try:
            self.proc.stdin.write(request.encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:  # helper died (killed by the OOM killer, ...)
            return None
        line = self._read_line(timeout_s + _WORKER_GRACE_S)
        if line is None:
            return None
        try:
            return bool(json.loads(line)["ok"])
        except (ValueError, KeyError, TypeError):
            return None

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


_idle_workers: list[_VerifyWorker] = []


def _serve_worker() -> None:
    """Main loop of a helper process (see :class:`_VerifyWorker`)."""
    # Keep the protocol channel private: anything a library prints goes to stderr, not to the parent.
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    _import_math_verify()
    protocol.write("ready\n")
    protocol.flush()
    for line in sys.stdin:  # ends when the parent closes our stdin (or exits)
        request = json.loads(line)
        ok = _verdict_in_this_thread(request["pred"], request["gold"], float(request["timeout_s"]))
        protocol.write(json.dumps({"ok": ok}) + "\n")
        protocol.flush()


def _verdict_via_worker(pred_variants: list[str], gold_variants: list[str], timeout_s: float) -> bool:
    with _worker_slots:
        with _idle_lock:
            worker = _idle_workers.pop() if _idle_workers else None
        if worker is None or worker.proc.poll() is not None or worker.owner_pid != os.getpid():
            worker = _VerifyWorker()
        verdict = worker.ask(pred_variants, gold_variants, timeout_s)
        if verdict is None:
            logger.debug("math_reward: helper gave no verdict within %.1fs, scoring 0", timeout_s)
            worker.kill()
            return False
        with _idle_lock:
            _idle_workers.append(worker)
        return verdict


def _shutdown_workers() -> None:
    with _idle_lock:
        workers, _idle_workers[:] = list(_idle_workers), []
    for worker in workers:
        if worker.owner_pid == os.getpid():
            worker.kill()


def _forget_workers_after_fork() -> None:
    # A forked child must not share the parent's helpers (their pipes would interleave).
    global _idle_lock, _worker_slots
    _idle_workers.clear()
    _idle_lock = threading.Lock()
    _worker_slots = threading.BoundedSemaphore(_MAX_WORKERS)


atexit.register(_shutdown_workers)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers_after_fork)


def _verdict(pred_variants: list[str], gold_variants: list[str], timeout_s: float) -> bool:
    """Equivalence under a deadline: SIGALRM on the main thread, a killable helper process elsewhere."""
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        try:
            return _verdict_in_this_thread(pred_variants, gold_variants, timeout_s)
        except ValueError:  # signal.signal refused (e.g. the main thread of a sub-interpreter)
            pass
    return _verdict_via_worker(pred_variants, gold_variants, timeout_s)


# ----------------------------------------------------------------------------------------------------
# The reward
# ----------------------------------------------------------------------------------------------------


def math_reward(completion: str, answer: str | int | float, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> float:
    """1.0 if the completion's final answer is mathematically equivalent to ``answer``, else 0.0.

    The prediction is :func:`extract_answer` of ``completion`` (None -> 0.0). The reference ``answer``
    may be bare (``"\\frac{1}{2}"``, ``"0.5"``, ``"x=3"``), in ``$...$`` / ``\\(...\\)``, or boxed
    (``"\\boxed{...}"``); ints and floats are accepted.

    **What counts as equal** is math-verify's verdict (``verify(parse(gold), parse(pred))`` with
    ``LatexExtractionConfig`` and ``ExprExtractionConfig``, default ``float_rounding=6``, ``strict=True``):

    * numbers are equal if equal after rounding to 6 decimals, so ``1/2 = \\frac{1}{2} = \\dfrac12 = 0.5``
      and ``1/3 = 0.333333`` but ``1/3 != 0.33``;
    * expressions are equal if sympy proves their difference is zero (``2\\sqrt{3} = \\sqrt{12}``,
      ``\\pi/2 = \\frac{\\pi}{2}``) -- not numerically close (``\\pi != 3.14``), and variables matter
      (``2x != x^2``);
    * intervals must match endpoints *and* openness (``[1,2) != [1,2]``); sets ignore order
      (``\\{1,2\\} = \\{2,1\\}``); ``x = 5`` equals ``5``;
    * units math-verify knows (``cm``, ``kg``, ``inches``, ``^\\circ``, ``\\text{...}``, ...) are ignored;
      thousands separators ``1,000`` / ``1{,}000`` are read as 1000.

    On top of that, these normalisations (applied to both sides, see ``_normalise``) fix verdicts of
    math-verify 0.9 that disagree with a human grader:

    * N0: Unicode minus signs, ``\\$`` currency signs and stray ``$`` are removed/normalised;
    * N1: e-notation ``1.5e3`` is read as ``1.5\\times10^{3}`` (math-verify: ``1.5 * e * 3``);
    * N2: ``1\\,000`` / ``1 000`` are read as 1000 (math-verify: ``1 * 000 = 0``);
    * N3: ``5 dollars`` is read as 5 -- a number followed only by unit words (math-verify multiplies the
      letters as symbols unless the unit is on its list);
    * N4: ``50\\%`` may be read as 50 *or* as 0.5, so it matches both ``50`` and ``\\frac{1}{2}``
      (math-verify: only 50);
    * N5: plain-text ``pi`` (``2pi``, ``pi/2``) is read as ``\\pi`` (math-verify: ``p * i``).

    Never raises because of ``completion`` (garbage, None, huge or adversarial input scores 0.0) and
    never runs much past ``timeout_s``: a verification that exceeds it scores 0.0. On the main thread
    the deadline is a ``SIGALRM`` interval timer (a caller's own SIGALRM handler and timer are restored);
    from other threads the check runs in a helper process that is killed if it overruns by more than
    2 s (the first such call also pays ~1 s to start the helper).

    Raises:
        TypeError: ``answer`` is not a string or number.
        ValueError: ``answer`` is empty, or ``timeout_s`` is not a positive finite number.
        ImportError: math-verify is not installed.
    """
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        raise TypeError(f"answer must be a str, int or float, got {type(answer).__name__}: {answer!r}")
    if (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, (int, float))
        or not math.isfinite(timeout_s)
        or timeout_s <= 0
    ):
        raise ValueError(f"timeout_s must be a positive finite number of seconds, got {timeout_s!r}")
    gold = _reference_text(str(answer))
    if not gold:
        raise ValueError(f"reference answer {answer!r} is empty (or an empty/unterminated \\boxed{{}})")
    pred = extract_answer(completion) if isinstance(completion, str) else None
    if pred is None or len(pred) > _MAX_ANSWER_CHARS:
        return 0.0
    pred_variants = [v for v in _normalise(pred) if v]
    gold_variants = [v for v in _normalise(gold) if v]
    if not pred_variants or not gold_variants:
        return 0.0
    return 1.0 if _verdict(pred_variants, gold_variants, float(timeout_s)) else 0.0

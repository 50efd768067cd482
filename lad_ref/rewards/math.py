"""A verifiable correctness reward for math completions, on math-verify's own parser.

:func:`math_reward` returns 1.0 when the final answer of a free-form completion is mathematically
equivalent to the reference answer and 0.0 otherwise. Both sides are extracted and compared by Hugging
Face's ``math-verify`` (https://github.com/huggingface/Math-Verify): ``parse`` with its own extraction
configurations (``LatexExtractionConfig`` -- ``\\boxed{}``, "final answer is", ``$...$`` -- and
``ExprExtractionConfig`` -- plain expressions) and ``verify`` with its comparison settings (rounding,
precision, strict variables, set/relation comparison), the checker of DeepSeek-R1-style rule-based rewards
(open-r1, TRL's examples, DAPO recipes). *Library first*: there is no regex extraction layer in front of
it. A regex layer was measured to lose verdicts math-verify gets right (several boxes, equations cut at
``=``, answers inside sentences, ``32,\\!349``); see ``tests/data/math_corpus.yaml``.

Only these additions sit around math-verify, each because it changes verdicts on the corpus to what a
careful human grader says (each has its own test in ``tests/test_math_reward.py``):

* **G1 -- a bare reference answer is the whole answer.** Datasets store golds without delimiters
  (``\\text{Evelyn}``, ``(1,2)``, ``2, 3``, ``-34x-45y+20z-100=0``, matrices). ``parse`` on such a string
  looks for an answer *inside* it and finds nothing or a fragment (``2, 3`` -> ``3``; the plane equation
  -> ``0``, which then equals every equation). A gold with no ``$``, ``\\(``, ``\\[`` or ``\\boxed`` is
  therefore parsed as ``\\boxed{gold}``.
* **G2 -- a bare gold number with a decimal comma** (``1,22``: comma not followed by exactly three digits)
  may also be read as ``1.22``, as plain ``parse`` of the bare string does (G1 would read a set).
* **T1 -- a truncated final box is no answer.** If the completion's last ``\\boxed{`` never closes (a
  generation cut off by the length limit inside its answer), the score is 0: the answer is incomplete
  (``\\boxed{\\frac{1}{2}`` may have continued as ``\\frac{1}{2}x``). math-verify would grade the fragment.
* **D1 -- decimal commas and spaced thousands, as an alternative reading.** When the reference is a single
  number and the prediction fails, a predicted number written ``3,14`` / ``2{,}5`` (comma followed by other
  than three digits) is read as ``3.14``, and ``10\\,000`` / ``10 000`` (groups of three) as ``10000``.
  math-verify reads these as the set ``{3, 14}`` or the product ``10 * 000``.
* **P1 -- a percentage is its number or its fraction.** When the reference is a single number and the
  prediction ``50\\%`` fails, ``50`` and ``\\frac{50}{100}`` are tried (math-verify 0.9 extracts a boxed
  ``50\\%`` as a string only, which equals nothing), so "what percent ...? 50" and "probability 0.5" both
  accept ``50\\%``.

Gold normalisation (issue 22; cases in ``tests/data/math_gold_cases.yaml``, table in ``docs/graders.md``):

* **N1** -- ``\\$`` is a currency sign: removed from the gold (and, as a second try, from the completion).
* **N2** -- a bare percent gold ``10\\%`` also reads ``10`` and ``\\frac{10}{100}``, compared with the
  completion's final answer only (its last box, else what math-verify extracted).
* **N3/U1/U2** -- a number with a unit in words (``10 weeks``, ``16 \\text{ cm}^2``) reads as the number,
  on the gold side (final answer only) and in a boxed prediction; a boxed final answer with *another*
  unit scores 0.
* **N4/C1** -- a choice-letter gold (``C``, ``\\text{(C)}``) is graded by the letter the completion chooses.
* **N5** -- a plain-text gold (``2*pi``, ``sqrt(a^2+b^2)``) also reads as LaTeX.
* **N6** -- a mixed number ``1 1/2`` is ``3/2`` (gold and prediction).
* **I1** -- ``i`` is the imaginary unit when it is the only symbol on both sides.
* **B1** -- without a box, a final ``[90]`` is the answer.

The reward is a pure function of strings: no torch, no model. It never raises because of what the model
wrote or what the dataset holds: an unparsable, huge or adversarial completion scores 0.0, and a reference
answer math-verify cannot read (empty, unclosed ``\\boxed{``, not a string) scores 0.0 for every
completion with one warning naming it. Only invalid *settings* (``timeout_s``, ``float_rounding``, ...)
raise ValueError, on the first call. Every call runs under a wall-clock deadline, enforced with
``SIGALRM`` on the main thread and by a killable helper process when called from any other thread
(math-verify's own timeouts are ``signal.alarm`` based and refuse to run off the main thread). For a batch
across cores see :mod:`lad_ref.rewards.batch`.

``math-verify`` lives in the ``[llm]`` extra; it is imported lazily.
"""

from __future__ import annotations

import atexit
import functools
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

__all__ = ["extract_answer", "math_reward", "DEFAULT_TIMEOUT_S", "MATH_SETTINGS"]

logger = logging.getLogger(__name__)

#: Default wall-clock budget of one :func:`math_reward` call (parsing + verification).
DEFAULT_TIMEOUT_S = 5.0

#: math-verify's comparison and extraction settings that :func:`math_reward` exposes, with its defaults.
#: ``float_rounding``: decimals numbers are rounded to before comparing; ``numeric_precision``: significant
#: digits of numeric evaluation; ``strict``: variables must match by name and sets are not tuples (False:
#: matched by position, sets compare with tuples); ``allow_set_relation_comp``: ``1 < x < 2`` may equal
#: ``(1, 2)`` whichever side is the gold (math-verify's default False allows it only when the prediction is
#: the set; True measured better on the corpus -- a human accepts ``-3 \le x \le 5`` for ``[-3, 5]`` --
#: and equal on math-verify's own test pairs);
#: ``boxed_match_priority``: 0 = a ``\\boxed{}`` beats "the final answer is ...", 50 (math-verify's
#: default) = the "final answer" phrases are tried first (measured better on the corpus: a later "the final
#: answer is" overrides an intermediate box).
MATH_SETTINGS = {
    "float_rounding": 6,
    "numeric_precision": 15,
    "strict": True,
    "allow_set_relation_comp": True,
    "boxed_match_priority": 50,
}

# A completion longer than this is cut to its last _MAX_COMPLETION_CHARS characters before parsing: the
# final answer is at the end, and parsing time grows with the length.
_MAX_COMPLETION_CHARS = 20_000
_MAX_GOLD_CHARS = 2_000

_BOX_CMD = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_DELIMITED = re.compile(r"\$|\\\(|\\\[|\\(?:boxed|fbox)(?![A-Za-z])")


# ----------------------------------------------------------------------------------------------------
# math-verify configuration and the additions G1, T1, D1, P1
# ----------------------------------------------------------------------------------------------------


def _import_math_verify():
    try:
        import math_verify
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ImportError(
            "math_reward needs the 'math-verify' package: pip install 'lad_ref[llm]' (or math-verify>=0.7)"
        ) from exc
    _quiet_math_verify()
    return math_verify


@functools.lru_cache(maxsize=8)
def _configs(boxed_match_priority: int) -> tuple:
    mv = _import_math_verify()
    return (mv.LatexExtractionConfig(boxed_match_priority=boxed_match_priority), mv.ExprExtractionConfig())


def _parse(text: str, boxed_match_priority: int) -> list:
    """math-verify's ``parse`` with our configs; no timer of its own (ours is running, see _deadline)."""
    mv = _import_math_verify()
    return mv.parse(text, extraction_config=_configs(boxed_match_priority), parsing_timeout=None)


def _last_box_is_open(text: str) -> bool:
    """True if the last ``\\boxed``/``\\fbox`` argument starts with ``{`` and never closes (T1)."""
    matches = list(_BOX_CMD.finditer(text))
    if not matches:
        return False
    rest = text[matches[-1].end() :].lstrip()
    if not rest.startswith("{"):
        return False
    depth, i = 0, 0
    while i < len(rest):
        ch = rest[i]
        if ch == "\\":
            i += 2
            continue
        depth += ch == "{"
        depth -= ch == "}"
        if depth == 0:
            return False
        i += 1
    return True


def _gold_text(answer) -> str | None:
    """The reference as a JSON string of its readings (G1, G2, N1-N6) and facts (unit, choice letter), or None.

    One string keeps the helper-process protocol simple; :func:`_grade` decodes it.
    """
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        return None
    text = str(answer).strip()
    if not text or len(text) > _MAX_GOLD_CHARS or _last_box_is_open(text):
        return None
    text = _ESCAPED_DOLLAR.sub("", text).strip()  # N1: "\$18.90" is a price, not a math delimiter
    if not text:
        return None
    # A reading is (gold text, mode): "completion" compares with math-verify's reading of the whole completion;
    # "answer" (a reading that drops part of the gold: its % sign or unit) only with the completion's final
    # answer (its last box, else what math-verify extracted), so an earlier "10\%" in the text cannot match.
    readings: list[tuple[str, str]] = []
    facts: dict = {"choice": _choice_of_gold(text)}
    unit = _number_with_unit(text)
    if unit is not None:
        facts["unit"] = unit[1]
    mixed = _MIXED_NUMBER.match(text)
    if _DELIMITED.search(text):
        readings.append((text, "completion"))
    elif mixed:  # N6: "1 1/2" is 3/2 (math-verify reads 1)
        readings.append(("\\boxed{" + _mixed_to_frac(mixed) + "}", "completion"))
    else:
        readings.append(("\\boxed{" + text + "}", "completion"))
        m = _DECIMAL_COMMA.match(text)
        if m:  # G2
            readings.append(("\\boxed{" + f"{m.group(1)}.{m.group(2)}" + "}", "completion"))
        latex = _plain_text_to_latex(text)
        if latex is not None:  # N5: "2*pi", "sqrt(a^2+b^2)", "pi*r^2"
            readings.append(("\\boxed{" + latex + "}", "completion"))
        m = _PERCENT.match(text)
        if m:  # N2: "10\%" is also its number and its fraction
            readings += [("\\boxed{" + m.group(1) + "}", "answer"),
                         ("\\boxed{\\frac{" + m.group(1) + "}{100}}", "answer")]
        if unit is not None:  # N3: "10 weeks", "10 \text{ cm}^2" -> 10
            readings.append(("\\boxed{" + unit[0] + "}", "answer"))
    return json.dumps({"readings": readings, **facts})


# N1: an escaped dollar sign (currency); "\\$" (a line break followed by "$") is left alone.
_ESCAPED_DOLLAR = re.compile(r"(?<!\\)\\\$")
# N3: a number followed by a unit: \text{...}/\mbox{...}/\mathrm{...} or plain words, optionally squared/cubed.
_NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+"
_UNIT_RE = re.compile(
    r"^\s*(" + _NUMBER + r")\s*(?:\\[,;: ]|~)?\s*"
    r"(?:\\(?:text|mbox|mathrm|textrm|rm)\s*\{\s*([^{}]*?)\s*\}|([A-Za-z]+(?:\s+[A-Za-z]+)*))"
    r"\s*(?:\^\s*\{?\s*([23])\s*\}?)?\s*\.?\s*$"
)
# Words that are mathematics, not units: "10 pi" or "3 i" are not "10" and "3".
_NOT_UNITS = {"pi", "i", "e", "sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "sqrt", "and", "or",
              "times", "cdot", "x", "y", "z", "n", "k", "m", "a", "b", "c", "d", "r", "t"}
_MIXED_NUMBER = re.compile(r"^\s*([-+]?)(\d+)\s+(\d+)\s*/\s*(\d+)\s*$")


def _number_with_unit(text: str) -> tuple[str, str] | None:
    """(number, normalised unit) if ``text`` is a number followed by a unit in words, else None."""
    m = _UNIT_RE.match(text)
    if not m:
        return None
    words = (m.group(2) if m.group(2) is not None else m.group(3) or "").strip().lower()
    if not words or not re.fullmatch(r"[a-z]+(?: [a-z]+)*", words) or words in _NOT_UNITS:
        return None
    if len(words.replace(" ", "")) < 2:
        return None
    unit = " ".join(w[:-1] if len(w) > 3 and w.endswith("s") else w for w in words.split())
    if m.group(4):
        unit += "^" + m.group(4)
    return m.group(1).replace(",", ""), unit


def _mixed_to_frac(m: re.Match) -> str:
    sign, whole, num, den = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))
    return f"{'-' if sign == '-' else ''}\\frac{{{whole * den + num}}}{{{den}}}" if den else f"{whole} {num}/{den}"


def _plain_text_to_latex(text: str) -> str | None:
    """N5: a gold written as plain text math (``2*pi``, ``sqrt(a^2+b^2)``, ``pi*r^2``) in LaTeX; None if the
    text has LaTeX commands already or none of ``*``, ``sqrt(``, ``pi``."""
    if "\\" in text or not re.search(r"\*|\bsqrt\s*\(|\bpi\b", text):
        return None
    out = text.replace("**", "^")
    while True:  # sqrt( ... ) with balanced parentheses -> \sqrt{...}
        m = re.search(r"\bsqrt\s*\(", out)
        if not m:
            break
        depth, i = 1, m.end()
        while i < len(out) and depth:
            depth += {"(": 1, ")": -1}.get(out[i], 0)
            i += 1
        if depth:
            return None
        out = out[: m.start()] + "\\sqrt{" + out[m.end() : i - 1] + "}" + out[i:]
    out = re.sub(r"\bpi\b", r"\\pi ", out)
    return out.replace("*", " \\cdot ")


# N4: multiple-choice golds "C", "(C)", "\text{(C)}", "\textbf{(C)}".
_WRAPPER = re.compile(r"^\\(?:text|textbf|mathrm|mathbf|mbox)\s*\{(.*)\}$")
_CHOICE = re.compile(r"^\(?\s*([A-J])\s*\)?$")


def _unwrap(text: str) -> str:
    text = text.strip().strip("$").strip()
    while True:
        m = _WRAPPER.match(text)
        if not m:
            return text
        text = m.group(1).strip()


def _choice_of_gold(text: str) -> str | None:
    m = _CHOICE.match(_unwrap(text))
    return m.group(1) if m else None


def _last_box_content(text: str) -> str | None:
    matches = list(_BOX_CMD.finditer(text))
    if not matches:
        return None
    rest = text[matches[-1].end() :].lstrip()
    if not rest.startswith("{"):
        return None
    depth = 0
    for i, ch in enumerate(rest):
        depth += ch == "{"
        depth -= ch == "}"
        if depth == 0:
            return rest[1:i]
    return None


_ANSWER_LETTER = re.compile(r"answer\s*(?:is|:)\s*:?\s*\$?\s*(?:\\text\{\s*)?\(?([A-J])\)?(?![A-Za-z0-9])")
_LEADING_LETTER = re.compile(r"^\s*\(?([A-J])\)?(?:[.:)]\s|\s*$)")


def _chosen_letter(completion: str) -> str | None:
    """C1: the choice a completion states: its last box (``\\boxed{C}``, ``\\boxed{(C) 42}``), else the last
    "answer is (B)" / "answer: B", else a response that starts with the letter (``C. x = 42``)."""
    box = _last_box_content(completion)
    if box is not None:
        m = _LEADING_LETTER.match(_unwrap(box))
        return m.group(1) if m else None
    hits = list(_ANSWER_LETTER.finditer(completion))
    if hits:
        return hits[-1].group(1)
    m = _LEADING_LETTER.match(completion.strip())
    return m.group(1) if m else None


# B1: "The angle is [90]." -- a final answer in square brackets (not \[ display math, not an interval).
_BRACKETED = re.compile(r"(?<!\\)\[\s*([^\[\]{},;]{1,40}?)\s*\](?!.*(?<!\\)\[)", re.DOTALL)


# Parsed golds are reused: in GRPO-style training every gold is graded against G completions.
@functools.lru_cache(maxsize=4096)
def _parse_gold(gold: str, boxed_match_priority: int) -> tuple:
    return tuple(_parse(gold, boxed_match_priority))


# D1: "3,14", "2{,}5" (comma not followed by exactly three digits) -> 3.14; "10\,000" / "10 000" -> 10000.
_DECIMAL_COMMA = re.compile(r"^\s*([-+]?\d+)(?:\{,\}|,)(\d{1,2}|\d{4,})\s*$")
_SPACED_THOUSANDS = re.compile(r"^\s*([-+]?\d{1,3}(?:(?:\\,|\\;|\\:|\\ |~|\u2009|\u202f|\u00a0| )\d{3})+)\s*$")
_THOUSANDS_SEP = re.compile(r"\\,|\\;|\\:|\\ |~|\u2009|\u202f|\u00a0| ")
# P1: "50\%", "50%" -> 50.
_PERCENT = re.compile(r"^\s*([-+]?(?:\d+(?:\.\d+)?|\.\d+))\s*\\?%\s*$")


def _alternative_readings(extracted: str) -> list[str]:
    """Other spellings of a predicted number a human would accept (D1, P1, N6); [] for anything else."""
    text = re.sub(r"^\\text\{(.*)\}$", r"\1", extracted.strip())
    m = _DECIMAL_COMMA.match(text)
    if m:
        return [f"{m.group(1)}.{m.group(2)}"]
    m = _SPACED_THOUSANDS.match(text)
    if m:
        return [_THOUSANDS_SEP.sub("", m.group(1))]
    m = _PERCENT.match(text)
    if m:
        return [m.group(1), f"\\frac{{{m.group(1)}}}{{100}}"]
    m = _MIXED_NUMBER.match(text)
    if m:
        return [_mixed_to_frac(m)]
    return []


def _is_single_number(parsed: tuple) -> bool:
    import sympy

    return bool(parsed) and isinstance(parsed[0], sympy.Number)


def _grade(completion: str, gold: str, settings: dict) -> str:
    """"correct", "wrong" or "bad_gold"; no deadline of its own (the caller runs one)."""
    info = json.loads(gold)
    if info.get("choice"):  # C1: a choice gold is graded by the letter the completion chooses
        letter = _chosen_letter(completion)
        if letter is not None:
            return "correct" if letter == info["choice"] else "wrong"
    if info.get("unit"):  # U2: a final answer with another unit is another quantity ("16 cm" for 16 cm^2)
        box = _last_box_content(completion)
        theirs = _number_with_unit(_unwrap(box)) if box is not None else None
        if theirs is not None and theirs[1] != info["unit"]:
            return "wrong"
    verdict = "bad_gold"
    for one, mode in info["readings"]:
        found = _grade_one(completion, one, settings, info.get("unit"), answer_only=mode == "answer")
        if found == "correct":
            return found
        if verdict == "bad_gold":
            verdict = found
    return verdict


def _same(mv, gold_parsed, pred_parsed, compare) -> bool:
    return bool(pred_parsed) and bool(mv.verify(list(gold_parsed), pred_parsed, timeout_seconds=None, **compare))


def _imaginary_equal(gold_parsed: tuple, pred: list) -> bool:
    """I1: ``i`` as the imaginary unit when it is the only symbol on both sides (``1+2i`` = ``i(2-i)``)."""
    import sympy

    g, p = gold_parsed[0], pred[0]
    if not isinstance(g, sympy.Expr) or not isinstance(p, sympy.Expr):
        return False
    # math-verify's symbols carry assumptions (real=True), so they are matched by name
    names = {str(x) for x in g.free_symbols} | {str(x) for x in p.free_symbols}
    if names != {"i"}:
        return False
    g = g.subs({x: sympy.I for x in g.free_symbols})
    p = p.subs({x: sympy.I for x in p.free_symbols})
    return sympy.simplify(g - p) == 0


def _grade_one(
    completion: str, gold: str, settings: dict, gold_unit: str | None = None, *, answer_only: bool = False
) -> str:
    mv = _import_math_verify()
    priority = int(settings["boxed_match_priority"])
    gold_parsed = _parse_gold(gold, priority)
    if not gold_parsed:
        return "bad_gold"
    if _last_box_is_open(completion):  # T1
        return "wrong"
    pred = _parse(completion, priority)
    compare = {k: settings[k] for k in ("float_rounding", "numeric_precision", "strict", "allow_set_relation_comp")}
    if answer_only:
        final = _last_box_content(completion)
        if final is None:
            final = pred[-1] if pred and isinstance(pred[-1], str) else None
        if final is None:
            return "wrong"
        completion = "$" + final + "$"
        pred = _parse(completion, priority)
    if _same(mv, gold_parsed, pred, compare):
        return "correct"
    if _ESCAPED_DOLLAR.search(completion):  # N1 on the prediction: "\$18.90" is a price there too
        completion = _ESCAPED_DOLLAR.sub("", completion)
        pred = _parse(completion, priority)
        if _same(mv, gold_parsed, pred, compare):
            return "correct"
    box = _last_box_content(completion)
    extracted = box if box is not None else (pred[-1] if pred and isinstance(pred[-1], str) else None)
    if extracted is not None and _is_single_number(gold_parsed):
        alternatives = _alternative_readings(extracted)  # D1, P1, N6
        unit = _number_with_unit(_unwrap(extracted))
        if unit is not None and (gold_unit is None or unit[1] == gold_unit):  # U1: "10 weeks" for 10
            alternatives.append(unit[0])
        for alt in alternatives:
            if _same(mv, gold_parsed, _parse("$" + alt + "$", priority), compare):
                return "correct"
    if box is None and "\\boxed" not in completion:  # B1: "The angle is [90]."
        m = _BRACKETED.search(completion)
        if m and _same(mv, gold_parsed, _parse("$" + m.group(1) + "$", priority), compare):
            return "correct"
    if pred and _imaginary_equal(gold_parsed, pred):  # I1
        return "correct"
    return "wrong"


def extract_answer(completion: str, *, boxed_match_priority: int = 50) -> str | None:
    """The final-answer text math-verify extracts from ``completion`` (what :func:`math_reward` grades).

    None if it finds none, the last box is truncated, or the input is not a string. For display and
    debugging; it runs without a deadline, so do not call it on untrusted input in a loop that must not
    stall (:func:`math_reward` has one).
    """
    if not isinstance(completion, str) or not completion.strip() or _last_box_is_open(completion):
        return None
    parsed = _parse(completion[-_MAX_COMPLETION_CHARS:], boxed_match_priority)
    return parsed[-1] if parsed and isinstance(parsed[-1], str) else None


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


def _verdict_in_this_thread(completion: str, gold: str, settings: dict, timeout_s: float) -> str:
    """Grade on the main thread under a SIGALRM deadline; a timeout or an error counts as "wrong".

    Raises ValueError if SIGALRM cannot be used here (the caller then falls back to a helper process).
    """
    try:
        with _deadline(timeout_s):
            try:
                return _grade(completion, gold, settings)
            except Exception:  # math-verify/sympy failures on odd input are a wrong answer, not a crash
                logger.debug("math_reward: verification failed", exc_info=True)
                return "wrong"
    except _Deadline:
        logger.debug("math_reward: verification exceeded %.1fs, scoring 0", timeout_s)
        return "wrong"


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

    def ask(self, completion: str, gold: str, settings: dict, timeout_s: float) -> str | None:
        """The helper's verdict, or None if it did not answer in ``timeout_s`` plus a grace period."""
        assert self.proc.stdin is not None
        request = json.dumps({"completion": completion, "gold": gold, "settings": settings, "timeout_s": timeout_s})
        try:
            self.proc.stdin.write(request.encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:  # helper died (killed by the OOM killer, ...)
            return None
        line = self._read_line(timeout_s + _WORKER_GRACE_S)
        if line is None:
            return None
        try:
            verdict = json.loads(line)["verdict"]
            return verdict if verdict in ("correct", "wrong", "bad_gold") else None
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
        verdict = _verdict_in_this_thread(
            request["completion"], request["gold"], request["settings"], float(request["timeout_s"])
        )
        protocol.write(json.dumps({"verdict": verdict}) + "\n")
        protocol.flush()


def _verdict_via_worker(completion: str, gold: str, settings: dict, timeout_s: float) -> str:
    with _worker_slots:
        with _idle_lock:
            worker = _idle_workers.pop() if _idle_workers else None
        if worker is None or worker.proc.poll() is not None or worker.owner_pid != os.getpid():
            worker = _VerifyWorker()
        verdict = worker.ask(completion, gold, settings, timeout_s)
        if verdict is None:
            logger.debug("math_reward: helper gave no verdict within %.1fs, scoring 0", timeout_s)
            worker.kill()
            return "wrong"
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


def _verdict(completion: str, gold: str, settings: dict, timeout_s: float) -> str:
    """Equivalence under a deadline: SIGALRM on the main thread, a killable helper process elsewhere."""
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        try:
            return _verdict_in_this_thread(completion, gold, settings, timeout_s)
        except ValueError:  # signal.signal refused (e.g. the main thread of a sub-interpreter)
            pass
    return _verdict_via_worker(completion, gold, settings, timeout_s)


# ----------------------------------------------------------------------------------------------------
# The reward
# ----------------------------------------------------------------------------------------------------

_warned_golds: set[str] = set()
_warn_lock = threading.Lock()


def _warn_bad_gold(answer) -> None:
    """One warning per distinct unusable reference answer (a training loop grades it G times a step)."""
    key = repr(answer)[:300]
    with _warn_lock:
        if key in _warned_golds or len(_warned_golds) > 10_000:
            return
        _warned_golds.add(key)
    logger.warning(
        "math_reward: reference answer %s is not a usable answer (math-verify extracts nothing from it); "
        "every completion graded against it scores 0.0. Fix this row of the dataset.",
        key,
    )


def check_math_settings(timeout_s: float = DEFAULT_TIMEOUT_S, **settings) -> dict:
    """The full settings dict (defaults from :data:`MATH_SETTINGS`); ValueError naming a bad one."""
    unknown = sorted(set(settings) - set(MATH_SETTINGS))
    if unknown:
        raise ValueError(f"unknown math_reward setting(s) {unknown}; valid: timeout_s, {', '.join(MATH_SETTINGS)}")
    if (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, (int, float))
        or not math.isfinite(timeout_s)
        or timeout_s <= 0
    ):
        raise ValueError(f"timeout_s must be a positive finite number of seconds, got {timeout_s!r}")
    out = {**MATH_SETTINGS, **settings}
    for name in ("float_rounding", "numeric_precision"):
        if isinstance(out[name], bool) or not isinstance(out[name], int) or out[name] < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {out[name]!r}")
    for name in ("strict", "allow_set_relation_comp"):
        if not isinstance(out[name], bool):
            raise ValueError(f"{name} must be True or False, got {out[name]!r}")
    priority = out["boxed_match_priority"]
    if isinstance(priority, bool) or not isinstance(priority, int) or priority < -1:
        raise ValueError(
            "boxed_match_priority must be an integer >= -1 (0: boxes before 'final answer' phrases, "
            f"50: math-verify's default, -1: ignore boxes), got {priority!r}"
        )
    return out


def math_reward(completion: str, answer: str | int | float, *, timeout_s: float = DEFAULT_TIMEOUT_S, **settings) -> float:
    """1.0 if the completion's final answer is mathematically equivalent to ``answer``, else 0.0.

    Args:
        completion: the model's free-form response. The final answer is what math-verify's extraction
            finds (``\\boxed{}``, "the final answer is", ``$...$``, a trailing expression; several boxes
            form one set answer). Non-strings score 0.0.
        answer: the dataset's reference answer, bare (``\\frac{1}{2}``, ``x=3``, ``\\text{(C)}``, ``2, 3``)
            or delimited (``$...$``, ``\\boxed{...}``); ints and floats are accepted. An unusable reference
            scores 0.0 with one warning naming it (see the module docstring).
        timeout_s: wall-clock budget of the call; a verification that exceeds it scores 0.0.
        **settings: math-verify's settings, see :data:`MATH_SETTINGS` (``float_rounding``,
            ``numeric_precision``, ``strict``, ``allow_set_relation_comp``, ``boxed_match_priority``).

    **What counts as equal** is math-verify's verdict: numbers equal after rounding to ``float_rounding``
    decimals (``1/2 = 0.5``, ``1/3 = 0.333333``, ``1/3 != 0.33``); expressions equal if sympy proves them
    equal (``2\\sqrt{3} = \\sqrt{12}``, ``\\pi != 3.14``, ``2x != x^2``); intervals by endpoints and
    openness; sets regardless of order; equations up to a common factor; ``x = 5`` equals ``5``; units it
    knows and ``\\text{}`` wrappers are ignored; plus the additions G1, T1, D1, P1 of the module docstring.

    Never raises because of ``completion`` or ``answer``; raises ValueError for an invalid setting, and
    ImportError if math-verify is not installed. From the main thread the deadline is a ``SIGALRM``
    interval timer (a caller's own SIGALRM handler and timer are restored); from other threads the check
    runs in a helper process that is killed if it overruns by more than 2 s.
    """
    config = check_math_settings(timeout_s, **settings)
    gold = _gold_text(answer)
    if gold is None:
        _warn_bad_gold(answer)
        return 0.0
    if not isinstance(completion, str) or not completion.strip():
        return 0.0
    verdict = _verdict(completion[-_MAX_COMPLETION_CHARS:], gold, config, float(timeout_s))
    if verdict == "bad_gold":
        _warn_bad_gold(answer)
    return 1.0 if verdict == "correct" else 0.0

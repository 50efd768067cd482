"""The validators every hyperparameter check is built from, written once (pure Python).

Each raises ValueError with one sentence naming the bad value and what is valid, which is the
project's rule for bad input. The objectives' hyperparameter dataclasses (lad_ref.losses), the
bandit and the adapters all call these instead of re-writing ``isinstance(...) and value > 0``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from typing import Any


def is_number(value: Any) -> bool:
    """A real int or float (bool excluded: ``True`` is not a temperature)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def hint(value: Any, choices: Iterable[Any]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or the empty string."""
    near = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""


def choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    """``value`` must be one of ``choices`` (the message suggests the closest one)."""
    try:
        if value in choices:  # the common case first: callers pass tuples/dicts, membership is cheap
            return
    except TypeError:  # an unhashable value (a list) looked up in a dict
        pass
    choices = tuple(choices)
    raise ValueError(f"unknown {name} {value!r}{hint(value, choices)}; valid choices are "
                     f"{', '.join(map(str, choices))}.")


def positive(name: str, value: Any, *, allow_zero: bool = False, allow_none: bool = False) -> None:
    """``value`` must be a finite number > 0 (>= 0 with ``allow_zero``; None allowed with ``allow_none``)."""
    if value is None and allow_none:
        return
    ok = is_number(value) and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        what = ">= 0" if allow_zero else "> 0"
        none = " (or None)" if allow_none else ""
        raise ValueError(f"{name} must be a finite number {what}{none}, got {value!r}.")


def greater(name: str, value: Any, bound: float, why: str = "", *, allow_none: bool = False) -> None:
    """``value`` must be a finite number > ``bound``; ``why`` ends the sentence (e.g. "so that ...")."""
    if value is None and allow_none:
        return
    if not (is_number(value) and math.isfinite(value) and value > bound):
        none = " (or None)" if allow_none else ""
        reason = f" {why}" if why else ""
        raise ValueError(f"{name} must be a finite number > {bound:g}{none}{reason}, got {value!r}.")


def positive_int(name: str, value: Any, *, allow_zero: bool = False) -> None:
    """``value`` must be an integer >= 1 (>= 0 with ``allow_zero``)."""
    low = 0 if allow_zero else 1
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= low):
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")

"""benchmarks/bench_rewards.py measures what it says: its synthetic math items are all new answer strings
that math_reward grades correct (so the timing is of full parses, not cache hits or early rejections)."""

from __future__ import annotations

import pytest

pytest.importorskip("math_verify")

from benchmarks.bench_rewards import synthetic_math  # noqa: E402
from lad_ref.rewards.math import math_reward  # noqa: E402


def test_synthetic_math_items_are_unique_and_correct() -> None:
    c1, g1 = synthetic_math(8)
    c2, g2 = synthetic_math(8)
    assert len(set(c1 + c2)) == 16 and len(set(g1 + g2)) == 16
    assert [math_reward(c, g) for c, g in zip(c1, g1)] == [1.0] * 8

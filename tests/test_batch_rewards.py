"""Tests for lad_ref.rewards.batch: batched grading across workers gives the per-item verdicts, bounds
time per item, and never raises because of one item (bad settings and a missing sandbox do raise)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("math_verify")

from lad_ref.rewards.batch import grade_code, grade_math  # noqa: E402
from lad_ref.rewards.code import SandboxError, sandbox_mode  # noqa: E402
from lad_ref.rewards.math import math_reward  # noqa: E402

CORPUS = yaml.safe_load((Path(__file__).parent / "data" / "math_corpus.yaml").read_text(encoding="utf-8"))
ROWS = [row for rows in CORPUS.values() for row in rows][::5]


def test_grade_math_matches_math_reward_item_by_item() -> None:
    golds = [r[0] for r in ROWS] + ["", "\\boxed{1"]  # two unusable golds inside the batch
    completions = [r[1] for r in ROWS] + ["\\boxed{1}", "\\boxed{1}"]
    expected = [float(r[2]) for r in ROWS] + [0.0, 0.0]
    # a generous deadline: this test is about equal verdicts, and a busy machine can push one sympy call past
    # the 5 s default (a timed-out item scores 0; the deadline tests below cover that path)
    assert grade_math(completions, golds, workers=2, timeout_s=60) == expected
    assert grade_math(completions, golds, workers=1, timeout_s=60) == expected
    assert [math_reward(c, g, timeout_s=60) for c, g in zip(completions, golds)] == expected


def test_grade_math_deadline_per_item() -> None:
    tower = "\\boxed{9^{9^{9^{9}}}}"
    grade_math(["\\boxed{1}"], ["1"], workers=2)  # start the pool outside the timed part
    start = time.monotonic()
    scores = grade_math([tower, "\\boxed{2}", tower, "\\boxed{3}"], ["1", "2", "1", "4"], workers=2, timeout_s=1.0)
    assert scores == [0.0, 1.0, 0.0, 0.0]
    assert time.monotonic() - start < 2 * 1.0 + 5.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"workers": 0}, "workers"), ({"timeout_s": 0}, "timeout_s"), ({"strict": 1}, "strict")],
)
def test_grade_math_rejects_bad_arguments(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        grade_math(["\\boxed{1}"], ["1"], **kwargs)
    with pytest.raises(ValueError, match="same length"):
        grade_math(["\\boxed{1}"], [])


def _sandbox() -> bool:
    try:
        sandbox_mode()
    except SandboxError:
        return False
    return True


@pytest.mark.skipif(not _sandbox(), reason="no code sandbox here")
def test_grade_code_matches_code_reward_and_scores_bad_rows_zero(caplog) -> None:
    add = "a, b = map(int, input().split())\nprint(a + b)\n"
    tests = [{"input": "1 2\n", "output": "3\n"}]
    fn = {"inputs": [[1, 2]], "outputs": [3], "fn_name": "f"}
    programs = [add, "print(0)", "def f(a, b):\n    return a + b\n", add]
    layouts = [tests, tests, fn, {"not": "a layout"}]
    with caplog.at_level(logging.WARNING, logger="lad_ref.rewards.batch"):
        assert grade_code(programs, layouts, workers=2, timeout_s=5.0) == [1.0, 0.0, 1.0, 0.0]
    assert any("unknown tests layout" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError, match="timeout_s"):
        grade_code(programs, layouts, timeout_s=-1)


def test_grade_math_works_from_a_script_without_a_main_guard(tmp_path) -> None:
    """A multiprocessing spawn pool would re-run such a script in every worker and hang."""
    import subprocess
    import sys

    script = tmp_path / "train.py"
    script.write_text(
        "from lad_ref.rewards.batch import grade_math\n"
        "print(grade_math(['\\\\boxed{1}', '\\\\boxed{2}', '\\\\boxed{3}'], ['1', '1', '3'], workers=2))\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[1.0, 0.0, 1.0]", out.stderr[-2000:]

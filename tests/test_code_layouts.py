"""Tests for the dataset test layouts of lad_ref.rewards.code (code_tests): call-based APPS/TACO tests with a
top-level function or LeetCode's ``class Solution``, LiveCodeBench rows, HumanEval-style test code (and that
an early exit does not pass), tolerant stdout comparison, partial credit and the cap on tests per problem.

Layout parsing and comparison run everywhere; running programs needs the sandbox (root or bubblewrap). The
last test runs tests/test_code_reward.py as an unprivileged user, so CI (root) covers the bubblewrap mode.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from lad_ref.rewards.code import SandboxError, code_reward, run_tests, sandbox_mode
from lad_ref.rewards.code_tests import outputs_match, parse_tests, values_match


def _sandbox_available() -> bool:
    try:
        sandbox_mode()
    except SandboxError:
        return False
    return True


needs_sandbox = pytest.mark.skipif(not _sandbox_available(), reason="no code sandbox here (neither root nor bwrap)")
FAST = {"timeout_s": 5.0, "memory_mb": 256}

# ----------------------------------------------------------------------------------------------------
# Layouts (no sandbox)
# ----------------------------------------------------------------------------------------------------

TACO_FUNCTION = {"inputs": [[2, 3], [-1, 1], [10, 5]], "outputs": [[5], [0], [15]], "fn_name": "add"}
TACO_STDIN = {"inputs": ["1 2\n", "3 4\n"], "outputs": ["3\n", "7\n"]}
LEETCODE = {
    "inputs": [[[2, 7, 11, 15], 9], [[3, 2, 4], 6]],
    "outputs": [[0, 1], [1, 2]],
    "fn_name": "twoSum",
}
LCB_ROW = {
    "question_title": "Sum of a pair",
    "question_content": "...",
    "starter_code": "class Solution:\n    def addPair(self, a: int, b: int) -> int:\n        ",
    "public_test_cases": json.dumps([{"input": "1\n2", "output": "3", "testtype": "functional"}]),
    "private_test_cases": base64.b64encode(
        zlib.compress(pickle.dumps(json.dumps([{"input": "40\n2", "output": "42", "testtype": "functional"}])))
    ).decode(),
    "metadata": json.dumps({"func_name": "addPair"}),
}


def test_layouts_are_parsed_without_conversion() -> None:
    assert [c.kind for c in parse_tests([{"input": "1", "output": "1"}])] == ["stdin"]
    assert [(c.kind, c.stdin) for c in parse_tests(TACO_STDIN)] == [("stdin", "1 2\n"), ("stdin", "3 4\n")]
    calls = parse_tests(json.dumps(TACO_FUNCTION))  # a JSON string, as tests travel in parquet files
    assert [(c.kind, c.fn_name, c.args, c.expected) for c in calls][0] == ("call", "add", (2, 3), [5])
    lcb = parse_tests(LCB_ROW)
    assert [(c.fn_name, c.args, c.expected) for c in lcb] == [("addPair", (1, 2), 3), ("addPair", (40, 2), 42)]
    deepcoder_lcb = [{"input": "[1, 2]\n3", "output": "6", "testtype": "functional", "metadata": {"func_name": "f"}}]
    assert parse_tests(deepcoder_lcb)[0].args == ([1, 2], 3)
    code = parse_tests({"test": "def check(c): assert c(1) == 2", "entry_point": "inc", "task_id": "X/0"})
    assert (code[0].kind, code[0].entry_point) == ("code", "inc")


def test_pickled_classes_are_refused_in_compressed_tests() -> None:
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    payload = base64.b64encode(zlib.compress(pickle.dumps(Evil()))).decode()
    with pytest.raises(ValueError, match="neither JSON nor"):
        parse_tests({"private_test_cases": payload, "metadata": {"func_name": "f"}})


def test_stdout_comparison_is_tolerant_like_peers() -> None:
    assert outputs_match("1.0\n", "1")[0]
    assert outputs_match("0.30000000000000004", "0.3")[0]
    assert outputs_match("1 2  \n\n", "1 2")[0]
    assert not outputs_match("1000001", "1000000")[0]  # integers are exact
    assert not outputs_match("0.31", "0.3")[0]
    assert not outputs_match("1 2", "1\n2")[0]  # line structure matters


def test_call_results_compare_after_a_json_round_trip() -> None:
    assert values_match([1, 2], [1, 2]) and values_match(0.1 + 0.2, 0.3)
    assert not values_match(True, 1) and not values_match([1, 2], [2, 1])


# ----------------------------------------------------------------------------------------------------
# Running them
# ----------------------------------------------------------------------------------------------------


@needs_sandbox
def test_taco_call_based_top_level_function() -> None:
    assert code_reward("def add(a, b):\n    return a + b\n", TACO_FUNCTION, **FAST) == 1.0
    assert code_reward("def add(a, b):\n    return a - b\n", TACO_FUNCTION, **FAST) == 0.0
    # a main guard that reads stdin does not run: the program is imported as a module
    guarded = "def add(a, b):\n    return a + b\nif __name__ == '__main__':\n    print(input())\n"
    assert code_reward(guarded, TACO_FUNCTION, **FAST) == 1.0


@needs_sandbox
def test_taco_call_based_leetcode_solution_class() -> None:
    program = (  # no typing import: LeetCode and LiveCodeBench's harness provide List
        "class Solution:\n"
        "    def twoSum(self, nums: List[int], target: int) -> List[int]:\n"
        "        seen = {}\n"
        "        for i, x in enumerate(nums):\n"
        "            if target - x in seen:\n"
        "                return (seen[target - x], i)  # a tuple: compared as a list\n"
        "            seen[x] = i\n"
    )
    result = run_tests(program, LEETCODE, **FAST)
    assert result.statuses == ["ok", "ok"]
    missing = run_tests("class Solution:\n    pass\n", LEETCODE, **FAST)
    assert missing.statuses[0] == "runtime_error" and "twoSum" in missing.messages[0]


@needs_sandbox
def test_livecodebench_row() -> None:
    right = "class Solution:\n    def addPair(self, a: int, b: int) -> int:\n        return a + b\n"
    assert run_tests(right, LCB_ROW, **FAST).statuses == ["ok", "ok"]
    assert code_reward(right.replace("a + b", "a * b"), LCB_ROW, **FAST) == 0.0
    stdin_row = {"public_test_cases": [{"input": "5\n", "output": "25\n", "testtype": "stdin"}], "metadata": "{}"}
    assert code_reward("n = int(input())\nprint(n * n)\n", stdin_row, **FAST) == 1.0


@needs_sandbox
def test_test_code_runs_check_on_the_entry_point() -> None:
    tests = {"test": "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(3) == 9\n",
             "entry_point": "square"}
    assert code_reward("def square(x):\n    return x * x\n", tests, **FAST) == 1.0
    wrong = run_tests("def square(x):\n    return 2 * x\n", tests, **FAST)
    assert wrong.statuses == ["wrong_answer"] and "AssertionError" in wrong.messages[0]


@needs_sandbox
@pytest.mark.parametrize(
    "hack",
    [
        "import os\nos._exit(0)\n",
        "import sys\nsys.exit(0)\n",
        "def square(x):\n    import os\n    os._exit(0)\n",
        "raise SystemExit\n",
        "print('ok')\nimport os\nos._exit(0)\n",
    ],
    ids=["os._exit at import", "sys.exit at import", "os._exit inside the call", "SystemExit", "fake output"],
)
def test_early_exit_does_not_pass(hack) -> None:
    tests = {"test": "def check(candidate):\n    assert candidate(2) == 4\n", "entry_point": "square"}
    assert code_reward(hack, tests, **FAST) == 0.0
    assert code_reward(hack, {"inputs": [[2]], "outputs": [4], "fn_name": "square"}, **FAST) == 0.0


@needs_sandbox
def test_float_tolerance_in_stdout() -> None:
    assert code_reward("print(0.1 + 0.2)", [{"input": "", "output": "0.3"}], **FAST) == 1.0
    assert code_reward("print(1.0)", [{"input": "", "output": "1"}], **FAST) == 1.0


@needs_sandbox
def test_partial_credit_and_the_cap_on_tests() -> None:
    tests = [{"input": f"{n}\n", "output": f"{n * 2}\n"} for n in (1, 22, 333, 4444)]
    half = "n = int(input())\nprint(n * 2 if n < 100 else 0)\n"
    assert code_reward(half, tests, **FAST) == 0.0
    assert code_reward(half, tests, partial_credit=True, **FAST) == 0.5
    capped = run_tests(half, tests, max_tests=2, **FAST)  # keeps the two largest inputs
    assert capped.total == 2 and capped.statuses == ["wrong_answer", "wrong_answer"]
    with pytest.raises(ValueError, match="max_tests"):
        run_tests(half, tests, max_tests=0)


# ----------------------------------------------------------------------------------------------------
# The non-root mode, as an unprivileged user (what CI runs as root)
# ----------------------------------------------------------------------------------------------------


def _as_nobody_prefix() -> list[str]:
    """A command prefix that runs as uid 65534; when this interpreter lives under a folder other users cannot
    enter (pyenv under a 0700 /root), that folder is replaced, in a private mount namespace of the command
    only, by a tmpfs holding a bind of the interpreter's prefix."""
    drop = [shutil.which("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups"]
    prefix = os.path.realpath(sys.base_prefix)
    blocked = next((p for p in Path(prefix).parents if p != Path("/") and not os.stat(p).st_mode & 0o001), None)
    if blocked is None or not shutil.which("unshare"):
        return drop
    script = (
        'set -e; src=$(mktemp -d); mount --bind "$1" "$src"; mount -t tmpfs -o mode=755 tmpfs "$2"; '
        'mkdir -p "$1"; mount --bind "$src" "$1"; shift 2; exec "$@"'
    )
    return [shutil.which("unshare"), "--mount", "--propagation", "private", "sh", "-c", script, "sh", prefix,
            str(blocked), *drop]


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="drops from root to an unprivileged user")
def test_non_root_mode_runs_the_suite_as_an_unprivileged_user() -> None:
    """tests/test_code_reward.py (every attack class) and this file's sandbox tests, as uid 65534 with
    bubblewrap. .ci/run installs bubblewrap and sets LAD_REF_REQUIRE_BWRAP=1, so in CI this cannot skip."""
    setpriv, bwrap = shutil.which("setpriv"), shutil.which("bwrap")
    if not (setpriv and bwrap):
        message = "needs setpriv (util-linux) and bwrap (apt-get install bubblewrap)"
        if os.environ.get("LAD_REF_REQUIRE_BWRAP") == "1":
            pytest.fail(message)
        pytest.skip(message)
    root = Path(__file__).resolve().parent.parent
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": "/tmp",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": str(root),
    }
    drop = _as_nobody_prefix()
    cmd = [*drop, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_code_reward.py",
           "tests/test_code_layouts.py", "tests/test_grader_hacks.py", "-k", "not non_root_mode and not bwrap_mode_too",
           "-W", "ignore::pytest.PytestUnraisableExceptionWarning"]
    # as uid 65534 the mode must be bwrap, and no sandboxed test may be skipped
    check = subprocess.run(
        [*drop, sys.executable, "-c",
         "from lad_ref.rewards.code import sandbox_mode; print(sandbox_mode())"],
        cwd=root, env=env, capture_output=True, text=True, timeout=120,
    )
    assert check.stdout.strip() == "bwrap", check.stdout + check.stderr
    out = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=900)
    tail = out.stdout[-3000:] + out.stderr[-2000:]
    assert out.returncode == 0, tail
    assert "skipped" not in out.stdout.splitlines()[-1], tail

"""Reward-hacking programs against the test-code layout (HumanEval ``{"test", "entry_point"}``, MBPP-style
asserts): every hack scores 0 while an honest program scores 1 on the same tests.

The candidate's functions run in one sandbox and the test code in another (lad_ref.rewards.code), so a patch
of the candidate's interpreter (``compile``, ``exec``, builtins, ``__main__``) stays in its own process, no
object of the candidate's reaches the test (values cross as plain data), and the success nonce lives only in
the test's process. The whole file runs in the current mode (root launcher when run as root) and again as
uid 65534 in the bubblewrap mode (``test_hacks_score_zero_in_bwrap_mode_too``), with the bwrap-mode inode cap.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lad_ref.rewards.code import SandboxError, code_reward, run_tests, sandbox_mode


def _sandbox_available() -> bool:
    try:
        sandbox_mode()
    except SandboxError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _sandbox_available(), reason="no code sandbox here (neither root nor bwrap)")
FAST = {"timeout_s": 5.0, "memory_mb": 256}

ADD_TESTS = {
    "entry_point": "add",
    "test": textwrap.dedent(
        """
        def check(candidate):
            assert candidate(2, 3) == 5
            assert candidate(-1, 1) == 0
            assert candidate(10, 5) == 15
        """
    ),
}
MBPP_TESTS = {"entry_point": "add", "test": "assert add(2, 3) == 5\nassert add(-1, 1) == 0\nassert add(10, 5) == 15\n"}
HONEST = "def add(a, b):\n    return a + b\n"

HACKS = {
    # 1. the hack: the test file compiles to a check() that does nothing
    "patch_compile": """
        import builtins
        _real_compile = builtins.compile
        def _fake_compile(source, filename, mode, *args, **kwargs):
            if filename != "solution.py":
                source = "def check(candidate):\\n    pass\\n"
            return _real_compile(source, filename, mode, *args, **kwargs)
        builtins.compile = _fake_compile
        def add(a, b):
            return 0
        """,
    "patch_exec": """
        import builtins
        _real_exec = builtins.exec
        def _fake_exec(code, *args, **kwargs):
            return None
        builtins.exec = _fake_exec
        def add(a, b):
            return 0
        """,
    # 2. the hack: the driver's nonce from __main__, printed before exiting
    "nonce_from_main": """
        import os, sys
        main = sys.modules["__main__"]
        for value in list(vars(main).values()):
            if isinstance(value, str) and len(value) >= 16:
                os.write(1, ("\\n" + value + "null\\n").encode())
        os._exit(0)
        """,
    "nonce_from_gc_and_stdin": """
        import gc, os, re, sys
        found = set()
        for obj in gc.get_objects():
            if isinstance(obj, dict):
                for value in obj.values():
                    if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{32}", value):
                        found.add(value)
        try:
            found.add(sys.stdin.read().split()[0])
        except Exception:
            pass
        for value in found:
            os.write(1, ("\\n" + value + "null\\n").encode())
        os._exit(0)
        """,
    # 3. the hack: an object equal to everything
    "eq_always_true": """
        class Anything:
            def __eq__(self, other):
                return True
            def __ne__(self, other):
                return False
            __hash__ = object.__hash__
        def add(a, b):
            return Anything()
        """,
    "int_subclass_eq": """
        class Int(int):
            def __eq__(self, other):
                return True
            def __ne__(self, other):
                return False
            __hash__ = int.__hash__
        def add(a, b):
            return Int(0)
        """,
    "str_subclass_eq": """
        class Str(str):
            def __eq__(self, other):
                return True
            def __ne__(self, other):
                return False
            __hash__ = str.__hash__
        def add(a, b):
            return Str("x")
        """,
    "early_exit_zero": "import os\nos._exit(0)\n",
    "sys_exit_zero": "import sys\nsys.exit(0)\n",
    "system_exit_in_call": """
        def add(a, b):
            raise SystemExit(0)
        """,
    "patch_assertion_error": """
        import builtins
        builtins.AssertionError = type("AssertionError", (BaseException,), {})
        def add(a, b):
            return 0
        """,
    "forged_protocol_lines": """
        import os
        for fd in range(3, 64):
            try:
                os.write(fd, b'{"ok": 5}\\n' * 8)
            except OSError:
                pass
        def add(a, b):
            return 0
        """,
    "kill_parent_then_exit": """
        import os, signal
        for pid in (os.getppid(), 1):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        def add(a, b):
            return 0
        """,
}


def _program(source: str) -> str:
    return textwrap.dedent(source)


@pytest.mark.parametrize("tests", [ADD_TESTS, MBPP_TESTS], ids=["check", "mbpp_asserts"])
def test_honest_program_scores_one(tests) -> None:
    assert code_reward(HONEST, tests, **FAST) == 1.0


@pytest.mark.parametrize("name", sorted(HACKS))
@pytest.mark.parametrize("tests", [ADD_TESTS, MBPP_TESTS], ids=["check", "mbpp_asserts"])
def test_hack_scores_zero(name, tests) -> None:
    result = run_tests(_program(HACKS[name]), tests, **FAST)
    assert result.passed == 0, (name, result)
    assert code_reward(_program(HACKS[name]), tests, partial_credit=True, **FAST) == 0.0


READ_THE_TEST = """
import gc, os, re, sys
def _find():
    texts = []
    for root, dirs, files in os.walk("/"):
        if root.startswith(("/usr", "/root", "/proc", "/dev", "/lib", "/bin", "/sbin")):
            dirs[:] = []
            continue
        for name in files:
            try:
                with open(os.path.join(root, name), errors="replace") as fh:
                    texts.append(fh.read())
            except OSError:
                pass
    texts += [o for o in gc.get_objects() if isinstance(o, str)]
    for module in list(sys.modules.values()):
        texts += [v for v in vars(module).values() if isinstance(v, str)]
    for text in texts:
        m = re.search("SECRET-" + "-" + "([0-9a-f]{10})", text)
        if m:
            return "SECRET-" + "-" + m.group(1)
    return None
def answer():
    return _find()
"""
SECRET_TESTS = {"entry_point": "answer", "test": 'def check(candidate):\n    assert candidate() == "SECRET-" "-9c1e5b7d3a"\n'}


def test_candidate_cannot_read_the_test_code() -> None:
    """A program that searches its files, memory and modules for the test's expected value finds nothing
    (0), while the same search finds a copy placed in its own source (1): the search itself works."""
    assert code_reward(READ_THE_TEST, SECRET_TESTS, **FAST) == 0.0
    planted = READ_THE_TEST + '# "SECRET-" "-9c1e5b7d3a" planted: SECRET--9c1e5b7d3a\n'
    assert code_reward(planted, SECRET_TESTS, **FAST) == 1.0


def test_values_cross_as_plain_data() -> None:
    """Tuples, sets, dicts with int keys, bytes, complex and inf survive; a non-plain result is an error."""
    program = "def f(x):\n    return x\ndef g():\n    return object()\ndef h():\n    return (i for i in range(3))\n"
    test = textwrap.dedent(
        """
        def check(candidate):
            for value in [(1, 2), {1, 2}, frozenset({3}), {1: "a", (2, 3): None}, b"\\x00\\xff", 1 + 2j,
                          float("inf"), [(), [[]]], True, None, 10 ** 40]:
                got = candidate(value)
                assert got == value and type(got) is type(value), (value, got)
        """
    )
    assert code_reward(program, {"test": test, "entry_point": "f"}, **FAST) == 1.0
    for entry in ("g", "h"):
        result = run_tests(program, {"test": f"assert {entry}() is not None\n", "entry_point": entry}, **FAST)
        assert result.statuses == ["runtime_error"] and "not plain data" in result.messages[0], result


def test_prompt_helpers_come_from_the_dataset_not_the_candidate() -> None:
    """HumanEval/32-style: the test calls a helper defined in the prompt; with the prompt given, the
    candidate's redefinition of it is not used (without the prompt, the candidate's is: documented)."""
    prompt = "def poly(x):\n    return x * x - 4\n\ndef find_zero():\n    '''a zero of poly'''\n"
    test = "def check(candidate):\n    assert poly(candidate()) == 0\n"
    cheat = "def poly(x):\n    return 0\n\ndef find_zero():\n    return 7\n"
    honest = prompt + "    return 2\n"
    with_prompt = {"test": test, "entry_point": "find_zero", "prompt": prompt}
    assert code_reward(honest, with_prompt, **FAST) == 1.0
    assert code_reward(cheat, with_prompt, **FAST) == 0.0


def test_candidate_exceptions_reach_the_test_as_builtin_exceptions() -> None:
    program = "def f(x):\n    if x < 0:\n        raise ValueError('negative')\n    return x\n"
    test = "def check(candidate):\n    try:\n        candidate(-1)\n    except ValueError:\n        return\n    assert False\n"
    assert code_reward(program, {"test": test, "entry_point": "f"}, **FAST) == 1.0
    assert code_reward("def f(x):\n    return x\n", {"test": test, "entry_point": "f"}, **FAST) == 0.0


def test_writable_folder_is_capped_at_4096_inodes() -> None:
    """Both modes: /sandbox holds at most 4096 files (root mode: tmpfs nr_inodes; bwrap mode: the same tmpfs
    mounted by the inner launcher, since bwrap's --tmpfs takes no inode limit)."""
    program = textwrap.dedent(
        """
        import os
        made = 0
        try:
            for i in range(20000):
                open("f%d" % i, "w").close()
                made += 1
        except OSError as exc:
            print("stopped", made < 4096, type(exc).__name__)
        """
    )
    result = run_tests(program, [{"input": "", "output": "stopped True OSError"}], timeout_s=20.0, memory_mb=256)
    assert result.statuses == ["ok"], result


NOBODY = 65534


def _as_nobody_prefix() -> list[str]:
    """A command prefix that runs as uid 65534; when this interpreter lives under a 0700 folder (pyenv in
    /root), it is made reachable in a private mount namespace (a bind of the interpreter's prefix)."""
    setpriv = shutil.which("setpriv")
    drop = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    prefix = os.path.realpath(sys.base_prefix)
    blocked = next((p for p in Path(prefix).parents if p != Path("/") and not os.stat(p).st_mode & 0o001), None)
    if blocked is None:
        return drop
    unshare = shutil.which("unshare")
    script = (
        'set -e; src=$(mktemp -d); mount --bind "$1" "$src"; mount -t tmpfs -o mode=755 tmpfs "$2"; '
        'mkdir -p "$1"; mount --bind "$src" "$1"; shift 2; exec "$@"'
    )
    return [unshare, "--mount", "--propagation", "private", "sh", "-c", script, "sh", prefix, str(blocked), *drop]


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="drops from root to an unprivileged user")
def test_hacks_score_zero_in_bwrap_mode_too() -> None:
    if not (shutil.which("setpriv") and shutil.which("bwrap") and shutil.which("unshare")):
        message = "needs setpriv, unshare (util-linux) and bwrap (apt-get install bubblewrap)"
        if os.environ.get("LAD_REF_REQUIRE_BWRAP") == "1":
            pytest.fail(message)
        pytest.skip(message)
    root = Path(__file__).resolve().parent.parent
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": str(root)}
    prefix = _as_nobody_prefix()
    check = subprocess.run(
        [*prefix, sys.executable, "-c", "from lad_ref.rewards.code import sandbox_mode; print(sandbox_mode())"],
        cwd=root, env=env, capture_output=True, text=True, timeout=120,
    )
    assert check.stdout.strip() == "bwrap", check.stdout + check.stderr
    out = subprocess.run(
        [*prefix, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_grader_hacks.py",
         "-k", "not bwrap_mode_too"],
        cwd=root, env=env, capture_output=True, text=True, timeout=900,
    )
    tail = out.stdout[-3000:] + out.stderr[-2000:]
    assert out.returncode == 0, tail
    assert "skipped" not in out.stdout.splitlines()[-1], tail

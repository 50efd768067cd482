"""Tests for lad_ref.rewards.code: the sandboxed stdin/stdout test runner and the code reward.

The hostile programs (infinite loop, memory bomb, fork bomb, network, writes outside the sandbox, huge
output) each check both the score and that the host is left unharmed. Limits are small so the file runs
in a few seconds; the sandbox needs root (skipped otherwise), argument validation runs everywhere.
"""

from __future__ import annotations

import os
import socket
import tempfile
import textwrap
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lad_ref.rewards.code import (
    SANDBOX_UID_BASE,
    SANDBOX_UID_SPAN,
    STATUSES,
    CodeResult,
    SandboxError,
    code_reward,
    extract_program,
    run_tests,
    sandbox_mode,
)


def _sandbox_available() -> bool:
    try:
        sandbox_mode()
    except SandboxError:
        return False
    return True


# Root runs the root launcher, any other user bubblewrap; CI runs this file both ways
# (test_non_root_mode_runs_the_suite_as_an_unprivileged_user below).
needs_sandbox = pytest.mark.skipif(not _sandbox_available(), reason="no code sandbox here (neither root nor bwrap)")

ADD = "a, b = map(int, input().split())\nprint(a + b)\n"
ADD_TESTS = [
    {"input": "1 2\n", "output": "3\n"},
    {"input": "-5 5\n", "output": "0"},
    {"input": "100000 23\n", "output": "100023\n"},
]
FAST = {"timeout_s": 2.0, "memory_mb": 256}


def _children_of(pid: int) -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            # the command name (field 2) may contain spaces: split after its closing parenthesis
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
                children.append(int(entry))
    return children


def _live_sandbox_processes() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            uid = int(fields["Uid"].split()[0])
            if SANDBOX_UID_BASE <= uid < SANDBOX_UID_BASE + SANDBOX_UID_SPAN and not fields[
                "State"
            ].strip().startswith("Z"):
                pids.append(int(entry))
    return pids


def _sandbox_dirs() -> set[str]:
    return {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("lad_ref_sandbox_")}


@pytest.fixture(autouse=True)
def nothing_left_behind():
    """Every test: no new temp dirs, no surviving children or sandbox processes afterwards."""
    dirs_before = _sandbox_dirs()
    # Other test modules may legitimately own children (e.g. math_reward's helper processes).
    children_before = set(_children_of(os.getpid()))
    yield
    assert _sandbox_dirs() - dirs_before == set(), "run_tests left a temporary directory behind"
    assert set(_children_of(os.getpid())) - children_before == set(), "run_tests left a child process behind"
    assert _live_sandbox_processes() == [], "a sandboxed process survived"


# ----------------------------------------------------------------------------------------------------
# Pure helpers and argument validation (no sandbox needed)
# ----------------------------------------------------------------------------------------------------


def test_extract_program_from_markdown() -> None:
    response = "Idea first.\n```python\nprint(1)\n```\nThen a fix:\n```python\nprint(2)\n```\nDone."
    assert extract_program(response) == "print(2)\n"
    assert extract_program("```py\nx = 1\n```") == "x = 1\n"
    # a python block wins over a later non-python block (e.g. sample output)
    assert extract_program("```python\nprint(3)\n```\nOutput:\n```text\n3\n```") == "print(3)\n"
    # an untagged block is used when no block is tagged python
    assert extract_program("```\nprint(4)\n```") == "print(4)\n"
    # an unterminated fence (truncated response) runs to the end
    assert extract_program("```python\nprint(5)\n") == "print(5)\n"
    assert extract_program("print(6)") == "print(6)"


def test_unknown_language_is_rejected_with_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown language 'cpp'; supported: python"):
        run_tests(ADD, ADD_TESTS, language="cpp")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"timeout_s": 0}, "timeout_s"),
        ({"timeout_s": float("nan")}, "timeout_s"),
        ({"memory_mb": 8}, "memory_mb"),
        ({"memory_mb": 256.5}, "memory_mb"),
        ({"max_output_bytes": -1}, "max_output_bytes"),
        ({"cpu_s": 0}, "cpu_s"),
        ({"max_procs": 0}, "max_procs"),
        ({"disk_mb": True}, "disk_mb"),
    ],
)
def test_bad_limits_are_rejected(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        run_tests(ADD, ADD_TESTS, **kwargs)


@pytest.mark.parametrize(
    ("tests", "match"),
    [
        ([], "empty"),
        ("1 2", "neither JSON nor"),
        (42, "unknown tests layout: int"),
        ({"cases": []}, r"unknown tests layout: a dict with keys \['cases'\]"),
        ({"inputs": ["1"], "outputs": ["1"], "fnname": "f"}, r"unknown key\(s\) \['fnname'\]"),
        ({"inputs": ["1"], "outputs": []}, "equal length"),
        ([{"input": "1", "output": "1", "testtype": "interactive"}], "testtype 'interactive'"),
        ([{"input": "1", "output": "1", "testtype": "functional"}], "func_name"),
        ({"test": "def check(c): pass", "entry_point": "f", "prompt": "", "extra": 1}, r"unknown key"),
        ([{"input": "1 2"}], r"tests\[0\]"),
        ([{"input": 1, "output": "1"}], r"must be str"),
        (["1 2"], r"tests\[0\]"),
    ],
)
def test_malformed_tests_are_rejected(tests, match) -> None:
    with pytest.raises(ValueError, match=match):
        run_tests(ADD, tests)


def test_non_string_program_is_rejected() -> None:
    with pytest.raises(ValueError, match="program must be a str"):
        run_tests(None, ADD_TESTS)  # type: ignore[arg-type]


def test_without_root_or_bwrap_the_sandbox_refuses_to_run(monkeypatch) -> None:
    import lad_ref.rewards.code as code_module

    monkeypatch.setattr(code_module, "_mode_cache", {})
    monkeypatch.setattr(code_module.os, "geteuid", lambda: 4242)
    monkeypatch.setattr(code_module.shutil, "which", lambda name: None)
    with pytest.raises(SandboxError, match="apt-get install bubblewrap.*Refusing to run programs unconfined"):
        run_tests(ADD, ADD_TESTS)


# ----------------------------------------------------------------------------------------------------
# Correct and incorrect programs
# ----------------------------------------------------------------------------------------------------


@needs_sandbox
def test_correct_program_scores_one() -> None:
    result = run_tests(ADD, ADD_TESTS, **FAST)
    assert result == CodeResult(passed=3, total=3, statuses=["ok"] * 3, messages=[""] * 3)
    assert code_reward(ADD, ADD_TESTS, **FAST) == 1.0


@needs_sandbox
def test_program_in_markdown_fence_is_extracted() -> None:
    response = f"Here is my solution:\n```python\n{ADD}```\nIt adds the numbers."
    assert code_reward(response, ADD_TESTS, **FAST) == 1.0


@needs_sandbox
def test_wrong_program_scores_zero() -> None:
    wrong = "a, b = map(int, input().split())\nprint(a - b)\n"
    result = run_tests(wrong, ADD_TESTS, **FAST)
    assert result.statuses == ["wrong_answer", "wrong_answer", "wrong_answer"]
    assert "line 1: expected '3', got '-1'" in result.messages[0]
    assert code_reward(wrong, ADD_TESTS, **FAST) == 0.0


@needs_sandbox
def test_partially_correct_program_scores_zero_and_stops_early() -> None:
    # prints 3 or 0: right for the first two tests only
    partial = "a, b = map(int, input().split())\nprint(3 if a == 1 else 0)\n"
    result = run_tests(partial, ADD_TESTS, **FAST)
    assert result.statuses == ["ok", "ok", "wrong_answer"]
    assert (result.passed, result.total, result.all_passed) == (2, 3, False)
    assert run_tests(partial, ADD_TESTS[::-1], stop_on_failure=True, **FAST).statuses == [
        "wrong_answer",
        "skipped",
        "skipped",
    ]
    assert code_reward(partial, ADD_TESTS, **FAST) == 0.0


@needs_sandbox
def test_whitespace_is_normalised_per_line() -> None:
    program = "print('  1   2 ')\nprint()\nprint('3\\t4   ')\nprint('\\n\\n')\n"
    assert run_tests(program, [{"input": "", "output": "1 2\n\n3 4"}], **FAST).statuses == ["ok"]
    # but line structure and tokens matter
    assert run_tests(program, [{"input": "", "output": "1 2 3 4"}], **FAST).statuses == ["wrong_answer"]
    assert run_tests(program, [{"input": "", "output": "12\n\n34"}], **FAST).statuses == ["wrong_answer"]


@needs_sandbox
def test_unicode_stdin_and_stdout() -> None:
    program = "print(input().upper())"
    assert run_tests(program, [{"input": "héllo wörld\n", "output": "HÉLLO WÖRLD"}], **FAST).statuses == [
        "ok"
    ]


@needs_sandbox
def test_runtime_errors() -> None:
    result = run_tests("raise ValueError('boom')", [{"input": "", "output": ""}], **FAST)
    assert result.statuses == ["runtime_error"]
    assert "ValueError: boom" in result.messages[0]
    assert run_tests(
        "import sys\nprint(3)\nsys.exit(2)", [{"input": "", "output": "3"}], **FAST
    ).statuses == ["runtime_error"]
    assert run_tests("print(", [{"input": "", "output": ""}], **FAST).statuses == ["runtime_error"]
    # third-party packages are not importable (-S: standard library only)
    assert run_tests("import numpy", [{"input": "", "output": ""}], **FAST).statuses == ["runtime_error"]


@needs_sandbox
def test_environment_is_stripped_and_user_is_unprivileged(monkeypatch) -> None:
    monkeypatch.setenv("LAD_REF_TEST_SECRET", "hunter2")
    program = textwrap.dedent(
        """
        import os, sys
        print(sorted(os.environ))
        print(os.getuid() != 0, os.getgid() != 0, os.getgroups())
        print(os.getcwd(), sys.flags.isolated, sys.flags.no_site)
        """
    )
    expected = "['HOME', 'LANG', 'LC_ALL', 'PATH', 'TMPDIR']\nTrue True []\n/sandbox 1 1\n"
    assert run_tests(program, [{"input": "", "output": expected}], **FAST).statuses == ["ok"]


@needs_sandbox
def test_concurrent_calls_from_threads() -> None:
    with ThreadPoolExecutor(max_workers=3) as pool:
        rewards = list(pool.map(lambda p: code_reward(p, ADD_TESTS, **FAST), [ADD, ADD, "print(0)"]))
    assert rewards == [1.0, 1.0, 0.0]


# ----------------------------------------------------------------------------------------------------
# Hostile programs
# ----------------------------------------------------------------------------------------------------


@needs_sandbox
def test_infinite_loop_times_out_within_the_wall_limit() -> None:
    start = time.monotonic()
    result = run_tests("while True:\n    pass\n", [{"input": "", "output": ""}], timeout_s=1.0, memory_mb=256)
    elapsed = time.monotonic() - start
    assert result.statuses == ["timeout"]
    assert elapsed < 1.0 + 1.5, elapsed  # limit + launcher start-up + cleanup


@needs_sandbox
def test_sleeping_program_times_out() -> None:
    # no CPU use: only the wall-clock limit can catch it
    start = time.monotonic()
    assert code_reward("import time\ntime.sleep(60)", [{"input": "", "output": ""}], timeout_s=1.0) == 0.0
    assert time.monotonic() - start < 2.5


@needs_sandbox
def test_program_that_closes_its_output_still_times_out() -> None:
    program = "import os, time\nos.close(1)\nos.close(2)\ntime.sleep(60)\n"
    start = time.monotonic()
    assert run_tests(program, [{"input": "", "output": ""}], timeout_s=1.0).statuses == ["timeout"]
    assert time.monotonic() - start < 2.5


@needs_sandbox
def test_background_children_do_not_delay_the_verdict() -> None:
    # The children inherit stdout and outlive the program; the verdict must not wait for them.
    program = textwrap.dedent(
        """
        import os, time
        for _ in range(3):
            if os.fork() == 0:
                os.setsid()
                time.sleep(60)
                os._exit(0)
        print("parent done")
        """
    )
    start = time.monotonic()
    assert run_tests(program, [{"input": "", "output": "parent done"}], timeout_s=5.0).statuses == ["ok"]
    assert time.monotonic() - start < 2.0


@needs_sandbox
def test_sandbox_setup_failure_raises_and_cleans_up(monkeypatch) -> None:
    import lad_ref.rewards.code as code_module

    real_plan = code_module._bind_plan
    monkeypatch.setattr(
        code_module, "_bind_plan", lambda prefix: [*real_plan(prefix), ("dir", "/nonexistent-src", "/x")]
    )
    with pytest.raises(
        SandboxError,
        match="could not set up the code sandbox: (mount /.*/x|bwrap: Can't find source path /nonexistent-src)",
    ):
        run_tests(ADD, ADD_TESTS, **FAST)


@needs_sandbox
def test_cpu_limit_kills_a_busy_loop() -> None:
    result = run_tests("while True:\n    pass\n", [{"input": "", "output": ""}], timeout_s=10.0, cpu_s=1)
    assert result.statuses == ["timeout"]
    assert "CPU time limit" in result.messages[0]


@needs_sandbox
@pytest.mark.parametrize(
    "program",
    [
        "x = bytearray(1 << 34)\n",  # one huge allocation
        "chunks = []\nwhile True:\n    chunks.append(bytearray(1 << 20))\n",  # creeping growth
    ],
    ids=["huge", "creeping"],
)
def test_memory_bomb_is_stopped(program) -> None:
    start = time.monotonic()
    result = run_tests(program, [{"input": "", "output": ""}], timeout_s=5.0, memory_mb=128)
    assert result.statuses == ["memory"]
    assert time.monotonic() - start < 4.0
    assert code_reward(program, [{"input": "", "output": ""}], timeout_s=5.0, memory_mb=128) == 0.0


@needs_sandbox
def test_fork_bomb_is_contained_and_fully_reaped() -> None:
    # Children also setsid() away from the process group, so killing the group alone would miss them.
    fork_bomb = textwrap.dedent(
        """
        import os
        while True:
            try:
                if os.fork() == 0:
                    os.setsid()
            except OSError:
                pass
        """
    )
    start = time.monotonic()
    result = run_tests(fork_bomb, [{"input": "", "output": ""}], timeout_s=1.0, memory_mb=256, max_procs=6)
    elapsed = time.monotonic() - start
    assert result.statuses == ["timeout"]
    assert elapsed < 1.0 + 2.0, elapsed
    # the fixture asserts that no new child of ours and no sandbox-uid process is left; check here too
    assert _live_sandbox_processes() == []
    # and the test process itself still works: it can fork and run another sandboxed program
    assert code_reward(ADD, ADD_TESTS, **FAST) == 1.0


@needs_sandbox
def test_threads_count_towards_the_process_limit() -> None:
    program = textwrap.dedent(
        """
        import threading, time
        started = 0
        try:
            for _ in range(50):
                threading.Thread(target=time.sleep, args=(0.5,), daemon=True).start()
                started += 1
        except RuntimeError:
            pass
        print(started < 50)
        """
    )
    assert run_tests(program, [{"input": "", "output": "True"}], max_procs=4, **FAST).statuses == ["ok"]


@needs_sandbox
def test_network_is_unreachable() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        program = textwrap.dedent(
            f"""
            import socket
            s = socket.create_connection(("127.0.0.1", {port}), timeout=1)
            s.sendall(b"exfiltrated")
            print("connected")
            """
        )
        result = run_tests(program, [{"input": "", "output": "connected"}], **FAST)
        assert result.statuses == ["runtime_error"]
        assert "unreachable" in result.messages[0].lower() or "refused" in result.messages[0].lower()
        server.settimeout(0.3)
        with pytest.raises(TimeoutError):
            server.accept()  # no connection ever arrived


@needs_sandbox
def test_writes_outside_the_sandbox_fail_and_leave_nothing() -> None:
    tag = uuid.uuid4().hex
    targets = [
        Path(__file__).resolve().parent.parent / f"pwned_{tag}",  # the repository
        Path(tempfile.gettempdir()) / f"pwned_{tag}",  # world-writable on the host
        Path("/dev/shm") / f"pwned_{tag}",
        Path(f"/pwned_{tag}"),
    ]
    program = textwrap.dedent(
        f"""
        import os
        for path in {[str(t) for t in targets]!r}:
            try:
                with open(path, "w") as fh:
                    fh.write("pwned")
                print("wrote", path)
            except OSError as exc:
                print("refused", type(exc).__name__)
        with open("inside.txt", "w") as fh:  # the working directory itself is writable
            fh.write("fine")
        print(open("inside.txt").read())
        """
    )
    expected = "\n".join(f"wrote {t}" for t in targets) + "\nfine"
    result = run_tests(program, [{"input": "", "output": expected}], **FAST)
    assert result.statuses == ["wrong_answer"]
    for target in targets:
        assert not target.exists(), target
    # an unhandled refused write is a runtime error
    unhandled = f"open({str(targets[1])!r}, 'w').write('x')"
    assert run_tests(unhandled, [{"input": "", "output": ""}], **FAST).statuses == ["runtime_error"]
    assert not targets[1].exists()


@needs_sandbox
def test_disk_use_is_bounded() -> None:
    program = textwrap.dedent(
        """
        import os
        block = b"x" * (1 << 20)
        written = 0
        try:
            with open("big", "wb") as fh:
                for _ in range(64):
                    fh.write(block)
                    written += 1
        except OSError as exc:
            print("stopped", type(exc).__name__)
        """
    )
    result = run_tests(program, [{"input": "", "output": "stopped OSError"}], disk_mb=4, **FAST)
    assert result.statuses == ["ok"]


def _peak_rss_mb() -> float:
    import resource  # POSIX only, like the sandbox

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@needs_sandbox
@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_huge_output_is_cut_off_quickly_with_bounded_memory(stream) -> None:
    program = f"import sys\nwhile True:\n    sys.{stream}.write('x' * 65536)\n"
    peak_before = _peak_rss_mb()
    start = time.monotonic()
    result = run_tests(program, [{"input": "", "output": ""}], timeout_s=10.0, max_output_bytes=1 << 20)
    elapsed = time.monotonic() - start
    assert result.statuses == ["output_limit"]
    assert elapsed < 3.0, elapsed  # well before the 10 s wall limit
    assert _peak_rss_mb() - peak_before < 32  # we read at most ~1 MiB of it


@needs_sandbox
def test_statuses_are_documented() -> None:
    result = run_tests("print(1)", [{"input": "", "output": "1"}], **FAST)
    assert set(result.statuses) <= set(STATUSES)
    assert threading.current_thread() is threading.main_thread()

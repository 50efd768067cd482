"""Sandboxed stdin/stdout unit tests for generated programs, and the binary code reward.

:func:`run_tests` runs a program once per test case, feeding ``test["input"]`` on stdin and comparing
stdout with ``test["output"]`` (the format of the DeepCoder / LiveCodeBench / TACO / APPS "stdin"
tests). :func:`code_reward` is 1.0 if every test passes and 0.0 otherwise, the outcome reward used for
code RL in DeepCoder and DeepSeek-R1-style training.

Isolation mechanisms (Linux, caller must be root)
-------------------------------------------------
Every test runs in a fresh process started by a small launcher (``python -I -S -c <launcher>``, run as
root) that sets up the sandbox and then ``execve``s the program's interpreter. No ``preexec_fn`` is
used, so :func:`run_tests` is safe to call from several threads at once. The launcher:

1. **Namespaces** -- ``unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS)``.
   *Network*: the new network namespace has only a loopback interface, and it is down, so every
   ``connect``/``bind`` fails (``127.0.0.1`` of the host is unreachable too). *IPC*: no shared SysV/POSIX
   IPC objects with the host. *Mounts*: all mount changes below happen in a private copy of the mount
   table (``/`` is made ``MS_PRIVATE`` first, so nothing propagates back to the host) and vanish with the
   sandbox.
2. **A minimal read-only root** -- a ``tmpfs`` root (``chroot``) that contains only read-only bind mounts
   of ``/usr`` (plus the ``/bin``, ``/lib``, ``/lib64`` links or directories), ``/etc/ld.so.cache``, the
   interpreter's installation prefix, and ``/dev/{null,zero,full,random,urandom}``. The rest of the host
   (``/root``, ``/home``, the repository, data, other ``/tmp`` files) is not visible at all. There is no
   ``/proc`` and no ``/dev/shm``.
3. **A private, size-bounded working directory** -- ``/sandbox``, a ``tmpfs`` of ``disk_mb`` MiB and at
   most 4096 inodes owned by the sandbox user, is the program's cwd, ``HOME`` and ``TMPDIR`` and the only
   writable place; the program file is copied into it. It is freed by the kernel when the last sandbox
   process exits, so nothing written there outlives the test. (On the host, a temporary directory holding
   the program source, the stdin file and an empty mount point is created per :func:`run_tests` call and
   removed at the end.)
4. **An unprivileged, per-run user** -- ``setgroups([])``, ``setresgid``/``setresuid`` to a uid/gid drawn
   at random from an otherwise unused range (no passwd entry), after ``PR_SET_NO_NEW_PRIVS``. As that
   user the program cannot undo the mounts, leave the ``chroot``, write anything outside ``/sandbox``,
   or signal processes other than its own. Dropping root is also what makes ``RLIMIT_NPROC`` effective:
   the kernel never applies it to uid 0, and because the uid is fresh the limit counts exactly this
   test's processes and threads (a fork bomb stalls at ``max_procs`` tasks).
5. **Resource limits** (``setrlimit``, inherited by every descendant): ``RLIMIT_AS`` = ``memory_mb``
   (per process), ``RLIMIT_CPU`` = ``cpu_s`` (per process; SIGXCPU, then SIGKILL one second later),
   ``RLIMIT_NPROC`` = ``max_procs``, ``RLIMIT_FSIZE`` = ``disk_mb``, ``RLIMIT_NOFILE`` = 64, ``RLIMIT_CORE``
   = 0. ``PR_SET_PDEATHSIG`` kills the program if the calling thread dies.
6. **Clean environment** -- the program gets only ``PATH=/usr/bin:/bin``, ``HOME``/``TMPDIR=/sandbox``
   and ``LANG``/``LC_ALL=C.UTF-8``; no inherited variables (tokens, keys, ``PYTHONPATH``). It runs as
   ``python -I -S -B``: ``-I`` ignores ``PYTHON*`` variables and the user site directory and does not put
   the script directory on ``sys.path``; ``-S`` skips ``site`` (no site-packages, no ``.pth`` hooks), so
   programs can import the standard library only -- which is what competitive-programming tests expect.
   stdin is a read-only file descriptor; inherited descriptors other than 0/1/2 are closed.

The parent enforces the wall-clock limit ``timeout_s`` (the clock starts when the launcher has finished
setting up), reads at most ``max_output_bytes`` of stdout and of stderr (more -> kill,
``"output_limit"``) without ever holding more than that in memory, and afterwards kills *every* process
still owned by the sandbox uid -- including ones that ``setsid()``-ed out of the process group -- with
``kill(-1, SIGKILL)`` issued by a helper running as that uid (the kernel delivers it atomically with
respect to ``fork``, so a fork bomb cannot outrun it).

What this does **not** guarantee
--------------------------------
This is defence in depth for model-written programs, not a security boundary against a determined
attacker: a kernel exploit (the program can still make almost every system call; there is no seccomp
filter) escapes all of it. CPU time and memory are limited per process, not per sandbox (up to
``max_procs`` processes each get ``memory_mb`` and ``cpu_s``); there is no cgroup, so memory pressure on
the host and CPU contention between parallel runs are not controlled. Timing is wall-clock and therefore
load-dependent. Reading world-readable files under ``/usr`` and the interpreter prefix is allowed. It needs
root (namespaces, ``chroot`` and ``setuid``); as another user :func:`run_tests` raises
:class:`SandboxError` rather than silently running unconfined. Only Linux is supported.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence

__all__ = [
    "CodeResult",
    "SandboxError",
    "LANGUAGES",
    "STATUSES",
    "code_reward",
    "extract_program",
    "run_tests",
]

#: Languages :func:`run_tests` can run.
LANGUAGES = ("python",)

#: Every per-test status :func:`run_tests` can report.
STATUSES = ("ok", "wrong_answer", "timeout", "memory", "runtime_error", "output_limit", "skipped")

DEFAULT_TIMEOUT_S = 6.0  # per test, as in LiveCodeBench's harness
DEFAULT_MEMORY_MB = 512
DEFAULT_MAX_OUTPUT_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_PROCS = 8  # tasks (processes + threads) of the sandbox uid
DEFAULT_DISK_MB = 64

# Sandbox uids/gids are drawn from this range: far above any distribution's allocations and subuid
# ranges (100000+), below the 32-bit sentinels (65534/4294967294/4294967295 are never reached).
SANDBOX_UID_BASE = 1_500_000_000
SANDBOX_UID_SPAN = 100_000_000

_SETUP_TIMEOUT_S = 30.0  # launcher start + mounts; generous because the host may be loaded
_SETUP_FAILED_EXIT = 121
_MAX_STDERR_KEPT = 64 * 1024  # kept for the status message / MemoryError detection


class SandboxError(RuntimeError):
    """The sandbox itself could not be set up (not root, no namespaces, ...): not the program's fault."""


@dataclasses.dataclass(frozen=True)
class CodeResult:
    """Outcome of :func:`run_tests`.

    Attributes:
        passed: number of tests whose status is ``"ok"``.
        total: number of tests.
        statuses: one of :data:`STATUSES` per test, in order.
        messages: a short human-readable detail per test (empty for ``"ok"``), e.g. the last line of
            stderr, or where the output first differed.
    """

    passed: int
    total: int
    statuses: list[str]
    messages: list[str]

    @property
    def all_passed(self) -> bool:
        return self.total > 0 and self.passed == self.total


# ----------------------------------------------------------------------------------------------------
# Program extraction and output comparison
# ----------------------------------------------------------------------------------------------------

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+#.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_PYTHON_TAGS = {"python", "py", "python3", "py3"}


def extract_program(text: str) -> str:
    """The program inside a model response.

    If ``text`` contains a markdown code fence, returns the content of the last block tagged
    ``python``/``py``/``python3`` (or, if no block is tagged so, the last fenced block of any kind);
    an unterminated final fence (a truncated response) counts as running to the end of the text.
    Text without fences is returned unchanged.
    """
    blocks = [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(text)]
    if not blocks:
        return text
    python_blocks = [code for tag, code in blocks if tag in _PYTHON_TAGS]
    return python_blocks[-1] if python_blocks else blocks[-1][1]


def _normalise_output(text: str) -> list[str]:
    """Lines with runs of whitespace collapsed and ends stripped; leading/trailing blank lines dropped.

    The usual rule of stdin/stdout judges (LiveCodeBench, DeepCoder): whitespace layout does not matter,
    line structure and tokens do. Numbers are compared as text (no float tolerance).
    """
    return [" ".join(line.split()) for line in text.strip().splitlines()]


def _first_difference(got: list[str], want: list[str]) -> str:
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            return f"line {i + 1}: expected {w[:80]!r}, got {g[:80]!r}"
    return f"expected {len(want)} lines, got {len(got)}"


# ----------------------------------------------------------------------------------------------------
# The launcher: runs as root in the child process, sets up the sandbox, execs the program
# ----------------------------------------------------------------------------------------------------

# Executed with ``python -I -S -c``; argv[1] is a JSON config. Kept self-contained (stdlib + ctypes).
# Any failure before execve is reported on the status pipe as "error: ..." and exits with 121;
# "ok" is written right before execve. The status pipe is close-on-exec, so the program cannot use it.
_LAUNCHER = r"""
import ctypes, json, os, resource, sys
cfg = json.loads(sys.argv[1])
status = cfg["status_fd"]
os.set_inheritable(status, False)

def fail(msg):
    os.write(status, ("error: " + msg).encode())
    os._exit(121)

try:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]

    def check(ret, what):
        if ret != 0:
            fail(what + ": " + os.strerror(ctypes.get_errno()))

    def mount(src, dst, fstype, flags, data=None):
        enc = lambda s: None if s is None else s.encode()
        check(libc.mount(enc(src), enc(dst), enc(fstype), flags, enc(data)), "mount " + str(dst))

    MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
    CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWNET = 0x20000, 0x4000000, 0x8000000, 0x40000000
    PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38

    # 1. Namespaces. Nothing below may touch mounts unless this succeeded (they would be the host's).
    check(libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # never propagate to the host's mount table

    # 2. Minimal read-only root in a tmpfs.
    os.umask(0o022)
    root = cfg["root"]
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=4096,mode=755")
    for kind, src, dst in cfg["binds"]:
        target = root + dst
        if kind == "symlink":
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.symlink(src, target)
            continue
        if kind == "dir":
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            open(target, "w").close()
        mount(src, target, None, MS_BIND | MS_REC)
        # Device nodes must keep working, so /dev files are not nodev; everything is read-only.
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | (0 if kind == "dev" else MS_NODEV)
        mount(None, target, None, flags)
    os.makedirs(root + "/tmp", exist_ok=True)

    # 3. The private, bounded working directory, owned by the sandbox user; copy the program in.
    uid = cfg["uid"]
    work = root + "/sandbox"
    os.makedirs(work, exist_ok=True)
    mount("tmpfs", work, "tmpfs", MS_NOSUID | MS_NODEV,
          "size=%dk,nr_inodes=4096,mode=700,uid=%d,gid=%d" % (cfg["disk_kb"], uid, uid))
    with open(cfg["program"], "rb") as src:
        source = src.read()
    with open(work + "/prog.py", "wb") as dst:
        dst.write(source)
    os.chown(work + "/prog.py", uid, uid)
    mount(None, root, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chroot(root)
    os.chdir("/sandbox")

    # 5. Limits: (soft, hard); set while still root, inherited across execve and fork.
    for name, value in cfg["rlimits"].items():
        resource.setrlimit(getattr(resource, name), tuple(value))

    # 4. Drop privileges for good.
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:
        fail("privileges were not dropped")
    # The parent-death signal is cleared by a credential change, so set it after setresuid.
    check(libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0), "prctl(PDEATHSIG)")
    if os.getppid() != cfg["parent_pid"]:
        os._exit(121)  # the parent already died; do not run orphaned
    os.write(status, b"ok")
    os.execve(cfg["argv"][0], cfg["argv"], cfg["env"])
except BaseException as exc:
    fail(type(exc).__name__ + ": " + str(exc))
"""

# Run as root, drops to the sandbox uid and kills everything that uid owns. kill(-1, ...) from an
# unprivileged process reaches exactly the processes of its own uid (except itself) and is atomic with
# respect to fork, so processes that setsid()-ed away or are busy forking are caught too.
_REAPER = r"""
import os, sys
uid = int(sys.argv[1])
os.setgroups([])
os.setresgid(uid, uid, uid)
os.setresuid(uid, uid, uid)
try:
    os.kill(-1, 9)
except ProcessLookupError:
    pass
"""

_DEV_FILES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
_TOP_LEVEL = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


def _interpreter() -> tuple[str, str]:
    """(real path of the base interpreter binary, real path of its installation prefix)."""
    # In a virtualenv sys.executable is a link into the env; the sandbox runs the base interpreter
    # (with -S there is no site-packages to want from the env anyway).
    executable = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    return executable, os.path.realpath(sys.base_prefix)


def _bind_plan(prefix: str) -> list[tuple[str, str, str]]:
    """(kind, source, destination) entries for the launcher's minimal root."""
    plan: list[tuple[str, str, str]] = []
    if os.path.isdir("/usr"):
        plan.append(("dir", "/usr", "/usr"))
    for name in _TOP_LEVEL:
        path = "/" + name
        if os.path.islink(path):
            plan.append(("symlink", os.readlink(path), path))
        elif os.path.isdir(path):
            plan.append(("dir", path, path))
    covered = [dst for kind, _, dst in plan if kind == "dir"]
    if not any(prefix == d or prefix.startswith(d + "/") for d in covered):
        plan.append(("dir", prefix, prefix))
    if os.path.isfile("/etc/ld.so.cache"):
        plan.append(("file", "/etc/ld.so.cache", "/etc/ld.so.cache"))
    plan.extend(("dev", dev, dev) for dev in _DEV_FILES if os.path.exists(dev))
    return plan


def _sandbox_unavailable_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return f"the code sandbox needs Linux (namespaces, chroot, setuid); this is {sys.platform}"
    if os.geteuid() != 0:
        return (
            "the code sandbox needs root: it uses mount/network namespaces, chroot and a per-run "
            f"unprivileged uid (running as uid {os.geteuid()}). Run as root, e.g. inside a container."
        )
    return None


# ----------------------------------------------------------------------------------------------------
# Process bookkeeping
# ----------------------------------------------------------------------------------------------------


def _live_pids_of_uid(uid: int) -> list[int]:
    """Pids of non-zombie processes whose real uid is ``uid`` (from /proc/<pid>/status).

    The owner of /proc/<pid> is not reliable here (processes that changed credentials are
    non-dumpable and their /proc entries belong to root), so the status file is read.
    """
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as fh:
                text = fh.read()
        except OSError:  # exited meanwhile
            continue
        at = text.find("\nUid:")
        if at < 0 or int(text[at + 5 :].split(None, 1)[0]) != uid:
            continue
        at = text.find("\nState:")
        if at >= 0 and text[at + 7 :].lstrip()[:1] in ("Z", "X"):
            continue
        pids.append(int(entry))
    return pids


def _kill_all_of_uid(uid: int, python: str) -> None:
    """SIGKILL every process of ``uid``; returns once none is left alive (or raises SandboxError)."""
    deadline = time.monotonic() + 10.0
    while _live_pids_of_uid(uid):
        if time.monotonic() > deadline:
            raise SandboxError(f"could not kill the processes of sandbox uid {uid}")
        subprocess.run([python, "-I", "-S", "-c", _REAPER, str(uid)], env={}, check=False, timeout=10)
        time.sleep(0.01)  # SIGKILL delivery is asynchronous


def _fresh_uid() -> int:
    while True:
        uid = SANDBOX_UID_BASE + secrets.randbelow(SANDBOX_UID_SPAN)
        if not _live_pids_of_uid(uid):
            return uid


# ----------------------------------------------------------------------------------------------------
# Running one test
# ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Run:
    stdout: bytes
    stderr: bytes
    returncode: int | None
    timed_out: bool
    output_exceeded: bool


def _run_once(
    host_dir: str,
    stdin_text: str,
    *,
    timeout_s: float,
    rlimits: dict[str, tuple[int, int]],
    disk_kb: int,
    max_output_bytes: int,
) -> _Run:
    python, prefix = _interpreter()
    uid = _fresh_uid()
    stdin_path = os.path.join(host_dir, "stdin.txt")
    with open(stdin_path, "w", encoding="utf-8", newline="") as fh:
        fh.write(stdin_text)
    mount_point = os.path.join(host_dir, "root")
    os.makedirs(mount_point, exist_ok=True)
    status_r, status_w = os.pipe()
    config = {
        "status_fd": status_w,
        "parent_pid": os.getpid(),
        "root": mount_point,
        "binds": _bind_plan(prefix),
        "uid": uid,
        "disk_kb": disk_kb,
        "program": os.path.join(host_dir, "prog.py"),
        "rlimits": rlimits,
        "argv": [python, "-I", "-S", "-B", "/sandbox/prog.py"],
        "env": {
            "PATH": "/usr/bin:/bin",
            "HOME": "/sandbox",
            "TMPDIR": "/sandbox",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
        },
    }
    try:
        with open(stdin_path, "rb") as stdin:  # read-only descriptor: the program cannot write it
            proc = subprocess.Popen(
                [python, "-I", "-S", "-c", _LAUNCHER, json.dumps(config)],
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(status_w,),
                start_new_session=True,  # own process group/session, away from our terminal
                cwd="/",
                env={},
            )
    except BaseException:
        os.close(status_r)
        raise
    finally:
        os.close(status_w)  # only the launcher holds the write end now: its exec/exit gives us EOF
    try:
        _await_setup(proc, status_r)
        return _supervise(proc, timeout_s=timeout_s, max_output_bytes=max_output_bytes)
    finally:
        os.close(status_r)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()
        _kill_all_of_uid(uid, python)


def _await_setup(proc: subprocess.Popen, status_r: int) -> None:
    """Wait until the launcher has exec'd the program; raise SandboxError if it could not."""
    deadline = time.monotonic() + _SETUP_TIMEOUT_S
    report = b""
    while True:  # EOF arrives when execve closes the (close-on-exec) pipe, or when the launcher exits
        left = deadline - time.monotonic()
        if left <= 0:
            raise SandboxError(f"the sandbox launcher did not finish setting up in {_SETUP_TIMEOUT_S:.0f}s")
        with selectors.DefaultSelector() as sel:
            sel.register(status_r, selectors.EVENT_READ)
            if not sel.select(left):
                continue
        chunk = os.read(status_r, 4096)
        if not chunk:
            break
        report += chunk
    if report != b"ok":
        detail = report.decode(errors="replace").removeprefix("error: ") or (
            f"launcher exited with status {proc.wait()} before reporting"
        )
        raise SandboxError(f"could not set up the code sandbox: {detail}")


def _supervise(proc: subprocess.Popen, *, timeout_s: float, max_output_bytes: int) -> _Run:
    """Collect stdout/stderr (each capped) until the program exits, the deadline passes or a cap is hit."""
    assert proc.stdout is not None and proc.stderr is not None
    deadline = time.monotonic() + timeout_s
    buffers = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    timed_out = exceeded = False
    with selectors.DefaultSelector() as sel:
        for fd in buffers:
            sel.register(fd, selectors.EVENT_READ)
        exited = False
        while sel.get_map() and not exceeded:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            # After the program exits, only drain what is already in the pipes: a descendant that
            # inherited them could otherwise keep us waiting until the deadline.
            events = sel.select(0 if exited else min(left, 0.05))
            if exited and not events:
                break
            for key, _ in events:
                # Never read past the cap (+1 byte to detect overflow): memory stays bounded.
                room = max_output_bytes + 1 - len(buffers[key.fd])
                chunk = os.read(key.fd, min(65536, room))
                if not chunk:
                    sel.unregister(key.fd)
                    continue
                buffers[key.fd] += chunk
                if len(buffers[key.fd]) > max_output_bytes:
                    exceeded = True
            if not exited and proc.poll() is not None:
                exited = True
    if not (timed_out or exceeded):
        # Both pipes may be closed while the program keeps running (os.close(1); os.close(2); ...).
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
    if timed_out or exceeded:
        proc.kill()  # the rest of the uid's processes are reaped by the caller
    returncode = proc.wait()
    return _Run(
        stdout=bytes(buffers[proc.stdout.fileno()]),
        stderr=bytes(buffers[proc.stderr.fileno()][-_MAX_STDERR_KEPT:]),
        returncode=returncode,
        timed_out=timed_out,
        output_exceeded=exceeded,
    )


def _classify(run: _Run, expected: str) -> tuple[str, str]:
    """(status, message) of one finished run."""
    stderr = run.stderr.decode("utf-8", errors="replace")
    last_err = next((line for line in reversed(stderr.strip().splitlines()) if line.strip()), "")
    if run.output_exceeded:
        return "output_limit", "stdout or stderr exceeded max_output_bytes"
    if run.timed_out:
        return "timeout", "wall-clock limit exceeded"
    if run.returncode in (-signal.SIGXCPU, -signal.SIGKILL) and "MemoryError" not in stderr:
        # RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL at the hard one.
        return "timeout", f"killed by signal {-run.returncode} (CPU time limit)"
    if run.returncode != 0:
        if "MemoryError" in stderr or "Cannot allocate memory" in stderr:
            return "memory", last_err[:200]
        return "runtime_error", (last_err or f"exit status {run.returncode}")[:200]
    got = _normalise_output(run.stdout.decode("utf-8", errors="replace"))
    want = _normalise_output(expected)
    if got == want:
        return "ok", ""
    return "wrong_answer", _first_difference(got, want)


# ----------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------


def _check_positive(name: str, value, *, integer: bool = False, minimum: float = 0.0) -> None:
    kinds = (int,) if integer else (int, float)
    if (
        isinstance(value, bool)
        or not isinstance(value, kinds)
        or not math.isfinite(value)
        or value <= minimum
    ):
        what = "an integer" if integer else "a finite number"
        raise ValueError(f"{name} must be {what} > {minimum:g}, got {value!r}")


def _check_tests(tests) -> list[tuple[str, str]]:
    if isinstance(tests, (str, bytes, Mapping)) or not isinstance(tests, Sequence):
        raise ValueError(
            f"tests must be a list of {{'input': str, 'output': str}} dicts, got {type(tests).__name__}"
        )
    if not tests:
        raise ValueError("tests is empty: there is nothing to check the program against")
    pairs = []
    for i, test in enumerate(tests):
        if not isinstance(test, Mapping) or not {"input", "output"} <= set(test):
            raise ValueError(f"tests[{i}] must be a dict with 'input' and 'output' keys, got {test!r:.200}")
        if not isinstance(test["input"], str) or not isinstance(test["output"], str):
            raise ValueError(
                f"tests[{i}]['input'] and ['output'] must be str, got "
                f"{type(test['input']).__name__} and {type(test['output']).__name__}"
            )
        pairs.append((test["input"], test["output"]))
    return pairs


def run_tests(
    program: str,
    tests: Sequence[Mapping[str, str]],
    *,
    language: str = "python",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    cpu_s: float | None = None,
    max_procs: int = DEFAULT_MAX_PROCS,
    disk_mb: int = DEFAULT_DISK_MB,
    stop_on_failure: bool = False,
) -> CodeResult:
    """Run ``program`` on each stdin/stdout test in a fresh sandboxed process (see the module docstring).

    Args:
        program: source code, or a model response containing it in a markdown fence
            (see :func:`extract_program`).
        tests: ``[{"input": stdin, "output": expected_stdout}, ...]``. Outputs are compared line by line
            after collapsing whitespace (:func:`_normalise_output`).
        language: one of :data:`LANGUAGES`.
        timeout_s: wall-clock limit per test, from the moment the sandbox is ready.
        memory_mb: address-space limit (``RLIMIT_AS``) per process, MiB.
        max_output_bytes: cap on stdout and on stderr per test; exceeding it kills the test.
        cpu_s: CPU-time limit (``RLIMIT_CPU``) per process, seconds; default ``timeout_s``.
        max_procs: processes + threads the program may have at once (``RLIMIT_NPROC``).
        disk_mb: size of the writable working directory and largest file (``RLIMIT_FSIZE``), MiB.
        stop_on_failure: stop at the first test that is not ``"ok"``; the rest are ``"skipped"``.

    Returns:
        A :class:`CodeResult` with a status per test: ``"ok"``, ``"wrong_answer"``, ``"timeout"`` (wall or
        CPU limit), ``"memory"`` (``MemoryError``), ``"runtime_error"`` (non-zero exit, including a refused
        network, file or fork attempt that the program did not handle), ``"output_limit"``, ``"skipped"``.

    Raises:
        ValueError: an argument is invalid (unknown language, non-positive limit, malformed tests).
        SandboxError: the sandbox cannot be set up here (not root, not Linux, namespaces refused).
    """
    if not isinstance(program, str):
        raise ValueError(f"program must be a str, got {type(program).__name__}")
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}; supported: {', '.join(LANGUAGES)}")
    _check_positive("timeout_s", timeout_s)
    _check_positive("memory_mb", memory_mb, integer=True, minimum=31)
    _check_positive("max_output_bytes", max_output_bytes, integer=True)
    if cpu_s is None:
        cpu_s = timeout_s
    _check_positive("cpu_s", cpu_s)
    _check_positive("max_procs", max_procs, integer=True)
    _check_positive("disk_mb", disk_mb, integer=True)
    pairs = _check_tests(tests)
    reason = _sandbox_unavailable_reason()
    if reason:
        raise SandboxError(reason)

    cpu_soft = max(1, math.ceil(cpu_s))
    rlimits = {
        "RLIMIT_AS": (memory_mb * 2**20, memory_mb * 2**20),
        "RLIMIT_CPU": (cpu_soft, cpu_soft + 1),
        "RLIMIT_NPROC": (max_procs, max_procs),
        "RLIMIT_FSIZE": (disk_mb * 2**20, disk_mb * 2**20),
        "RLIMIT_NOFILE": (64, 64),
        "RLIMIT_CORE": (0, 0),
    }
    source = extract_program(program)
    statuses: list[str] = []
    messages: list[str] = []
    host_dir = tempfile.mkdtemp(prefix="lad_ref_sandbox_")
    try:
        with open(os.path.join(host_dir, "prog.py"), "w", encoding="utf-8") as fh:
            fh.write(source)
        for stdin_text, expected in pairs:
            if stop_on_failure and statuses and statuses[-1] != "ok":
                statuses.append("skipped")
                messages.append("an earlier test failed")
                continue
            run = _run_once(
                host_dir,
                stdin_text,
                timeout_s=float(timeout_s),
                rlimits=rlimits,
                disk_kb=disk_mb * 1024,
                max_output_bytes=max_output_bytes,
            )
            status, message = _classify(run, expected)
            statuses.append(status)
            messages.append(message)
    finally:
        shutil.rmtree(host_dir, ignore_errors=True)
    return CodeResult(passed=statuses.count("ok"), total=len(statuses), statuses=statuses, messages=messages)


def code_reward(program: str, tests: Sequence[Mapping[str, str]], **limits) -> float:
    """1.0 if ``program`` passes every test in :func:`run_tests`, else 0.0 (stops at the first failure).

    ``limits`` are :func:`run_tests`'s keyword arguments (``language``, ``timeout_s``, ``memory_mb``,
    ``max_output_bytes``, ``cpu_s``, ``max_procs``, ``disk_mb``). Bad arguments and an unavailable
    sandbox raise (ValueError / SandboxError) instead of scoring 0, so a misconfigured run is not
    mistaken for a policy that never solves anything.
    """
    limits.setdefault("stop_on_failure", True)
    return 1.0 if run_tests(program, tests, **limits).all_passed else 0.0

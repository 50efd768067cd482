"""Sandboxed unit tests for generated programs, and the code reward.

:func:`run_tests` runs a program once per test case in a fresh sandboxed process, with the tests in each
dataset's own layout (stdin/stdout, APPS/TACO call-based with ``fn_name``, LiveCodeBench rows,
HumanEval-style test code; see :mod:`lad_ref.rewards.code_tests`). :func:`code_reward` is 1.0 if every
test passes and 0.0 otherwise (or the fraction passed, with ``partial_credit``), the outcome reward used
for code RL in DeepCoder and DeepSeek-R1-style training. For batches see :mod:`lad_ref.rewards.batch`.

Two sandbox modes (:func:`sandbox_mode`), the same limits and the same attack suite in both:

* ``"root"`` -- the launcher described below; for root (containers, most cloud images).
* ``"bwrap"`` -- bubblewrap (``bwrap``, the sandbox of Flatpak; Debian package ``bubblewrap``) for an
  ordinary user where unprivileged user namespaces exist: new user, PID, mount, network, IPC, UTS and
  cgroup namespaces; the same read-only binds (``/usr``, the interpreter prefix, ``/etc/ld.so.cache``,
  the five device files), a ``disk_mb`` tmpfs ``/sandbox`` of at most 4096 inodes holding the program
  (mounted by the inner launcher with ``CAP_SYS_ADMIN`` of the sandbox's own user namespace, dropped before
  the program runs, because bwrap's ``--tmpfs`` takes no inode limit), ``/`` remounted read-only,
  the same clean environment, ``--die-with-parent`` and ``--new-session``; the rlimits are set by a tiny
  launcher *inside* the namespaces (the kernel counts ``RLIMIT_NPROC`` per user namespace, so the limit
  covers exactly this sandbox); cleanup is a SIGKILL to the namespace's init, after which the kernel
  kills everything left in it. Unlike root mode the program keeps the caller's uid (mapped into the
  namespace), so it is confined by the namespaces and read-only mounts rather than by a separate uid.

Neither available: :class:`SandboxError` naming what to install or enable; programs never run unconfined.

Isolation mechanisms of the root mode (Linux, caller is root)
-------------------------------------------------------------
Every test runs in a fresh process started by a small launcher (``python -I -S -B -c <launcher>``, run as
root) that sets up the sandbox and then runs the program in its own interpreter (a fresh ``__main__``
module, as ``python -I -S -B /sandbox/prog.py`` would; a second interpreter start cost about as much as
the program). No ``preexec_fn`` is used, so :func:`run_tests` is safe to call from several threads at
once. The launcher:

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
   most :data:`SANDBOX_INODES` (4096) inodes owned by the sandbox user, is the program's cwd, ``HOME`` and ``TMPDIR`` and the only
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
load-dependent. Reading world-readable files under ``/usr`` and the interpreter prefix is allowed. Only
Linux is supported.
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
import threading
import time

from lad_ref.rewards.code_tests import (
    Case,
    checker_driver_source,
    checker_driver_stdin,
    driver_source,
    driver_stdin,
    driver_verdict,
    outputs_match,
    parse_tests,
    server_driver_source,
    server_driver_stdin,
)

__all__ = [
    "CodeResult",
    "SandboxError",
    "LANGUAGES",
    "STATUSES",
    "SANDBOX_MODES",
    "code_reward",
    "sandbox_mode",
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

#: Most files and folders the writable folder /sandbox may hold (tmpfs ``nr_inodes``), in both modes.
SANDBOX_INODES = 4096

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


# ----------------------------------------------------------------------------------------------------
# The launcher: runs as root in the child process, sets up the sandbox, then runs the program (_RUN_INLINE)
# ----------------------------------------------------------------------------------------------------

# Executed with ``python -I -S -B -c``; argv[1] is a Python literal config. Kept self-contained (ctypes).
# Any failure before the program runs is reported on the status pipe as "error: ..." and exits with 121;
# "ok" is written once the sandbox is ready, and the pipe is closed before the program runs.
_LAUNCHER = r"""
import ctypes, os, sys
cfg = eval(sys.argv[1], {"__builtins__": {}})  # a literal written by the parent (no json/resource import)
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
          "size=%dk,nr_inodes=%d,mode=700,uid=%d,gid=%d" % (cfg["disk_kb"], cfg["inodes"], uid, uid))
    with open(cfg["program"], "rb") as src:
        source = src.read()
    with open(work + "/prog.py", "wb") as dst:
        dst.write(source)
    os.chown(work + "/prog.py", uid, uid)
    mount(None, root, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chroot(root)
    os.chdir("/sandbox")

    # 5. Limits: (soft, hard); set while still root, inherited across execve and fork.
    for number, soft, hard in cfg["rlimits"]:
        check(libc.setrlimit(number, ctypes.byref((ctypes.c_ulong * 2)(soft, hard))), "setrlimit")

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
except BaseException as exc:
    fail(type(exc).__name__ + ": " + str(exc))
"""

# Appended to both launchers: the program runs in the launcher's own interpreter (started -I -S -B, the flags
# "python -I -S -B /sandbox/prog.py" would have) in a fresh ``__main__`` module, as the interpreter runs a
# script: a second interpreter start (execve) cost about 25 ms a test, and runpy.run_path another 35 ms of
# imports (measured on the 2-core machine; benchmarks/bench_rewards.py). It runs after the launcher's try
# block, so the program's exceptions and exit status are its own; the status pipe is closed first.
_RUN_INLINE = r"""
os.close(status)
os.environ.clear()
os.environ.update(cfg["env"])
del cfg
sys.argv = ["/sandbox/prog.py"]
_main = type(sys)("__main__")
_main.__file__, _main.__builtins__ = "/sandbox/prog.py", __builtins__
sys.modules["__main__"] = _main
with open("/sandbox/prog.py", "rb") as _fh:
    _code = compile(_fh.read(), "/sandbox/prog.py", "exec")
del _fh
exec(_code, _main.__dict__)
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

_SANDBOX_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/sandbox", "TMPDIR": "/sandbox", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}

_DEV_FILES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
_TOP_LEVEL = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


def _rlimit_numbers(rlimits: dict[str, tuple[int, int]]) -> list[tuple[int, int, int]]:
    """(resource number, soft, hard) for the launchers, which call setrlimit through ctypes."""
    import resource

    return [(getattr(resource, name), soft, hard) for name, (soft, hard) in rlimits.items()]


def _interpreter() -> tuple[str, str]:
    """(real path of the base interpreter binary, real path of its installation prefix).

    In a virtualenv sys.executable is a link into the env; the sandbox runs the base interpreter (with -S
    there is no site-packages to want from the env anyway). If this user cannot read that interpreter's
    installation (a non-root user on a machine whose Python lives under /root), the system ``python3``
    in /usr/bin is used: sandboxed programs need only a standard library.
    """
    executable = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    prefix = os.path.realpath(sys.base_prefix)
    if os.access(executable, os.R_OK | os.X_OK) and os.access(prefix, os.R_OK | os.X_OK):
        return executable, prefix
    system = shutil.which("python3", path="/usr/bin:/bin")
    if system is None:
        raise SandboxError(f"this user cannot read the interpreter {executable!r} and there is no /usr/bin/python3")
    return os.path.realpath(system), "/usr"


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


#: Sandbox modes, in order of preference: the root launcher above, or bubblewrap as an ordinary user.
SANDBOX_MODES = ("root", "bwrap")

_mode_cache: dict[int, tuple[str | None, str]] = {}


def _bwrap_probe() -> str | None:
    """None if ``bwrap`` can create the namespaces we use here, else why not."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    try:
        probe = subprocess.run(
            [bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--", "/bin/true"],
            capture_output=True, timeout=30, env={},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap could not run: {exc}"
    if probe.returncode != 0:
        return (
            "bwrap cannot create unprivileged user namespaces here ("
            + probe.stderr.decode(errors="replace").strip()[:200]
            + "); enable them (sysctl kernel.unprivileged_userns_clone=1, or on Ubuntu 24.04+ "
            "kernel.apparmor_restrict_unprivileged_userns=0) or run as root"
        )
    return None


def sandbox_mode() -> str:
    """``"root"`` (the launcher above: root, e.g. in a container) or ``"bwrap"`` (bubblewrap, any user with
    unprivileged user namespaces). Raises SandboxError, naming what to install or enable, when neither is
    available: programs are never run unconfined."""
    uid = os.geteuid() if hasattr(os, "geteuid") else -1
    if uid not in _mode_cache:
        if not sys.platform.startswith("linux"):
            _mode_cache[uid] = (None, f"the code sandbox needs Linux (namespaces); this is {sys.platform}")
        elif uid == 0:
            _mode_cache[uid] = ("root", "")
        else:
            reason = _bwrap_probe()
            _mode_cache[uid] = (None, reason) if reason else ("bwrap", "")
    mode, reason = _mode_cache[uid]
    if mode is None:
        raise SandboxError(
            f"the code sandbox cannot run as uid {uid}: it needs root (namespaces, chroot, a per-run uid) or "
            f"bubblewrap with unprivileged user namespaces, and {reason}. Refusing to run programs unconfined."
        )
    return mode


def _sandbox_unavailable_reason() -> str | None:
    try:
        sandbox_mode()
    except SandboxError as exc:
        return str(exc)
    return None


# Runs inside bubblewrap's namespaces, as the first command: mounts /sandbox, sets the limits, runs the program.
# RLIMIT_NPROC is set here, not before bwrap, because the kernel counts it per user namespace: inside, it
# counts exactly this sandbox's tasks (plus bwrap's init); outside it would count every process of the user.
# It also reports "ok" on the status pipe once bwrap's setup is complete (the pipe is close-on-exec, so
# the program cannot use it), and execs with exactly the root mode's environment (bwrap adds PWD).
_BWRAP_INNER = r"""
import ctypes, os, sys
cfg = eval(sys.argv[1], {"__builtins__": {}})  # a literal written by the parent (no json/resource import)
status = cfg["status_fd"]
os.set_inheritable(status, False)
try:
    # The writable folder: bwrap's --tmpfs takes no inode limit, so it is replaced by a tmpfs mounted here
    # with the root mode's options (size and nr_inodes). bwrap grants CAP_SYS_ADMIN *in the sandbox's user
    # namespace* for this (--cap-add); it is dropped (ambient set cleared, capset to empty) before execve.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    with open("/sandbox/prog.py", "rb") as fh:
        source = fh.read()
    options = "size=%dk,nr_inodes=%d,mode=700,uid=%d,gid=%d" % (
        cfg["disk_kb"], cfg["inodes"], os.getuid(), os.getgid())
    if libc.mount(b"tmpfs", b"/sandbox", b"tmpfs", 2 | 4, options.encode()) != 0:  # MS_NOSUID | MS_NODEV
        raise OSError("mount /sandbox: " + os.strerror(ctypes.get_errno()))
    os.chdir("/sandbox")
    with open("/sandbox/prog.py", "wb") as fh:
        fh.write(source)
    if libc.prctl(47, 4, 0, 0, 0) != 0:  # PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL
        raise OSError("prctl(PR_CAP_AMBIENT_CLEAR_ALL): " + os.strerror(ctypes.get_errno()))
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable = 0 (two 32-bit words each)
    if libc.capset(header, data) != 0:
        raise OSError("capset: " + os.strerror(ctypes.get_errno()))
    for number, soft, hard in cfg["rlimits"]:
        if libc.setrlimit(number, ctypes.byref((ctypes.c_ulong * 2)(soft, hard))) != 0:
            raise OSError("setrlimit: " + os.strerror(ctypes.get_errno()))
except BaseException as exc:
    os.write(status, ("error: " + type(exc).__name__ + ": " + str(exc)).encode())
    os._exit(121)
os.write(status, b"ok")
"""
_bwrap_has_size: bool | None = None


def _bwrap_argv(
    host_dir: str, program_name: str, rlimits: dict, disk_kb: int, status_fd: int, ready_fd: int
) -> list[str]:
    global _bwrap_has_size
    bwrap = shutil.which("bwrap") or "bwrap"
    if _bwrap_has_size is None:  # --size (tmpfs size) arrived in bubblewrap 0.7
        out = subprocess.run([bwrap, "--help"], capture_output=True, env={}, check=False).stdout
        _bwrap_has_size = b"--size" in out
    python, prefix = _interpreter()
    argv = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--json-status-fd", str(status_fd)]
    for kind, src, dst in _bind_plan(prefix):
        if kind == "symlink":
            argv += ["--symlink", src, dst]
        elif kind == "dev":
            argv += ["--dev-bind", src, dst]
        else:
            argv += ["--ro-bind", src, dst]
    if _bwrap_has_size:
        argv += ["--size", str(disk_kb * 1024)]
    argv += ["--perms", "0700", "--tmpfs", "/sandbox"]
    argv += ["--ro-bind", os.path.join(host_dir, program_name), "/sandbox/prog.py", "--remount-ro", "/"]
    argv += ["--cap-add", "CAP_SYS_ADMIN", "--chdir", "/sandbox", "--clearenv"]
    for key, value in _SANDBOX_ENV.items():
        argv += ["--setenv", key, value]
    inner = {
        "rlimits": _rlimit_numbers(rlimits),
        "status_fd": ready_fd,
        "disk_kb": disk_kb,
        "inodes": SANDBOX_INODES,
        "env": dict(_SANDBOX_ENV),
    }
    return argv + ["--", python, "-I", "-S", "-B", "-c", _BWRAP_INNER + _RUN_INLINE, repr(inner)]


def _bwrap_status(status_r: int) -> dict:
    """What bwrap wrote on its --json-status-fd so far (``child-pid``, ``exit-code``)."""
    os.set_blocking(status_r, False)
    data = b""
    while True:
        try:
            chunk = os.read(status_r, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    status: dict = {}
    for part in data.decode(errors="replace").replace("}", "}\n").splitlines():
        try:
            status.update(json.loads(part))
        except ValueError:
            continue
    return status


def _run_once_bwrap(
    host_dir: str,
    stdin_text: str,
    *,
    program_name: str,
    timeout_s: float,
    rlimits: dict[str, tuple[int, int]],
    disk_kb: int,
    max_output_bytes: int,
    give_fds: tuple[int, ...] = (),
    stop: threading.Event | None = None,
) -> _Run:
    """One test in bubblewrap (non-root mode): user, pid, mount, network, IPC, UTS and cgroup namespaces."""
    stdin_path = os.path.join(host_dir, "stdin.txt")
    with open(stdin_path, "w", encoding="utf-8", newline="") as fh:
        fh.write(stdin_text)
    limits = dict(rlimits)
    soft, hard = limits["RLIMIT_NPROC"]
    limits["RLIMIT_NPROC"] = (soft + 1, hard + 1)  # bwrap's init (pid 1 of the namespace) counts too
    status_r, status_w = os.pipe()
    ready_r, ready_w = os.pipe()
    try:
        with open(stdin_path, "rb") as stdin:
            proc = subprocess.Popen(
                _bwrap_argv(host_dir, program_name, limits, disk_kb, status_w, ready_w),
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(status_w, ready_w, *give_fds),
                start_new_session=True,
                cwd="/",
                env={},
            )
    except BaseException:
        os.close(status_r)
        os.close(ready_r)
        raise
    finally:
        os.close(status_w)
        os.close(ready_w)
        for fd in give_fds:
            os.close(fd)
    try:
        run = _supervise(proc, timeout_s=timeout_s, max_output_bytes=max_output_bytes, stop=stop)
    finally:
        status = _bwrap_status(status_r)
        child = status.get("child-pid")
        if proc.poll() is None and isinstance(child, int):
            # SIGKILL to the namespace's init: the kernel then kills every process in the namespace and
            # bwrap exits once they are all gone, so nothing outlives the test.
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()  # --die-with-parent takes the namespace down with it
            proc.wait()
        os.close(status_r)
        os.set_blocking(ready_r, False)
        try:
            ready = os.read(ready_r, 4096)
        except BlockingIOError:
            ready = b""
        os.close(ready_r)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()
    if ready != b"ok":
        detail = ready.decode(errors="replace").removeprefix("error: ") or (
            run.stderr.decode(errors="replace").strip()[-300:] or f"bwrap exited with {proc.returncode}"
        )
        raise SandboxError(f"could not set up the code sandbox: {detail}")
    if run.returncode is not None and 128 < run.returncode <= 128 + 64:
        run.returncode = -(run.returncode - 128)  # bwrap reports a signal death as 128 + signal
    return run


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
    program_name: str = "prog.py",
    timeout_s: float,
    rlimits: dict[str, tuple[int, int]],
    disk_kb: int,
    max_output_bytes: int,
    give_fds: tuple[int, ...] = (),
    stop: threading.Event | None = None,
) -> _Run:
    """One sandboxed run of ``host_dir/program_name``.

    ``give_fds``: descriptors handed to the program at the same numbers (closed here once it is started,
    or on failure); ``stop``: when set, the program is killed as at a timeout.
    """
    if sandbox_mode() == "bwrap":
        return _run_once_bwrap(host_dir, stdin_text, program_name=program_name, timeout_s=timeout_s,
                               rlimits=rlimits, disk_kb=disk_kb, max_output_bytes=max_output_bytes,
                               give_fds=give_fds, stop=stop)
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
        "inodes": SANDBOX_INODES,
        "program": os.path.join(host_dir, program_name),
        "rlimits": _rlimit_numbers(rlimits),
        "env": dict(_SANDBOX_ENV),
    }
    try:
        with open(stdin_path, "rb") as stdin:  # read-only descriptor: the program cannot write it
            proc = subprocess.Popen(
                [python, "-I", "-S", "-B", "-c", _LAUNCHER + _RUN_INLINE, repr(config)],
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(status_w, *give_fds),
                start_new_session=True,  # own process group/session, away from our terminal
                cwd="/",
                env={},
            )
    except BaseException:
        os.close(status_r)
        raise
    finally:
        os.close(status_w)  # only the launcher holds the write end now: its exec/exit gives us EOF
        for fd in give_fds:
            os.close(fd)
    try:
        _await_setup(proc, status_r)
        return _supervise(proc, timeout_s=timeout_s, max_output_bytes=max_output_bytes, stop=stop)
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


def _supervise(
    proc: subprocess.Popen, *, timeout_s: float, max_output_bytes: int, stop: threading.Event | None = None
) -> _Run:
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
            if left <= 0 or (stop is not None and stop.is_set()):
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


def _run_code_case(
    host_dir: str,
    case: Case,
    source: str,
    *,
    timeout_s: float,
    rlimits: dict[str, tuple[int, int]],
    disk_kb: int,
    max_output_bytes: int,
) -> tuple[str, str]:
    """A test-code case: the program in one sandbox (a call server), the test code in another.

    Two pipes join them (requests test -> program, answers program -> test), carrying plain data only
    (``code_tests._PLAIN_CODEC``). The verdict is the *test* process's: its exit status and the nonce it
    prints last, read from its own stdin; the program's process never holds the nonce, the test code or
    the test's stdout.
    """
    tag = f"{len(case.test)}_{abs(hash((case.test, case.prompt, case.entry_point)))}"
    server, checker = f"server_{tag}.py", f"checker_{tag}.py"
    for name, text in ((server, server_driver_source(source)), (checker, checker_driver_source(case))):
        path = os.path.join(host_dir, name)
        if not os.path.exists(path):
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
    req_r, req_w = os.pipe()
    rep_r, rep_w = os.pipe()
    stop = threading.Event()
    outcome: dict = {}
    nonce = secrets.token_hex(16)
    # The program's sandbox gets a little longer than the test's, which is the one whose clock counts.
    server_dir = os.path.join(host_dir, "server")
    checker_dir = os.path.join(host_dir, "checker")

    def serve() -> None:
        try:
            outcome["server"] = _run_once(
                server_dir, server_driver_stdin(req_r, rep_w), program_name=server, timeout_s=timeout_s + 5.0,
                rlimits=rlimits, disk_kb=disk_kb, max_output_bytes=max_output_bytes, give_fds=(req_r, rep_w),
                stop=stop,
            )
        except BaseException as exc:  # re-raised below, in the caller's thread
            outcome["error"] = exc

    for folder, name in ((server_dir, server), (checker_dir, checker)):
        os.makedirs(folder, exist_ok=True)
        shutil.copyfile(os.path.join(host_dir, name), os.path.join(folder, name))
    thread = threading.Thread(target=serve, name="lad_ref-code-server", daemon=True)
    try:
        thread.start()
    except BaseException:
        for fd in (req_r, req_w, rep_r, rep_w):
            os.close(fd)
        raise
    try:
        run = _run_once(
            checker_dir, checker_driver_stdin(nonce, req_w, rep_r, max_output_bytes), program_name=checker,
            timeout_s=timeout_s, rlimits=rlimits, disk_kb=disk_kb, max_output_bytes=max_output_bytes,
            give_fds=(req_w, rep_r),
        )
    finally:
        stop.set()
        thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return _classify(run, case, nonce)


def _classify(run: _Run, case: Case, nonce: str = "") -> tuple[str, str]:
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
        if case.kind != "stdin" and last_err.startswith("AssertionError"):
            return "wrong_answer", last_err[:200]  # a failed assert in check()
        return "runtime_error", (last_err or f"exit status {run.returncode}")[:200]
    stdout = run.stdout.decode("utf-8", errors="replace")
    if case.kind != "stdin":
        return driver_verdict(case, stdout, nonce)
    ok, where = outputs_match(stdout, case.expected)
    return ("ok", "") if ok else ("wrong_answer", where)


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


def check_code_limits(
    *,
    language: str = "python",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    cpu_s: float | None = None,
    max_procs: int = DEFAULT_MAX_PROCS,
    disk_mb: int = DEFAULT_DISK_MB,
    stop_on_failure: bool = False,
    max_tests: int | None = None,
) -> float:
    """Validate :func:`run_tests`' keyword arguments (ValueError naming the bad one); returns ``cpu_s``."""
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
    if max_tests is not None:
        _check_positive("max_tests", max_tests, integer=True)
    return cpu_s


def run_tests(
    program: str,
    tests,
    *,
    language: str = "python",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    cpu_s: float | None = None,
    max_procs: int = DEFAULT_MAX_PROCS,
    disk_mb: int = DEFAULT_DISK_MB,
    stop_on_failure: bool = False,
    max_tests: int | None = None,
) -> CodeResult:
    """Run ``program`` on each test in a fresh sandboxed process (see the module docstring).

    Args:
        program: source code, or a model response containing it in a markdown fence
            (see :func:`extract_program`).
        tests: the problem's tests in any layout of :mod:`lad_ref.rewards.code_tests` (stdin/stdout list,
            APPS/TACO dict of lists with optional ``fn_name``, a LiveCodeBench row, HumanEval-style
            ``{"test", "entry_point"}``), or a JSON string of one. Stdout is compared line by line and
            token by token, floats within ``code_tests.FLOAT_TOLERANCE``.
        language: one of :data:`LANGUAGES`.
        timeout_s: wall-clock limit per test, from the moment the sandbox is ready.
        memory_mb: address-space limit (``RLIMIT_AS``) per process, MiB.
        max_output_bytes: cap on stdout and on stderr per test; exceeding it kills the test.
        cpu_s: CPU-time limit (``RLIMIT_CPU``) per process, seconds; default ``timeout_s``.
        max_procs: processes + threads the program may have at once (``RLIMIT_NPROC``).
        disk_mb: size of the writable working directory and largest file (``RLIMIT_FSIZE``), MiB.
        stop_on_failure: stop at the first test that is not ``"ok"``; the rest are ``"skipped"``.
        max_tests: run at most this many tests, the largest ones (by input size; rLLM's DeepCoder reward
            keeps the 15 largest, on the view that they are the hardest). None: all.

    Returns:
        A :class:`CodeResult` with a status per test: ``"ok"``, ``"wrong_answer"`` (including a failed
        ``check()`` assert and an early exit), ``"timeout"`` (wall or CPU limit), ``"memory"``
        (``MemoryError``), ``"runtime_error"`` (non-zero exit, including a refused network, file or fork
        attempt that the program did not handle), ``"output_limit"``, ``"skipped"``.

    Raises:
        ValueError: an argument is invalid (unknown language, non-positive limit, unknown test layout).
        SandboxError: the sandbox cannot be set up here (neither root nor bubblewrap; see sandbox_mode).
    """
    if not isinstance(program, str):
        raise ValueError(f"program must be a str, got {type(program).__name__}")
    cpu_s = check_code_limits(
        language=language, timeout_s=timeout_s, memory_mb=memory_mb, max_output_bytes=max_output_bytes,
        cpu_s=cpu_s, max_procs=max_procs, disk_mb=disk_mb, max_tests=max_tests,
    )
    cases = parse_tests(tests)
    if max_tests is not None and len(cases) > max_tests:
        keep = sorted(sorted(range(len(cases)), key=lambda i: -cases[i].size)[:max_tests])
        cases = [cases[i] for i in keep]
    sandbox_mode()  # raises SandboxError before any work if programs cannot be confined here

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
        os.chmod(host_dir, 0o700)
        with open(os.path.join(host_dir, "prog.py"), "w", encoding="utf-8") as fh:
            fh.write(source)
        drivers: dict[tuple, str] = {}
        for case in cases:
            if stop_on_failure and statuses and statuses[-1] != "ok":
                statuses.append("skipped")
                messages.append("an earlier test failed")
                continue
            if case.kind == "code":
                status, message = _run_code_case(
                    host_dir, case, source, timeout_s=float(timeout_s), rlimits=rlimits,
                    disk_kb=disk_mb * 1024, max_output_bytes=max_output_bytes,
                )
                statuses.append(status)
                messages.append(message)
                continue
            name, stdin_text, nonce = "prog.py", case.stdin, ""
            if case.kind != "stdin":
                key = (case.kind, case.fn_name, case.test, case.entry_point)
                if key not in drivers:
                    drivers[key] = f"driver{len(drivers)}.py"
                    with open(os.path.join(host_dir, drivers[key]), "w", encoding="utf-8") as fh:
                        fh.write(driver_source(case, source))
                name, nonce = drivers[key], secrets.token_hex(16)
                stdin_text = driver_stdin(case, nonce)
            run = _run_once(
                host_dir,
                stdin_text,
                program_name=name,
                timeout_s=float(timeout_s),
                rlimits=rlimits,
                disk_kb=disk_mb * 1024,
                max_output_bytes=max_output_bytes,
            )
            status, message = _classify(run, case, nonce)
            statuses.append(status)
            messages.append(message)
    finally:
        shutil.rmtree(host_dir, ignore_errors=True)
    return CodeResult(passed=statuses.count("ok"), total=len(statuses), statuses=statuses, messages=messages)


def code_reward(program: str, tests, *, partial_credit: bool = False, **limits) -> float:
    """1.0 if ``program`` passes every test in :func:`run_tests`, else 0.0; with ``partial_credit``, the
    fraction of tests passed.

    ``tests`` is any layout :func:`run_tests` accepts; ``limits`` are its keyword arguments (``language``,
    ``timeout_s``, ``memory_mb``, ``max_output_bytes``, ``cpu_s``, ``max_procs``, ``disk_mb``,
    ``max_tests``). Without partial credit, grading stops at the first failure. Bad arguments, an unknown
    test layout and an unavailable sandbox raise (ValueError / SandboxError) instead of scoring 0, so a
    misconfigured run is not mistaken for a policy that never solves anything; the batched grader
    (:mod:`lad_ref.rewards.batch`) scores such an item 0.0 and logs it instead.
    """
    limits.setdefault("stop_on_failure", not partial_credit)
    result = run_tests(program, tests, **limits)
    if partial_credit:
        return result.passed / result.total
    return 1.0 if result.all_passed else 0.0

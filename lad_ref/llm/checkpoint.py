"""Run folder, checkpoints and resume.

Run folder layout (``--output-dir DIR``)::

    DIR/config.yaml              resolved config
    DIR/run_info.json            start policy (path relative to DIR when inside it), SFT hash, versions, device
    DIR/metrics.jsonl            one JSON line per logged step (step 0 = start evaluation)
    DIR/start_eval.json          held-out metrics of the start policy (reused on resume)
    DIR/checkpoints/step_000025/ model.safetensors + config (save_pretrained; adapters only with LoRA),
                                 tokenizer, logz_head.safetensors (flowrl), trainer_state.pt
    DIR/plots/*.png              reward, accuracy, distinct correct answers vs step
    DIR/results.json             {"start": {...}, "final": {...}} held-out metrics
    DIR/resume_log.jsonl         one line per ``--resume``: the fields it changed, old -> new
    DIR/.lock                    held (flock) by the process writing the run
    DIR/overwritten/<time>/      an earlier run's files, moved aside by ``--overwrite``

A checkpoint is written into ``.step_XXXXXX.tmp`` and renamed when complete, and older ones
are pruned only after that, so an interrupted save (or a NaN) never destroys the last good
checkpoint. ``trainer_state.pt`` holds the optimizer, scheduler, RNG states, the step and the
data position: everything ``--resume`` needs to continue bit-for-bit on CPU. A checkpoint that
cannot be read (a truncated file after a crash mid-copy, a full disk) is skipped for the
previous one with a warning naming the file; a torn last line of ``metrics.jsonl`` (the process
died mid-write) is dropped with a warning. Every other file is written whole (``files.write_atomic``).

A run folder is self-contained: every path it records inside itself is relative to the folder
(``run_info.json``'s ``start_policy`` is ``"start_policy"``), so a moved (``mv``) or copied
(``cp -r``) folder resumes and evaluates as itself and never reads another run's files. Folders
written before that rule stored the absolute path of their own ``start_policy/``; such a path is
read as the folder's own ``start_policy/`` (:func:`start_policy_path`, with a warning).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import sys
import warnings
from pathlib import Path

import torch

from lad_ref.llm.config import ConfigError
from lad_ref.llm.files import read_json, write_jsonl
from lad_ref.llm.seeding import rng_state

CKPT_DIR = "checkpoints"
STATE_FILE = "trainer_state.pt"
LOGZ_FILE = "logz_head.safetensors"
LOCK_FILE = ".lock"
ARCHIVE_DIR = "overwritten"
START_DIR = "start_policy"
RUN_INFO = "run_info.json"
WEIGHT_FILES = ("model.safetensors", "adapter_model.safetensors")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' but no CUDA GPU is visible; valid choices here are auto, cpu.")
    return torch.device(name)


def prepare_run_dir(output_dir: str | None, *, resume: bool, overwrite: bool) -> Path:
    """Create (or accept) the run folder.

    A non-empty folder is refused unless ``resume`` (continue it) or ``overwrite``; an unwritable
    one is refused before any work. With ``overwrite`` the caller takes the run's lock and then
    calls :func:`archive_previous_run`: overwriting never deletes, and the old run's checkpoints can
    neither be pruned in place of the new ones nor be mistaken for them by ``--resume`` /
    ``evaluate --run``.
    """
    if not output_dir:
        raise ConfigError("no run folder given; pass --output-dir DIR (or --resume DIR).")
    run = Path(output_dir)
    if run.exists() and not run.is_dir():
        raise ConfigError(f"--output-dir {str(run)!r} exists and is a file, not a folder.")
    if resume:
        if not (run / "config.yaml").is_file():
            raise ConfigError(f"--resume {str(run)!r} is not a run folder: it has no config.yaml.")
        return run
    if _previous_entries(run) and not overwrite:
        raise ConfigError(
            f"--output-dir {str(run)!r} is not empty; pass --resume {run} to continue that run, "
            "--overwrite to move its files into overwritten/ and start afresh, or choose a new folder."
        )
    try:
        run.mkdir(parents=True, exist_ok=True)
        probe = run / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"--output-dir {str(run)!r} is not writable ({e.strerror}); choose a folder you can write to.") from None
    return run


def _previous_entries(run: Path) -> list[Path]:
    return [p for p in run.iterdir() if p.name not in (ARCHIVE_DIR, LOCK_FILE)] if run.is_dir() else []


def archive_previous_run(run: Path) -> Path | None:
    """Move every entry of ``run`` (but earlier archives and the lock) into ``overwritten/<UTC time>/``."""
    old = _previous_entries(run)
    if not old:
        return None
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
    dest = run / ARCHIVE_DIR / stamp
    dest.mkdir(parents=True)
    for p in old:
        os.rename(p, dest / p.name)
    print(f"[lad_ref] --overwrite: the earlier run's {len(old)} entries moved to {dest}", file=sys.stderr)
    return dest


class RunLock:
    """An exclusive ``flock`` on ``DIR/.lock`` for as long as a process writes the run.

    Every writer takes it: the trainer's command line, and each study worker before it looks at
    the folder. A second writer (a duplicate job, a resume started while the run still goes, a
    second study on the same folders) fails at once with the holder's PID, or with ``wait`` blocks
    until the holder is done (after one line naming it), instead of interleaving checkpoints and
    metrics. The kernel drops the lock when the process dies, so a crash never leaves a stale lock.
    """

    def __init__(self, run: Path, *, wait: bool = False, log=None):
        self.path = Path(run) / LOCK_FILE
        self.wait = wait
        self.log = log or (lambda m: print(m, file=sys.stderr, flush=True))
        self._fh = None

    def __enter__(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock, as before
            return self
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            if not self.wait:
                fh.close()
                raise ConfigError(
                    f"run folder {str(self.path.parent)!r} is being written by process {holder}; "
                    "wait for it to finish or choose another --output-dir."
                ) from None
            self.log(f"[lad_ref] run folder {str(self.path.parent)!r} is being written by process {holder}; waiting for it.")
            fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            self._fh.close()  # closing releases the flock
            self._fh = None


# --------------------------------------------------------------------------------------
# run_info.json and the start policy
# --------------------------------------------------------------------------------------


def read_run_info(run: Path) -> dict | None:
    """``DIR/run_info.json`` (None if absent); a file that does not parse is a ConfigError naming the run."""
    f = Path(run) / RUN_INFO
    if not f.exists():
        return None
    info = read_json(f, f"run {str(run)!r}")
    if not isinstance(info, dict) or "start_policy" not in info:
        raise ConfigError(f"run {str(run)!r}: {str(f)!r} has no start_policy entry; restore it or start a new run.")
    return info


def stored_path(run: Path, path: str | Path) -> str:
    """How ``path`` is recorded in the run's files: relative to ``run`` when inside it, an absolute path
    for a local folder outside it, else as given (a hub id)."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path(run).resolve()))
    except ValueError:
        return str(p.resolve()) if p.exists() else str(p)


def start_policy_path(run: Path, info: dict) -> Path:
    """The start policy a run recorded, as a path to read now.

    A relative path is inside the run folder. An absolute path ending in ``start_policy`` whose
    start was copied into the run (``cache_path`` recorded) is the run's own copy, written before
    paths were stored relative: it is read from *this* folder (with a warning) so that a moved or
    copied run never reads the original folder's files. Any other absolute path is a model
    folder outside the run (a user's model), read where it is.
    """
    run = Path(run)
    p = Path(info["start_policy"])
    if not p.is_absolute():  # inside the run, or a hub id
        return run / p if (run / p).exists() or p.name == START_DIR else p
    own = p.name == START_DIR and "cache_path" in (info.get("start") or {})
    if own:
        if p.resolve() != (run / START_DIR).resolve():
            warnings.warn(f"run {str(run)!r}: run_info.json records its start policy as {str(p)!r} (an absolute path "
                          f"written by an older version); reading this folder's own {START_DIR}/ instead.", stacklevel=2)
        return run / START_DIR
    return p


# --------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------


def checkpoint_dirs(run: Path) -> list[Path]:
    root = run / CKPT_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_") and (p / STATE_FILE).exists())


def checkpoint_problem(ckpt: Path) -> str | None:
    """Why ``ckpt`` cannot be loaded (naming the file), or None when it reads back.

    Reads the trainer state and the safetensors headers: a truncated or half-copied file fails
    one of them (safetensors checks that the header's offsets fit the file).
    """
    try:
        torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=False)
    except Exception as e:  # any failure means "unusable"; reported with its file
        return f"{ckpt / STATE_FILE}: {type(e).__name__}: {e}"
    from safetensors import safe_open

    weights = [ckpt / w for w in WEIGHT_FILES if (ckpt / w).exists()]
    if not weights:
        return f"{ckpt}: no {' or '.join(WEIGHT_FILES)}"
    for w in weights + ([ckpt / LOGZ_FILE] if (ckpt / LOGZ_FILE).exists() else []):
        try:
            with safe_open(str(w), framework="pt") as fh:
                for key in fh.keys():
                    fh.get_slice(key)
        except Exception as e:
            return f"{w}: {type(e).__name__}: {e}"
    return None


def latest_checkpoint(run: Path, *, verify: bool = False) -> Path | None:
    """The newest checkpoint; with ``verify``, the newest that reads back (warning for each skipped)."""
    dirs = checkpoint_dirs(run)
    if not verify:
        return dirs[-1] if dirs else None
    for ckpt in reversed(dirs):
        problem = checkpoint_problem(ckpt)
        if problem is None:
            return ckpt
        warnings.warn(f"checkpoint {ckpt.name} is unreadable and is skipped ({problem}).", stacklevel=2)
    return None


def save_checkpoint(run: Path, step: int, model, tokenizer, optimizer, scheduler, logz_head, state: dict,
                    keep_last: int) -> Path:
    """Write checkpoint ``step`` atomically, then prune all but the newest ``keep_last``."""
    root = run / CKPT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:06d}"
    tmp = root / f".step_{step:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)  # a leftover of our own interrupted save
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if logz_head is not None:
        from safetensors.torch import save_file

        save_file({k: v.detach().cpu().contiguous() for k, v in logz_head.state_dict().items()}, str(tmp / LOGZ_FILE))
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state(), **state},
        tmp / STATE_FILE,
    )
    if final.exists():  # re-saving the same step (e.g. after a resume): replace it
        shutil.rmtree(final)
    os.rename(tmp, final)
    for old in checkpoint_dirs(run)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_trainer_state(ckpt: Path) -> dict:
    # weights_only=False: the state holds Python RNG tuples and numpy arrays written by this code.
    return torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=False)


def load_logz_head(ckpt: Path, head) -> None:
    from safetensors.torch import load_file

    head.load_state_dict(load_file(str(ckpt / LOGZ_FILE)))


def is_adapter_checkpoint(path: Path) -> bool:
    return (Path(path) / "adapter_config.json").exists()


def resolve_policy(run: Path, which: str) -> tuple[str, str | None, str]:
    """(base model path, adapter path or None, label) of a run's ``latest``/``start``/named checkpoint.

    The same checks as the trainer's: ``latest`` is the newest checkpoint that reads back (an
    unreadable one is skipped with a warning naming its file), the start policy is the run's own
    (:func:`start_policy_path`), and a corrupt ``run_info.json`` is named.
    """
    info = read_run_info(run)
    start = str(start_policy_path(run, info)) if info is not None else None
    if which == "start":
        if start is None:
            raise ConfigError(f"run {str(run)!r} has no run_info.json, so its start policy is unknown.")
        if Path(start) == Path(run) / START_DIR and not (Path(start) / "config.json").exists():
            raise ConfigError(f"run {str(run)!r}: its start policy {start!r} is missing; --checkpoint start cannot be evaluated.")
        return start, None, "start"
    if which == "latest":
        if not checkpoint_dirs(run):
            raise ConfigError(f"run {str(run)!r} has no checkpoint yet; use --checkpoint start.")
        ckpt = latest_checkpoint(run, verify=True)
        if ckpt is None:
            raise ConfigError(f"run {str(run)!r}: none of its checkpoints reads back (see the warnings above).")
    else:
        ckpt = run / CKPT_DIR / which if (run / CKPT_DIR / which).is_dir() else Path(which)
        if not ckpt.is_dir():
            names = ", ".join(p.name for p in checkpoint_dirs(run)) or "none"
            raise ConfigError(
                f"checkpoint {which!r} does not exist; valid choices are latest, start, {names}, or a model folder."
            )
        if (ckpt / STATE_FILE).exists():
            problem = checkpoint_problem(ckpt)
            if problem is not None:
                raise ConfigError(f"checkpoint {str(ckpt)!r} cannot be read ({problem}).")
    if is_adapter_checkpoint(ckpt):
        return start, str(ckpt), ckpt.name
    return str(ckpt), None, ckpt.name


def checkpoint_config(run: Path) -> tuple[Path, dict] | None:
    """(checkpoint, the config it was trained with) of the newest checkpoint that reads back, or None."""
    for c in reversed(checkpoint_dirs(run)):
        try:
            state = load_trainer_state(c)
        except Exception:  # unreadable: setup skips it with a warning naming the file
            continue
        if isinstance(state.get("config"), dict):
            return c, state["config"]
    return None


# --------------------------------------------------------------------------------------
# metrics.jsonl
# --------------------------------------------------------------------------------------


def read_metrics(run: Path) -> list[dict]:
    """The rows of ``metrics.jsonl``. A torn LAST line (the writer died mid-line) is dropped with a
    warning; an unreadable line anywhere else is an error naming the file and line."""
    f = run / "metrics.jsonl"
    if not f.exists():
        return []
    lines = [(i, line) for i, line in enumerate(f.read_text(errors="replace").splitlines(), 1) if line.strip()]
    rows = []
    for k, (i, line) in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if k == len(lines) - 1:
                warnings.warn(f"{f}: line {i} is torn (the run stopped mid-write) and is dropped.", stacklevel=2)
                break
            raise ConfigError(f"{f}: line {i} is not valid JSON; remove or repair that line.") from None
    return rows


def truncate_metrics(run: Path, last_step: int) -> None:
    """Keep metrics.jsonl lines up to ``last_step`` (a resumed run rewrites the later ones identically)."""
    rows = [r for r in read_metrics(run) if r.get("step", 0) <= last_step]
    write_jsonl(run / "metrics.jsonl", rows)


def append_metrics(run: Path, row: dict) -> None:
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps(row) + "\n")

"""Whole-file writes and checked reads for run and study folders.

Every file a run or a study rewrites goes through :func:`write_atomic`: the new content is written
to a temporary file in the same folder, flushed to disk (fsync), and renamed over the old one. A
process killed at any moment leaves either the old file or the new one, never an empty or
half-written one; the folder's entry is fsynced too, so the rename survives a power loss.
Append-only logs (``metrics.jsonl``, ``resume_log.jsonl``) are appended to instead, and a torn last
line is repaired when read (``checkpoint.read_metrics``).

:func:`read_json` / :func:`read_jsonl` name the file (and the run) when it does not parse, instead
of a bare JSONDecodeError.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from lad_ref.config_io import ConfigError


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Replace ``path`` by ``data`` whole: temp file in the same folder + fsync + rename (+ fsync of the folder)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - not POSIX
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def write_json(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    write_atomic(path, json.dumps(obj, indent=indent) + "\n")


def write_jsonl(path: str | Path, rows) -> None:
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))


def read_json(path: str | Path, what: str = "") -> Any:
    """``path``'s JSON; a file that does not parse is a ConfigError naming it (and ``what``: e.g. the run)."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        owner = f"{what}: " if what else ""
        raise ConfigError(f"{owner}{str(path)!r} is not valid JSON ({e}); it was probably cut short by a crash.") from None


def read_jsonl(path: str | Path, what: str = "") -> list:
    """The rows of a JSON-lines file; any line that does not parse is a ConfigError naming the file and line."""
    path = Path(path)
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            owner = f"{what}: " if what else ""
            raise ConfigError(f"{owner}{str(path)!r} line {i} is not valid JSON; it was probably cut short by a crash.") from None
    return rows

"""Execute the notebooks in order and regenerate their figures (``make figures``).

Each notebook's parameter cell reads two environment variables, which this runner sets for the
kernel it starts:

* ``LAD_FAST``: ``1`` = quick run (tests, CI), ``0`` = the full figures (the default here);
* ``LAD_FIGURES_DIR``: where the figures are written (default: ``paper_figures/`` of the repository);
* ``LAD_RUNS_DIR``: where the LLM notebooks (03, 04) put their training runs (default: ``runs/notebooks/``,
  git-ignored);
* ``LAD_JOBS``: how many training runs notebook 04 trains side by side (``--jobs``; default 1).

Examples::

    python notebooks/run_notebooks.py                         # full figures into paper_figures/
    python notebooks/run_notebooks.py --fast --figures-dir /tmp/figs 01 02
    python notebooks/run_notebooks.py --save-executed /tmp/executed   # keep the executed notebooks
    python notebooks/run_notebooks.py --full --jobs 2 04      # the ~40 ablation runs, two at a time

The kernel is the ``python3`` kernel of the interpreter that runs this script (ipykernel's default
spec), so run it with the project's virtual environment: ``.venv/bin/python notebooks/run_notebooks.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

NOTEBOOK_DIR = Path(__file__).resolve().parent
REPO = NOTEBOOK_DIR.parent
DEFAULT_FIGURES = REPO / "paper_figures"
DEFAULT_RUNS = REPO / "runs" / "notebooks"
ENV_KEYS = ("LAD_FAST", "LAD_FIGURES_DIR", "LAD_RUNS_DIR", "LAD_JOBS")


def notebooks(selection: list[str] | None = None) -> list[Path]:
    """The notebooks of ``notebooks/`` in order; ``selection`` keeps those whose name starts with an entry."""
    found = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if not selection:
        return found
    chosen = [nb for nb in found if any(nb.name.startswith(s) for s in selection)]
    missing = [s for s in selection if not any(nb.name.startswith(s) for nb in found)]
    if missing:
        names = ", ".join(nb.name for nb in found)
        raise ValueError(
            f"no notebook starts with {', '.join(map(repr, missing))}; valid choices are {names}."
        )
    return chosen


def execute(
    path: Path,
    *,
    fast: bool,
    figures_dir: Path,
    runs_dir: Path | None = None,
    timeout: int = 1800,
    save_to: Path | None = None,
    jobs: int = 1,
) -> float:
    """Run one notebook top to bottom in a fresh ``python3`` kernel; return its wall time in seconds.

    ``runs_dir`` (default ``runs/notebooks/``) receives the LLM notebooks' training runs; ``jobs`` is
    how many of them notebook 04 trains side by side.

    Raises nbclient's CellExecutionError (with the failing cell and traceback) if a cell fails.
    """
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    env_before = {k: os.environ.get(k) for k in ENV_KEYS}
    os.environ["LAD_FAST"] = "1" if fast else "0"
    os.environ["LAD_FIGURES_DIR"] = str(Path(figures_dir).resolve())
    os.environ["LAD_RUNS_DIR"] = str(Path(runs_dir or DEFAULT_RUNS).resolve())
    os.environ["LAD_JOBS"] = str(jobs)
    start = time.perf_counter()
    try:
        client = nbclient.NotebookClient(
            nb, kernel_name="python3", timeout=timeout, resources={"metadata": {"path": str(path.parent)}}
        )
        client.execute()
    finally:
        for key, val in env_before.items():
            if val is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = val
    wall = time.perf_counter() - start
    if save_to is not None:
        save_to.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, save_to / path.name)
    return wall


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Execute the lad_ref notebooks in order and write their figures.")
    p.add_argument("names", nargs="*", help="notebook name prefixes (e.g. 01 02); default: all")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--fast", action="store_true", help="FAST = True: quick runs (tests, CI)")
    mode.add_argument("--full", action="store_true", help="FAST = False: the full figures (default)")
    p.add_argument(
        "--figures-dir",
        type=Path,
        default=None,
        help=f"where the figures go (default: $LAD_FIGURES_DIR or {DEFAULT_FIGURES})",
    )
    p.add_argument(
        "--runs-dir",
        type=Path,
        default=None,
        help=f"where notebooks 03-04 write their training runs (default: $LAD_RUNS_DIR or {DEFAULT_RUNS})",
    )
    p.add_argument(
        "--timeout",
        type=int,
        default=None,
        help="seconds allowed per cell (default: 1800 with --fast, 14400 for the full figures, whose ablation cell "
        "trains ~40 runs)",
    )
    p.add_argument("--jobs", type=int, default=None, help="training runs side by side in notebook 04 (default 1)")
    p.add_argument("--save-executed", type=Path, default=None, help="also write the executed notebooks here")
    args = p.parse_args(argv)
    try:
        paths = notebooks(args.names)
    except ValueError as err:
        p.error(str(err))
    if args.fast:
        fast = True
    elif args.full:
        fast = False
    else:  # neither flag: LAD_FAST from the environment, else the full figures
        fast = os.environ.get("LAD_FAST", "0").strip().lower() not in ("0", "false", "no", "")
    jobs = args.jobs if args.jobs is not None else int(os.environ.get("LAD_JOBS", "1"))
    if jobs < 1:
        p.error(f"--jobs must be at least 1, got {jobs}.")
    timeout = args.timeout if args.timeout is not None else (1800 if fast else 14400)
    figures_dir = args.figures_dir or Path(os.environ.get("LAD_FIGURES_DIR", DEFAULT_FIGURES))
    runs_dir = args.runs_dir or Path(os.environ.get("LAD_RUNS_DIR", DEFAULT_RUNS))
    print(f"running {len(paths)} notebook(s), FAST={fast}, figures -> {figures_dir}", flush=True)
    for path in paths:
        print(f"  {path.name} ...", end=" ", flush=True)
        wall = execute(
            path,
            fast=fast,
            figures_dir=figures_dir,
            runs_dir=runs_dir,
            timeout=timeout,
            save_to=args.save_executed,
            jobs=jobs,
        )
        print(f"{wall:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

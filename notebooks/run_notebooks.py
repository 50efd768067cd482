"""Open, execute and regenerate the notebooks: ``make notebooks`` and ``make figures``.

Each notebook's parameter cell reads environment variables, which this runner sets for the kernel it starts:

* ``LAD_FAST``: ``1`` = quick run (tests, CI), ``0`` = the full figures (the default here); notebook 01 has no quick
  mode, 02 defaults to full when opened by hand, 03 and 04 (minutes of training) default to quick;
* ``LAD_FIGURES_DIR``: where the figures are written. The runner's default is ``paper_figures/`` of the repository
  (``make figures`` regenerates the committed figures); a notebook opened by hand writes into the git-ignored
  ``notebooks/_scratch/`` instead, so exploring never overwrites ``paper_figures/``;
* ``LAD_RUNS_DIR``: where the LLM notebooks (03, 04) put their training runs (default: ``runs/notebooks/``,
  git-ignored): the toy study's run folders under ``<runs>/study/`` (``study-fast/`` in FAST mode), which 03 and 04
  share (03's seed-0 runs are the study's, so whichever notebook runs second reuses them);
* ``LAD_JOBS``: how many training runs notebook 04's study trains side by side (``--jobs``; default 1).

Notebooks 01 and 02 (seconds to a minute) are committed **with their outputs**, so they read like a paper without
running; ``--store-outputs`` (used by ``make figures``) writes the outputs of a full run back into them, and
``tests/test_notebooks.py`` checks that the stored outputs belong to the current code. Notebooks 03 and 04 train models
for minutes, so they are committed without outputs and show the committed figures through markdown image links.

Examples::

    python notebooks/run_notebooks.py                         # full figures into paper_figures/
    python notebooks/run_notebooks.py --full --store-outputs 01 02   # and store 01/02's outputs in the notebooks
    python notebooks/run_notebooks.py --fast --figures-dir /tmp/figs 01 02
    python notebooks/run_notebooks.py --save-executed /tmp/executed   # keep the executed notebooks
    python notebooks/run_notebooks.py --full --jobs 2 04      # the whole toy study (= make study), two at a time
    python notebooks/run_notebooks.py --lab                   # JupyterLab on notebooks/ (``make notebooks``)

The kernel is the ``python3`` kernel of the interpreter that runs this script (ipykernel's default spec), so run it
with the project's virtual environment: ``.venv/bin/python notebooks/run_notebooks.py``. ``--lab`` first installs a
kernelspec named ``lad_ref`` (the notebooks' kernel) for this interpreter into ``sys.prefix``, so the kernel JupyterLab
starts is the one that imports lad_ref, whatever other ``python3`` kernels the machine has.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

NOTEBOOK_DIR = Path(__file__).resolve().parent
REPO = NOTEBOOK_DIR.parent
DEFAULT_FIGURES = REPO / "paper_figures"
DEFAULT_RUNS = REPO / "runs" / "notebooks"
ENV_KEYS = ("LAD_FAST", "LAD_FIGURES_DIR", "LAD_RUNS_DIR", "LAD_JOBS")
# notebooks committed with the outputs of a full run (they take seconds to a minute); the others are committed stripped
STORED_OUTPUTS = ("01_", "02_")
KERNEL_NAME = "lad_ref"  # the kernelspec the notebooks name in their metadata
KERNEL_DISPLAY_NAME = "Python (lad_ref)"


def stores_outputs(path: Path) -> bool:
    """Whether ``path`` is one of the notebooks committed with their outputs."""
    return path.name.startswith(STORED_OUTPUTS)


def code_digest(nb) -> str:
    """SHA-256 of the notebook's code cells (sources, in order): what stored outputs are checked against."""
    h = hashlib.sha256()
    for cell in nb.cells:
        if cell.cell_type == "code":
            h.update(cell.source.encode())
            h.update(b"\0")
    return h.hexdigest()


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
    store_outputs: bool = False,
) -> float:
    """Run one notebook top to bottom in a fresh ``python3`` kernel; return its wall time in seconds.

    ``runs_dir`` (default ``runs/notebooks/``) receives the LLM notebooks' training runs; ``jobs`` is
    how many of them notebook 04 trains side by side. ``store_outputs`` writes the executed notebook back
    to ``path`` with the digest of its code cells in ``metadata.lad_ref.code_sha256`` (for 01 and 02).

    Raises nbclient's CellExecutionError (with the failing cell and traceback) if a cell fails.
    """
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    env_before = {k: os.environ.get(k) for k in (*ENV_KEYS, "PYTHONPATH", "MPLBACKEND")}
    # the kernel imports the lad_ref of this checkout, even where another copy is installed in the environment
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO), env_before["PYTHONPATH"])))
    # CI exports MPLBACKEND=Agg for headless plotting; in a kernel it would replace the inline backend,
    # and the figures would be saved but never shown in the notebook's outputs
    os.environ.pop("MPLBACKEND", None)
    os.environ["LAD_FAST"] = "1" if fast else "0"
    os.environ["LAD_FIGURES_DIR"] = str(Path(figures_dir).resolve())
    os.environ["LAD_RUNS_DIR"] = str(Path(runs_dir or DEFAULT_RUNS).resolve())
    os.environ["LAD_JOBS"] = str(jobs)
    start = time.perf_counter()
    try:
        client = nbclient.NotebookClient(
            nb,
            kernel_name="python3",
            timeout=timeout,
            resources={"metadata": {"path": str(path.parent)}},
            record_timing=False,  # per-cell timestamps would make every re-run a diff of the stored notebooks
        )
        client.execute()
    finally:
        for key, val in env_before.items():
            if val is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = val
    wall = time.perf_counter() - start
    nb.metadata.setdefault("lad_ref", {})["code_sha256"] = code_digest(nb)
    if save_to is not None:
        save_to.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, save_to / path.name)
    if store_outputs:
        nbformat.write(nb, path)
    return wall


def install_kernel(prefix: Path | str = sys.prefix) -> Path:
    """Install the ``lad_ref`` kernelspec (this interpreter, via ipykernel) under ``prefix``/share/jupyter/kernels.

    The notebooks name this kernel in their metadata; a kernelspec pinned to the project's interpreter is the
    one sure to import lad_ref (a ``python3`` spec in the user's Jupyter directories would take precedence over
    the environment's own). Returns the kernelspec's folder.
    """
    from ipykernel.kernelspec import install

    return Path(install(kernel_name=KERNEL_NAME, display_name=KERNEL_DISPLAY_NAME, prefix=str(prefix)))


def lab_command(*extra: str) -> list[str]:
    """The command ``make notebooks`` runs: JupyterLab of this interpreter, opened on ``notebooks/``."""
    return [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={NOTEBOOK_DIR}", *extra]


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
        help="seconds allowed per cell (default: 1800 with --fast, 28800 for the full figures, where notebook 04 runs "
        "the whole toy study, 109 runs, about an hour with --jobs 2; it resumes where it stopped)",
    )
    p.add_argument("--jobs", type=int, default=None, help="training runs side by side in notebook 04's study (default 1)")
    p.add_argument("--save-executed", type=Path, default=None, help="also write the executed notebooks here")
    p.add_argument(
        "--store-outputs",
        action="store_true",
        help="with --full: write the outputs of 01 and 02 back into the notebooks (make figures does)",
    )
    p.add_argument(
        "--lab",
        action="store_true",
        help="install the lad_ref kernel and start JupyterLab on notebooks/ (make notebooks); every other argument "
        "goes to jupyter lab (e.g. --port=8890 --no-browser)",
    )
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--lab" in argv:  # everything else on the command line belongs to jupyter lab
        install_kernel()
        cmd = lab_command(*(a for a in argv if a != "--lab"))
        os.execv(cmd[0], cmd)  # become JupyterLab, so that Ctrl-C and signals reach it directly
    args = p.parse_args(argv)
    if args.store_outputs and not args.full:
        p.error("--store-outputs stores the outputs of a full run: add --full.")
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
    timeout = args.timeout if args.timeout is not None else (1800 if fast else 28800)
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
            store_outputs=args.store_outputs and stores_outputs(path),
        )
        print(f"{wall:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

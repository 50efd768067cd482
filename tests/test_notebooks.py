"""The notebooks open with one command, read without running, and run top to bottom with FAST = True.

* Notebooks 01 and 02 are committed with the outputs of a full run (``make figures`` stores them); the unmarked tests
  check that those outputs belong to the current code (a digest of the code cells), ran top to bottom without error
  and show every figure. Notebooks 03 and 04 train models for minutes: they are committed without outputs and show the
  committed figures through markdown image links, which must resolve, and the toy study's numbers through report
  blocks (``<!-- report:NAME -->``, ``lad_ref.study.report``), which must match ``paper_figures/toy_study.json``.
* Every notebook exports to HTML with its figures (nbconvert, no execution).
* ``make notebooks`` (``run_notebooks.py --lab``) starts a JupyterLab that answers on localhost and whose ``lad_ref``
  kernel imports lad_ref (a headless start, a few seconds).
* The execution tests are marked ``notebooks`` (``make test-fast`` skips them). They write figures into a temporary
  folder through ``LAD_FIGURES_DIR``, so ``paper_figures/`` is never rewritten by a test, and for 01/02 they compare
  the fresh FAST run with the stored outputs cell by cell, so the stored outputs cannot go stale silently.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
FIGURES = REPO / "paper_figures"
FIGURES_README = FIGURES / "README.md"

# notebook -> the figures (stems; each written as .png and .pdf) it must write
EXPECTED: dict[str, tuple[str, ...]] = {
    "01_from_trust_region_to_lad.ipynb": ("01_gradient_weights", "01_lemma_minimisers"),
    "02_bandit_trimodal.ipynb": ("02_bandit_policies", "02_tv_curves", "02_eta_sweep", "02_refresh_pi_old",
                                 "02_llm_regime"),
    "03_tiny_llm.ipynb": ("03_answer_histogram",),
    "04_ablations.ipynb": ("toy_study_pass_at_k", "toy_study_forest", "toy_study_brake"),  # the study's write_figures
}
# notebook -> the committed figures (paper_figures/<stem>.png) its markdown must show, for readers who do not run it
EMBEDDED: dict[str, tuple[str, ...]] = {
    "03_tiny_llm.ipynb": ("toy_study_pass_at_k", "toy_study_brake", "03_answer_histogram"),
    "04_ablations.ipynb": ("toy_study_forest",),
}
# notebook -> the report blocks (tables of toy_study.json) its markdown must carry
REPORT_BLOCKS: dict[str, tuple[str, ...]] = {
    "03_tiny_llm.ipynb": ("headline", "protocol"),
    "04_ablations.ipynb": ("divergence", "eta", "baselines", "level", "cost", "methods"),
}
STORED = sorted(n for n in EXPECTED if n.startswith(("01_", "02_")))
STRIPPED = sorted(n for n in EXPECTED if n not in STORED)
HAS_FAST_MODE = ("02_", "03_", "04_")  # 01 runs in seconds and has no quick mode


def _runner():
    spec = importlib.util.spec_from_file_location("run_notebooks", NOTEBOOKS / "run_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read(path: Path):
    nbformat = pytest.importorskip("nbformat")
    return nbformat.read(path, as_version=4)


def _code(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def _images(cell) -> int:
    return sum("image/png" in o.get("data", {}) for o in cell.get("outputs", []))


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def test_every_notebook_is_listed():
    found = {p.name for p in _runner().notebooks()}
    assert found == set(EXPECTED), f"notebooks on disk {sorted(found)} differ from EXPECTED {sorted(EXPECTED)}"
    assert {p.name for p in map(Path, EXPECTED) if _runner().stores_outputs(p)} == set(STORED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parameter_cell_and_kernel(name):
    nb = _read(NOTEBOOKS / name)
    params = [c for c in _code(nb) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, f"{name} must have exactly one cell tagged 'parameters'"
    source = params[0].source
    # opened by hand, a notebook writes into the git-ignored scratch folder, never into paper_figures/
    assert 'Path(os.environ.get("LAD_FIGURES_DIR", "_scratch"))' in source, (
        f"the parameter cell of {name} must default FIGURES_DIR to _scratch (LAD_FIGURES_DIR overrides it)"
    )
    if name.startswith(HAS_FAST_MODE):
        assert "LAD_FAST" in source and re.search(r"^FAST = (True|False)", source, re.M), (
            f"the parameter cell of {name} must set FAST and read LAD_FAST"
        )
    assert nb.metadata.get("kernelspec", {}).get("name") == _runner().KERNEL_NAME, (
        f"{name} must name the kernel {_runner().KERNEL_NAME!r} (installed by make notebooks)"
    )


@pytest.mark.parametrize("name", STRIPPED)
def test_long_notebooks_are_stripped_and_embed_the_committed_figures(name):
    nb = _read(NOTEBOOKS / name)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in _code(nb)), (
        f"{name} has stored outputs; it trains for minutes, so commit it stripped (the figures are embedded as links)"
    )
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for stem in EMBEDDED[name]:
        assert f"](../paper_figures/{stem}.png)" in markdown, f"{name}'s markdown does not show {stem}.png"
    for stem in re.findall(r"\]\(\.\./paper_figures/([^)]+)\)", markdown):
        assert (FIGURES / stem).is_file(), f"{stem} is linked from {name} but not committed"
    for block in REPORT_BLOCKS[name]:
        assert f"<!-- report:{block} -->" in markdown, f"{name}'s markdown has no report block {block!r}"
    assert re.search(r"\d\.\d{2}", markdown), f"{name}'s markdown states no number of the committed run"


def _files_with_report_blocks() -> list[Path]:
    """Every .md and .ipynb of the repository (outside ignored folders) that contains a report block."""
    skip = {".git", "runs", "node_modules", "_scratch", ".ipynb_checkpoints", "build", "dist"}
    found = []
    for folder, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in skip and not d.startswith((".venv", "venv"))]  # pruned, not walked
        for f in files:
            path = Path(folder) / f
            if path.suffix in (".md", ".ipynb") and "<!-- report:" in path.read_text(errors="ignore"):
                found.append(path)
    return sorted(found)


def test_report_blocks_match_the_committed_study():
    """`python -m lad_ref.study.report --check` on every file with a report block (notebooks 03/04, the README once it has
    them): the numbers in the prose are those of paper_figures/toy_study.json, so they cannot go stale silently."""
    from lad_ref.study import report

    files = _files_with_report_blocks()
    assert {NOTEBOOKS / n for n in REPORT_BLOCKS} <= set(files)
    rc = report.main(["--json", str(FIGURES / "toy_study.json"), "--check", *map(str, files)])
    assert rc == 0, "stale report blocks (named above): run python -m lad_ref.study.report --sync FILE"


@pytest.mark.parametrize("name", STORED)
def test_stored_outputs_belong_to_the_current_code(name):
    runner = _runner()
    nb = _read(NOTEBOOKS / name)
    stored = nb.metadata.get("lad_ref", {}).get("code_sha256")
    assert stored == runner.code_digest(nb), (
        f"the outputs stored in {name} come from other code than its cells now hold: run "
        f"`python notebooks/run_notebooks.py --full --store-outputs {name[:2]}` (or make figures)"
    )
    code = _code(nb)
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), f"{name}: cells not executed once, top to bottom ({counts})"
    errors = [c.id for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{name}: stored outputs contain errors in cells {errors}"
    printed = "".join(_text(c) for c in code)
    for stem in EXPECTED[name]:
        cell = next((c for c in code if f"wrote {stem}.png" in _text(c)), None)
        assert cell is not None and _images(cell) >= 1, f"{name}: no stored figure output for {stem}"
    if name.startswith(HAS_FAST_MODE):
        assert "FAST=False" in printed, f"{name}: the stored outputs must come from a full run (FAST = False)"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_html_export_shows_the_figures(name):
    """`jupyter nbconvert --to html` of the committed notebook: 01/02 carry their figures as stored outputs, 03/04 link
    the committed ones (nbconvert will not inline files outside the notebook's folder, so the HTML keeps the links,
    which resolve from notebooks/, where nbconvert writes it)."""
    nbconvert = pytest.importorskip("nbconvert")
    html, _ = nbconvert.HTMLExporter().from_notebook_node(_read(NOTEBOOKS / name))
    if name in STORED:
        n_images = html.count('src="data:image/png;base64,')
        assert n_images >= len(EXPECTED[name]), f"{name} exports to HTML with {n_images} figures"
    else:
        linked = re.findall(r'<img[^>]*src="\.\./paper_figures/([^"]+)\.png"', html)
        assert set(EMBEDDED[name]) <= set(linked), f"{name} exports to HTML linking {linked}"
        assert all((FIGURES / f"{stem}.png").is_file() for stem in linked)
        assert "<table>" in html, f"{name}'s HTML shows no table of the committed numbers"


def test_store_outputs_needs_a_full_run(capsys):
    with pytest.raises(SystemExit):
        _runner().main(["--fast", "--store-outputs", "01"])
    assert "--store-outputs stores the outputs of a full run" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(url: str, token: str, method: str = "GET", body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        text = resp.read()
    return json.loads(text) if text else None


def test_jupyterlab_starts_headless_with_the_lad_ref_kernel(tmp_path):
    """What `make notebooks` starts: JupyterLab answers on localhost and its lad_ref kernel imports lad_ref."""
    pytest.importorskip("jupyterlab")
    jupyter_client = pytest.importorskip("jupyter_client")
    runner = _runner()
    prefix = tmp_path / "prefix"  # make notebooks installs into sys.prefix; the test leaves the environment alone
    spec_dir = runner.install_kernel(prefix)
    assert json.loads((spec_dir / "kernel.json").read_text())["argv"][0] == sys.executable
    env = dict(
        os.environ,
        JUPYTER_PATH=str(prefix / "share" / "jupyter"),
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        JUPYTER_DATA_DIR=str(tmp_path / "data"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
    )
    port, token = _free_port(), secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    cmd = runner.lab_command("--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
                             "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
                             *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []))
    log = tmp_path / "lab.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    client = None
    try:
        deadline, status = time.monotonic() + 90, None
        while status is None:
            assert proc.poll() is None, f"jupyter lab exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"jupyter lab did not answer in 90 s:\n{log.read_text()[-3000:]}"
            try:
                status = _api(f"{base}/api/status", token)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.3)
        assert "started" in status
        with pytest.raises(urllib.error.HTTPError):  # the token is required
            urllib.request.urlopen(f"{base}/api/kernelspecs", timeout=5)
        specs = _api(f"{base}/api/kernelspecs", token)["kernelspecs"]
        assert runner.KERNEL_NAME in specs, f"kernelspecs offered: {sorted(specs)}"

        # open notebook 01 the way JupyterLab does: a session, whose kernel runs in notebooks/
        session = _api(f"{base}/api/sessions", token, "POST", {"path": next(iter(EXPECTED)), "type": "notebook",
                                                               "name": "", "kernel": {"name": runner.KERNEL_NAME}})
        kernel = session["kernel"]
        connection = tmp_path / "runtime" / f"kernel-{kernel['id']}.json"
        while not connection.is_file():
            assert time.monotonic() < deadline, "the kernel wrote no connection file"
            time.sleep(0.2)
        client = jupyter_client.BlockingKernelClient(connection_file=str(connection))
        client.load_connection_file()
        client.start_channels()
        client.wait_for_ready(timeout=60)
        msg_id = client.execute("import lad_ref; print(lad_ref.__file__)")
        printed = ""
        while True:
            msg = client.get_iopub_msg(timeout=30)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                printed += msg["content"]["text"]
            elif msg["msg_type"] == "error":
                pytest.fail(f"the lad_ref kernel cannot import lad_ref: {msg['content']['evalue']}")
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        # the kernel is this environment's interpreter, started in notebooks/: the same lad_ref that python imports there
        expected = subprocess.run([sys.executable, "-c", "import lad_ref; print(lad_ref.__file__)"], cwd=NOTEBOOKS,
                                  env=env, capture_output=True, text=True, check=True).stdout
        assert printed.strip() == expected.strip()
        _api(f"{base}/api/sessions/{session['id']}", token, "DELETE")
    finally:
        if client is not None:
            client.stop_channels()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_figures_readme_lists_every_figure():
    text = FIGURES_README.read_text()
    for name, stems in EXPECTED.items():
        assert name in text, f"paper_figures/README.md does not mention {name}"
        for stem in stems:
            assert f"{stem}.png" in text, f"paper_figures/README.md does not list {stem}.png"


@pytest.mark.notebooks
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_runs_fast_and_writes_its_figures(name, tmp_path):
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    runner = _runner()
    # notebook 04 runs the FAST study two runs at a time in worker processes (LAD_JOBS=2), the path `make figures` takes
    jobs = 2 if name.startswith("04") else 1
    wall = runner.execute(
        NOTEBOOKS / name,
        fast=True,
        figures_dir=tmp_path,
        runs_dir=tmp_path / "runs",
        timeout=900,
        save_to=tmp_path / "executed",
        jobs=jobs,
    )
    missing = [
        f"{stem}.{ext}"
        for stem in EXPECTED[name]
        for ext in ("png", "pdf")
        if not (tmp_path / f"{stem}.{ext}").is_file() or (tmp_path / f"{stem}.{ext}").stat().st_size == 0
    ]
    assert not missing, f"{name} ran in {wall:.0f} s but did not write {', '.join(missing)}"
    fresh = _read(tmp_path / "executed" / name)
    if jobs > 1:
        printed = "".join(_text(c) for c in _code(fresh))
        assert f"{jobs} at a time" in printed and "[study]" in printed and "finished main/" in printed, (
            f"{name} with LAD_JOBS={jobs} did not train its runs through the study's execute()"
        )
    assert all(c.execution_count is not None for c in _code(fresh)), f"{name}: a cell was not executed"
    if name in STORED:  # the stored full-mode outputs have the structure of a fresh run: same cells, same figures
        # (printed text may differ: some checks print only in full mode)
        stored = _read(NOTEBOOKS / name)
        assert [c.id for c in _code(stored)] == [c.id for c in _code(fresh)]
        for old, new in zip(_code(stored), _code(fresh)):
            assert _images(old) == _images(new), (
                f"{name} cell {old.id}: {_images(old)} stored figure(s), {_images(new)} in a fresh run"
            )

"""The notebooks run top to bottom with FAST = True and write every figure they promise.

The execution tests are marked ``notebooks`` (``make test-fast`` skips them). They write figures into
a temporary folder through ``LAD_FIGURES_DIR``, so the committed ``paper_figures/`` are never
rewritten by a test. The unmarked tests only read the notebook files (milliseconds).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
FIGURES_README = REPO / "paper_figures" / "README.md"

# notebook -> the figures (stems; each written as .png and .pdf) it must write
EXPECTED: dict[str, tuple[str, ...]] = {
    "01_from_trust_region_to_lad.ipynb": ("01_gradient_weights", "01_lemma_minimisers"),
    "02_bandit_trimodal.ipynb": ("02_bandit_policies", "02_tv_curves", "02_eta_sweep", "02_refresh_pi_old"),
    "03_tiny_llm.ipynb": ("03_training_curves", "03_answer_histogram"),
    "04_ablations.ipynb": ("04_divergence_ablation", "04_eta_ablation", "04_step_time"),
}


def _runner():
    spec = importlib.util.spec_from_file_location("run_notebooks", NOTEBOOKS / "run_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cells(name: str) -> list[dict]:
    return json.loads((NOTEBOOKS / name).read_text())["cells"]


def test_every_notebook_is_listed():
    found = {p.name for p in _runner().notebooks()}
    assert found == set(EXPECTED), (
        f"notebooks on disk {sorted(found)} differ from EXPECTED {sorted(EXPECTED)}"
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_is_stripped_and_has_a_parameter_cell(name):
    cells = _cells(name)
    code = [c for c in cells if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), (
        f"{name} has stored outputs; commit notebooks without outputs (figures are files)"
    )
    params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, f"{name} must have exactly one cell tagged 'parameters'"
    source = "".join(params[0]["source"])
    for needle in ("FAST = True", "LAD_FAST", "LAD_FIGURES_DIR"):
        assert needle in source, f"the parameter cell of {name} does not mention {needle}"


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
    # notebook 04 trains its runs two at a time in subprocesses (LAD_JOBS=2), the path `make figures` takes
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
    if jobs > 1:
        cells = json.loads((tmp_path / "executed" / name).read_text())["cells"]
        printed = "".join("".join(o.get("text", "")) for c in cells for o in c.get("outputs", []))
        assert "trained by prefetch" in printed and "kept from an earlier run" not in printed, (
            f"{name} with LAD_JOBS={jobs} did not read its runs from the side-by-side prefetch"
        )

"""lad_ref.study.report: the verdict rule, the tables, and the report-block sync (stale blocks found, sync idempotent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lad_ref.study import report

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "paper_figures" / "toy_study.json"


def _entry(mean, lo, hi, n, wins=None):
    return {"mean": mean, "ci95": [lo, hi], "n": n, "wins": n if wins is None else wins, "losses": 0}


def _result(n=8, lo=0.01, hi=0.03):
    seeds = list(range(n))
    e = {"variant": "main", "seeds": seeds, "groups": ["headline"], "avg_at_k": _entry(0.02, lo, hi, n),
         "pass_at_256": _entry(0.0, -0.1, 0.1, n, 4), "distinct_correct": _entry(-1.5, -2.3, -0.6, n, 1),
         "policy_entropy": _entry(-0.02, -0.04, -0.01, n, 2), "update_seconds_per_step": _entry(0.1, 0.05, 0.2, n)}
    return {"paired": {"lad(js) - grpo": e}, "methods": {}, "groups": {}}


@pytest.mark.parametrize("n, lo, hi, higher, expected", [
    (8, 0.01, 0.03, True, "holds"),
    (8, -0.03, -0.01, True, "reversed"),
    (8, -0.01, 0.03, True, "not distinguishable"),
    (4, 0.01, 0.03, True, "direction only"),  # a 4-seed CI that excludes 0 is still too coarse to test
    (4, -0.01, 0.03, True, "direction only"),
    (5, 0.01, 0.03, True, "holds"),
    (8, -0.03, -0.01, False, "holds"),  # lower is better: a negative CI is in A's favour
])
def test_verdict(n, lo, hi, higher, expected):
    assert report.verdict(_entry(0.0, lo, hi, n), higher) == expected


def test_min_seeds_matches_the_study():
    from lad_ref.study.analysis import MIN_SEEDS_FOR_CI

    assert report.MIN_SEEDS == MIN_SEEDS_FOR_CI


def test_headline_states_direction_and_verdict_per_metric():
    rows = {line.split(" | ")[0].strip("| "): line for line in report.headline_table(_result()).splitlines()}
    assert rows["avg@256 (= pass@1)"].endswith("| higher | holds |")
    assert "+0.016" not in rows["avg@256 (= pass@1)"] and "+0.020 [+0.010, +0.030], 8/8" in rows["avg@256 (= pass@1)"]
    assert rows["pass@256"].endswith("| not distinguishable |")
    assert rows["distinct correct answers / prompt"].endswith("| reversed |")
    assert rows["per-token policy entropy (nats)"].endswith("| — (reported) | — |")  # reported, never a verdict
    four = report.headline_table(_result(n=4))
    assert "holds" not in four and "reversed" not in four


def test_absent_comparisons_render_one_line():
    for name in ("baselines", "level", "protocol"):
        text = report.table(name, _result())
        assert text.count("\n") == 0 and f"GROUP={name}" in text, text
    with pytest.raises(ValueError, match="valid tables are headline"):
        report.table("nope", _result())


def test_group_table_marks_verdicts_only_with_enough_seeds():
    r = _result()
    r["paired"]["lad(tv) - grpo"] = {"variant": "main", "seeds": [0, 1, 2, 3], "avg_at_k": _entry(-0.07, -0.09, -0.05, 4, 0),
                                     "distinct_correct": _entry(3.7, 2.8, 4.4, 4)}
    rows = report.table("divergence", r).splitlines()
    js = next(line for line in rows if line.startswith("| lad(js) - grpo (8)"))
    tv = next(line for line in rows if line.startswith("| lad(tv) - grpo (4)"))
    assert "**holds**" in js and "**reversed**" in js
    assert "**" not in tv and "give a direction (wins), not a test" in rows[-1]


@pytest.mark.skipif(not COMMITTED.is_file(), reason="no committed toy_study.json")
def test_every_table_renders_from_the_committed_json():
    result = json.loads(COMMITTED.read_text())
    for name in report.TABLES:
        assert report.table(name, result).strip(), name
    head = report.table("headline", result)
    e = result["paired"]["lad(js) - grpo"]["distinct_correct"]
    assert f"{e['mean']:+.2f} [{e['ci95'][0]:+.2f}, {e['ci95'][1]:+.2f}], {e['wins']}/{e['n']}" in head


def test_sync_detects_stale_blocks_and_is_idempotent(tmp_path):
    md = tmp_path / "doc.md"
    md.write_text("# t\n<!-- report:headline -->\nold numbers\n<!-- /report:headline -->\ntail\n")
    r = _result()
    assert report.sync_file(md, r, write=False) == ["headline"]
    assert "old numbers" in md.read_text()  # --check does not write
    assert report.sync_file(md, r, write=True) == ["headline"]
    once = md.read_text()
    assert "old numbers" not in once and "| avg@256 (= pass@1) |" in once and once.endswith("tail\n")
    assert report.sync_file(md, r, write=True) == [] and md.read_text() == once  # idempotent
    changed = _result(lo=-0.01)  # new numbers in the JSON: the committed block is stale again
    assert report.sync_file(md, changed, write=False) == ["headline"]


def test_sync_notebook_markdown_cells_only(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("a\n<!-- report:headline -->\n<!-- /report:headline -->\nb"),
                nbformat.v4.new_code_cell("x = '<!-- report:headline --><!-- /report:headline -->'")]
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, path)
    assert report.sync_file(path, _result(), write=True) == ["headline"]
    back = nbformat.read(path, as_version=4)
    assert "| higher | holds |" in back.cells[0].source and back.cells[1].source == nb.cells[1].source
    assert path.read_text() == nbformat.writes(back) + "\n"  # the file keeps nbformat's own layout
    assert report.sync_file(path, _result(), write=False) == []


def test_unclosed_block_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="unclosed report block"):
        report.sync_text("<!-- report:headline -->\nx\n<!-- /report:cost -->", _result())


def test_cli_check_names_each_stale_block_and_file(tmp_path, capsys):
    data = tmp_path / "s.json"
    data.write_text(json.dumps(_result()))
    md = tmp_path / "doc.md"
    md.write_text("<!-- report:headline -->\n<!-- /report:headline -->\n<!-- report:level -->x<!-- /report:level -->")
    assert report.main(["--json", str(data), "--check", str(md)]) == 1
    err = capsys.readouterr().err
    assert f"{md}: report block 'headline' is stale" in err and f"{md}: report block 'level' is stale" in err
    assert report.main(["--json", str(data), "--sync", str(md)]) == 0
    assert report.main(["--json", str(data), "--check", str(md)]) == 0



def test_protocol_table_one_row_per_variant_with_brake_and_paired_difference():
    r = _result()
    steps = {"brake/log_ratio_q05": [-0.1, -0.2], "brake/log_ratio_q95": [0.1, 0.3], "brake/last_q05": [-0.2, -0.2],
             "brake/last_q95": [0.2, 0.2]}
    r["groups"]["protocol"] = {"seeds": list(range(8)), "variants": {"k1": {"optim.epochs": 1}, "main": {}}}
    r["brake"] = {"grpo [k1]": {"grpo/clipfrac": [0.0, 0.02], **steps}, "lad(js) [k1]": {"lad/weight_flip_frac":
                  [0.001, 0.003], **steps}, "lad(js) [main]": {"lad/weight_flip_frac": [0.01, 0.03], **steps}}
    r["paired"]["lad(js) - grpo [k1]"] = {"variant": "k1", "seeds": [0], "avg_at_k": {"mean": -0.01, "ci95": None,
                                                                                      "wins": 0, "n": 1}}
    rows = report.table("protocol", r).splitlines()
    k1 = next(line for line in rows if line.startswith("| k1 (epochs 1; 1 seed)"))
    main = next(line for line in rows if line.startswith("| main ("))
    assert "| 0.20% (0.3%) |" in k1 and "| 1.0%, -0.150…+0.200 |" in k1 and "-0.010 (1 seed, no CI)" in k1
    assert "| 2.00% (3.0%) |" in main and "+0.020 [+0.010, +0.030], 8/8 **holds**" in main

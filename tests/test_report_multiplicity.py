"""The multiplicity line of the report tables (issue 19 item 2) and the new groups' tables."""

from __future__ import annotations

import pytest

from lad_ref.study import report


def entry(per_seed):
    n = len(per_seed)
    mean = sum(per_seed) / n
    lo, hi = min(per_seed), max(per_seed)  # a stand-in CI: excludes 0 exactly when every seed has one sign
    return {"mean": mean, "ci95": [lo, hi], "wins": sum(x > 0 for x in per_seed), "n": n, "per_seed": per_seed}


def test_multiplicity_line_counts_holm_survivors():
    strong = entry([0.5, 0.6, 0.4, 0.55, 0.45, 0.5, 0.52, 0.48])  # p = 2/256
    weak = entry([0.5, -0.6, 0.4, -0.55, 0.45, 0.5, -0.52, 0.48])
    # 3 strong (p = 0.0078 each, Holm: 3 x 0.0078 = 0.023) and one weak: 3 of 4 survive
    line = report.multiplicity_line([strong, strong, strong, weak])
    assert line.startswith("Multiplicity: 3 of 4 tests (comparisons × metrics) survive Holm's correction at 0.05")
    assert "3 of the 4 CIs exclude 0" in line
    # seven strong 8-seed tests: 7 x 0.0078 = 0.055 > 0.05, so none survives although every CI excludes 0
    assert report.multiplicity_line([strong] * 7).startswith("Multiplicity: 0 of 7 tests")
    four = entry([0.5, 0.6, 0.4, 0.55])
    assert "With 4 seeds no p-value can be below 0.125" in report.multiplicity_line([four])
    assert "1 summaries without per-seed values are left out" in report.multiplicity_line([strong, {"mean": 1.0}])


def _result(paired):
    return {"paired": {c: {"variant": "main", "seeds": list(range(8)), **m} for c, m in paired.items()}}


@pytest.mark.parametrize("group, comparisons", [
    ("control", ["lad(js) - grpo", "lad(js,tied=0) - grpo", "grpo(tied=0) - grpo"]),
    ("dynamic", ["lad(js,ds=1) - grpo(ds=1)", "grpo(ds=1) - grpo", "lad(js,ds=1) - lad(js)"]),
    ("penalty", ["lad(js,eta=0.25) - grpo", "ppo_penalty(beta=0.3) - grpo", "lad(js) - ppo_penalty(beta=1)"]),
    ("divergence", ["lad(neyman) - grpo"]),
    ("eta", ["lad(js,eta=0.25) - grpo"]),
])
def test_new_groups_have_tables_with_the_multiplicity_line(group, comparisons):
    e = entry([0.5, 0.6, 0.4, 0.55, 0.45, 0.5, 0.52, 0.48])
    metrics = {"avg_at_k": e, "pass_at_256": e, "distinct_correct": e, "correct_answer_entropy": e}
    text = report.table(group, _result({c: metrics for c in comparisons + ["lad(js) - entadv"]}))
    for c in comparisons:
        assert f"| {c} (8) |" in text
    assert "lad(js) - entadv" not in text
    assert f"of {4 * len(comparisons)} tests" in text


def test_headline_table_ends_with_the_multiplicity_line():
    e = entry([0.5, 0.6, 0.4, 0.55, 0.45, 0.5, 0.52, 0.48])
    r = _result({"lad(js) - grpo": {"avg_at_k": e, "pass_at_16": e, "pass_at_256": e, "distinct_correct": e,
                                    "dist_3": e}})
    # four metrics with a verdict; dist-3 is reported without one and is not tested
    assert report.table("headline", r).splitlines()[-1].startswith("Multiplicity: 4 of 4 tests")


def test_a_divergence_registered_later_is_listed_not_dropped(request):
    """The groups test parsed methods (lad_ref.methods), not a pattern of the divergences known at import."""
    from lad_ref import divergences

    js = divergences.DIVERGENCES["js"]
    divergences.register_divergence(divergences.Divergence("chi_test", "a test divergence", js.f, js.f_prime))
    request.addfinalizer(lambda: divergences.unregister_divergence("chi_test"))
    e = entry([0.5, 0.6, 0.4, 0.55, 0.45, 0.5, 0.52, 0.48])
    metrics = {"avg_at_k": e, "pass_at_256": e, "distinct_correct": e, "correct_answer_entropy": e}
    text = report.table("divergence", _result({"lad(chi_test) - grpo": metrics, "lad(js) - grpo": metrics}))
    assert "| lad(chi_test) - grpo (8) |" in text and "| lad(js) - grpo (8) |" in text

"""The groups of issues 19 and 24 (llm/configs/study.yaml) and their run configs (the grammar: tests/test_methods.py)."""

from __future__ import annotations

from pathlib import Path

from lad_ref.losses import PpoPenaltyHparams
from lad_ref.study import plan as sp

FULL = Path(__file__).resolve().parents[1] / "llm" / "configs" / "study.yaml"


def test_issue_groups_and_their_run_configs(tmp_path):
    study, groups = sp.load_study(FULL)
    assert set(groups["control"].methods) >= {"grpo", "lad(js)", "lad(js,tied=0)"}
    assert set(groups["checks"].methods) >= {"grpo(tied=0)", "lad(js,gs=1)"} and groups["checks"].seeds == [0]
    assert set(groups["dynamic"].methods) >= {"grpo(ds=1)", "lad(js,ds=1)"}
    assert set(groups["penalty"].methods) >= {f"ppo_penalty(beta={b})" for b in (0.1, 1, 10)}
    assert "lad(js,eta=0.25)" in groups["eta"].methods and "lad(neyman)" in groups["divergence"].methods
    for g in ("control", "dynamic", "penalty"):
        assert groups[g].seeds == list(range(8))
    variants = sp.all_variants(groups)
    cfg = {m: sp.run_config(study, sp.RunSpec("main", m, 0), variants, tmp_path)
           for m in ("lad(js,tied=0)", "grpo(ds=1)", "lad(js,gs=1)", "ppo_penalty(beta=0.3)")}
    assert cfg["lad(js,tied=0)"].objective.tied_loss_weight == 0.0
    assert cfg["grpo(ds=1)"].rollout.dynamic_sampling is True
    assert cfg["lad(js,gs=1)"].logging.tied_grad_share is True
    assert cfg["ppo_penalty(beta=0.3)"].objective.ppo_penalty == PpoPenaltyHparams(beta=0.3)


def test_compute_time_counts_each_run_once_and_sums_its_recorded_wall_time(tmp_path):
    import json

    from lad_ref.study import report
    from lad_ref.study.analysis import compute_time

    study, groups = sp.load_study(FULL)
    study.output_dir = str(tmp_path)
    headline = sp.plan(study, groups, ["headline"])
    for spec, wall in zip(headline[:3], (10.0, 20.0, 30.0)):  # main/grpo and main/lad-js runs: also the protocol's
        spec.folder(tmp_path).mkdir(parents=True)
        (spec.folder(tmp_path) / "study_time.json").write_text(json.dumps({"wall_s": wall}))
    c = compute_time(study, groups, list(groups))
    assert c["groups"]["headline"] == {"runs_planned": 32, "runs_timed": 3, "sum_wall_s": 60.0}
    assert c["groups"]["protocol"]["runs_timed"] == 3  # the same three folders, listed by both groups
    assert c["study"]["runs_timed"] == 3 and c["study"]["sum_wall_s"] == 60.0  # counted once in the whole study
    assert c["study"]["runs_planned"] == len(set(sp.plan(study, groups, list(groups))))
    assert "| whole study (each run once) |" in report.table("compute", {"compute": c})

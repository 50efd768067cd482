"""The study command: method names, layered run configs, the seed-major plan, paired bootstrap statistics,
and (slow) the FAST study end to end: pairing, resumption, toy_study.json and figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from lad_ref.llm.config import ConfigError, to_dict
from lad_ref.study import analysis as sa
from lad_ref.study import plan as sp
from lad_ref.study import runs as sr
from lad_ref.study.__main__ import main as study_main

ROOT = Path(__file__).resolve().parents[1]
FAST = ROOT / "llm" / "configs" / "study-fast.yaml"
FULL = ROOT / "llm" / "configs" / "study.yaml"


def test_comparisons_read_a_minus_b():
    assert sp.parse_comparison("lad(js) - grpo") == ("lad(js)", "grpo")
    with pytest.raises(ConfigError, match="'A - B'"):
        sp.parse_comparison("lad(js)-grpo")


def _entry(seeds, mean):
    return {"seeds": seeds, "avg_at_k": {"mean": mean}}


def test_carry_over_keeps_absent_or_larger_entries_of_the_same_protocol_only():
    protocol = {"base_config": "toy.yaml", "overrides": {"optim.epochs": 2}}
    previous = {"protocol": protocol, "seeds": list(range(8)),
                "paired": {"a - b": _entry(list(range(8)), 0.1), "c - b": _entry([0, 1], 0.3),
                           "old - b": _entry([0, 1, 2, 3], 0.5)},
                "methods": {}, "curves": {"start": [0.1]}, "brake": {}}
    fresh = {"protocol": dict(protocol), "seeds": [0, 1, 2, 3],
             "paired": {"a - b": _entry([0, 1, 2, 3], 0.2), "c - b": _entry([0, 1, 2, 3], 0.4),
                        "new - b": _entry([0, 1, 2, 3], 0.6)},
             "methods": {}, "curves": {}, "brake": {}}
    out = sa.carry_over(previous, json.loads(json.dumps(fresh)))
    assert out["paired"]["a - b"]["avg_at_k"]["mean"] == 0.1 and out["paired"]["a - b"]["carried_over"]  # 8 > 4 seeds
    assert out["paired"]["c - b"]["avg_at_k"]["mean"] == 0.4 and "carried_over" not in out["paired"]["c - b"]
    assert out["paired"]["old - b"]["carried_over"] and out["paired"]["new - b"]["avg_at_k"]["mean"] == 0.6
    assert out["curves"] == {"start": [0.1]} and out["seeds"] == list(range(8))
    other = {**previous, "protocol": {**protocol, "overrides": {"optim.epochs": 8}}}
    assert sa.carry_over(other, json.loads(json.dumps(fresh))) == fresh  # another protocol: nothing carried


def test_shipped_study_configs_load_and_every_run_config_validates(tmp_path):
    for path in (FULL, FAST):
        study, groups = sp.load_study(path)
        variants = sp.all_variants(groups)
        specs = sp.plan(study, groups, list(groups))
        for s in specs:
            sp.run_config(study, s, variants, tmp_path)  # raises ConfigError on any bad value
    study, groups = sp.load_study(FULL)
    assert len(groups["headline"].seeds) >= 8
    assert set(groups["eta"].methods) >= {f"lad(js,eta={e})" for e in (0.5, 2, 4, 8, 16)} | {"lad(js)"}
    from lad_ref.divergences import DIVERGENCE_NAMES  # every registered generator is in the divergence group

    assert {m for m in groups["divergence"].methods if m.startswith("lad(")} == {f"lad({d})" for d in DIVERGENCE_NAMES}


def test_run_config_layers_and_pairing_fields(tmp_path):
    study, groups = sp.load_study(FAST)
    variants = sp.all_variants(groups)
    a = sp.run_config(study, sp.RunSpec("main", "grpo", 1), variants, tmp_path)
    b = sp.run_config(study, sp.RunSpec("main", "lad(js)", 1), variants, tmp_path)
    c = sp.run_config(study, sp.RunSpec("k4", "lad(js)", 1), variants, tmp_path)
    assert (a.objective.name, b.objective.name, b.objective.lad.divergence) == ("grpo", "lad", "js")
    assert a.threads == b.threads == 1 and a.seed == 1
    assert a.optim.steps == study.overrides["optim.steps"]  # protocol over the base YAML
    assert c.optim.mini_batch_size == 16 and b.optim.mini_batch_size == 8  # variant over the protocol
    # the pairing: everything but the objective is the same, so the SFT start (keyed by this hash) is shared
    from lad_ref.llm.sft import sft_key

    assert sft_key(a) == sft_key(b) == sft_key(c)
    da, db = to_dict(a), to_dict(b)
    assert {k for k in da if da[k] != db[k]} == {"objective", "output_dir"}


def test_plan_is_seed_major_and_shares_runs_between_groups():
    study, groups = sp.load_study(FULL)
    specs = sp.plan(study, groups, ["headline", "divergence"])
    assert specs[:4] == [sp.RunSpec("main", "grpo", 0), sp.RunSpec("main", "lad(js)", 0),
                         sp.RunSpec("main", "grpo", 1), sp.RunSpec("main", "lad(js)", 1)]
    assert len(specs) == len(set(specs))  # the divergence group's grpo and lad(js) runs are the headline's
    from lad_ref.divergences import DIVERGENCE_NAMES

    assert len(specs) == 2 * len(study.seeds) + 4 * (len(DIVERGENCE_NAMES) - 1)  # lad(js) is the headline's


def test_bad_group_and_comparison_fail_before_work(tmp_path):
    bad = {"groups": {"g": {"methods": ["grpo"], "comparisons": ["lad(js) - grpo"]}}}
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match="not one of its methods"):
        sp.load_study(p)
    p.write_text(yaml.safe_dump({"groups": {"g": {"methods": ["grpo"], "sedes": [1]}}}))
    with pytest.raises(ConfigError, match="groups.g: unknown config key 'sedes'"):
        sp.load_study(p)


def test_paired_summary_interval_is_the_percentile_bootstrap_of_the_differences():
    d = [0.1, -0.2, 0.4, 0.05, 0.3, -0.1, 0.2, 0.15]
    s = sa.paired_summary([x + 1.0 for x in d], [1.0] * 8, 10_000, 0)
    lo, hi = s["ci95"]
    assert lo < np.mean(d) < hi
    assert sa.paired_summary([x + 1.0 for x in d], [1.0] * 8, 10_000, 0)["ci95"] == [lo, hi]  # fixed seed
    # the percentile interval of resampled means: close to the normal approximation for 8 seeds
    se = np.std(d, ddof=0) / np.sqrt(len(d))
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.2)
    wide = sa.paired_summary([10 * x for x in d], [0.0] * 8, 10_000, 0)["ci95"]
    assert wide[1] - wide[0] == pytest.approx(10 * (hi - lo), rel=1e-6)
    assert sa.paired_summary([0.3] * 8, [0.0] * 8, 1000, 0)["ci95"] == [pytest.approx(0.3), pytest.approx(0.3)]
    assert sa.paired_summary([1.0], [0.5], 1000, 0)["ci95"] is None  # one seed: no interval


def test_paired_summary_counts_wins_and_drops_nan():
    s = sa.paired_summary([1.0, 2.0, 3.0, float("nan")], [0.5, 2.5, 1.0, 1.0], 1000, 0)
    assert s["n"] == 3 and s["wins"] == 2 and s["losses"] == 1
    assert s["mean"] == pytest.approx((0.5 - 0.5 + 2.0) / 3)
    assert s["per_seed"] == [0.5, -0.5, 2.0]


def test_check_folder_refuses_a_changed_protocol(tmp_path):
    study, groups = sp.load_study(FAST)
    variants = sp.all_variants(groups)
    spec = sp.RunSpec("main", "grpo", 0)
    cfg = sp.run_config(study, spec, variants, tmp_path)
    run = spec.folder(tmp_path)
    run.mkdir(parents=True)
    from lad_ref.llm.config import save_yaml

    save_yaml(cfg, run / "config.yaml")
    sr.check_folder(cfg, run)  # same config: fine
    cfg.optim.lr = cfg.optim.lr * 2
    with pytest.raises(ConfigError, match="sections optim differ"):
        sr.check_folder(cfg, run)


@pytest.mark.slow
def test_fast_study_end_to_end(tmp_path):
    """FAST study, 2 jobs: paired runs share start and evaluation numbers; a rerun runs nothing; JSON and figures."""
    data = yaml.safe_load(FAST.read_text())
    data["output_dir"] = str(tmp_path / "runs")
    data["overrides"]["sft.cache_dir"] = str(tmp_path / "sft")
    cfg_path = tmp_path / "study.yaml"
    cfg_path.write_text(yaml.safe_dump(data))
    out_json, figs = tmp_path / "toy_study.json", tmp_path / "figs"
    argv = ["--config", str(cfg_path), "--jobs", "2", "--json", str(out_json), "--figures", str(figs)]
    assert study_main(argv) == 0
    result = json.loads(out_json.read_text())
    assert result["seeds"] == [0, 1]
    assert result["this_invocation"]["ran"] == 6
    root = tmp_path / "runs"

    # pairing: same SFT start, same start evaluation (same random numbers), same first rollout batch
    for seed in (0, 1):
        ga, la = root / "main" / "grpo" / f"seed{seed}", root / "main" / "lad-js" / f"seed{seed}"
        info = [json.loads((r / "run_info.json").read_text()) for r in (ga, la)]
        # each run links the SFT start into its own folder; both links come from one cached SFT
        assert info[0]["start"]["cache_path"] == info[1]["start"]["cache_path"]
        assert info[0]["start_policy"] == info[1]["start_policy"] == "start_policy"  # relative to the run
        assert (ga / "start_policy" / "model.safetensors").read_bytes() == \
            (la / "start_policy" / "model.safetensors").read_bytes()
        assert (ga / "start_samples.jsonl").read_text() == (la / "start_samples.jsonl").read_text()
        rows = [[json.loads(x) for x in (r / "metrics.jsonl").read_text().splitlines()] for r in (ga, la)]
        step1 = [next(x for x in rs if x["step"] == 1) for rs in rows]
        assert step1[0]["train/reward_mean"] == step1[1]["train/reward_mean"]
        assert "brake/log_ratio_q95" in step1[1] and "lad/weight_flip_frac" in step1[1] and "grpo/clipfrac" in step1[0]
        # the policy moved within rollout batches (log r != 0 after the first minibatch), and the logs show it
        assert max(x.get("brake/log_ratio_abs_max", 0.0) for x in rows[1]) > 0
    a = [json.loads((root / "main" / "grpo" / f"seed{s}" / "start_eval.json").read_text()) for s in (0, 1)]
    assert a[0] != a[1]  # different seeds: different starts

    # the paired statistics are the per-seed differences of the runs' own results
    e = result["paired"]["lad(js) - grpo"]
    assert e["seeds"] == [0, 1]
    for metric in ("avg_at_k", "pass_at_1", "pass_at_8", "distinct_correct", "correct_answer_entropy",
                   "correct_answer_kl_from_start", "policy_entropy"):
        assert metric in e, metric
    finals = {m: [json.loads((root / "main" / m / f"seed{s}" / "results.json").read_text())["final"] for s in (0, 1)]
              for m in ("grpo", "lad-js")}
    diffs = [finals["lad-js"][i]["distinct_correct"] - finals["grpo"][i]["distinct_correct"] for i in (0, 1)]
    assert e["distinct_correct"]["per_seed"] == pytest.approx(diffs)
    assert e["distinct_correct"]["mean"] == pytest.approx(np.mean(diffs))
    lo, hi = e["distinct_correct"]["ci95"]
    assert min(diffs) - 1e-12 <= lo <= e["distinct_correct"]["mean"] <= hi <= max(diffs) + 1e-12
    assert e["distinct_correct"]["wins"] == sum(d > 0 for d in diffs)
    assert len(result["curves"]["start"]) == 8 and set(result["curves"]) == {"start", "grpo", "lad(js)"}
    assert set(result["brake"]) >= {"lad(js) [k4]", "lad(js) [main]"}
    one = result["paired"]["lad(js) - grpo [k4]"]  # one seed: a difference, no interval
    assert one["seeds"] == [0] and one["distinct_correct"]["ci95"] is None
    assert one["pass_at_k_curve_diff"]["ci95"] is None and len(one["pass_at_k_curve_diff"]["mean"]) == 8
    for stem in ("toy_study_pass_at_k", "toy_study_forest", "toy_study_brake"):
        assert (figs / f"{stem}.png").stat().st_size > 0

    # resumable: a second invocation finds every run finished and reproduces the same statistics
    out2 = tmp_path / "again.json"
    assert study_main(["--config", str(cfg_path), "--jobs", "2", "--json", str(out2)]) == 0
    again = json.loads(out2.read_text())
    assert again["this_invocation"]["ran"] == 0
    assert again["paired"] == result["paired"]

"""The study's method grammar and the groups of issues 19 and 24 (llm/configs/study.yaml)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lad_ref.llm import study as st
from lad_ref.llm.config import ConfigError
from lad_ref.losses import PpoPenaltyHparams

FULL = Path(__file__).resolve().parents[1] / "llm" / "configs" / "study.yaml"


@pytest.mark.parametrize("method, want", [
    ("lad(js,tied=0)", {"objective.name": "lad", "objective.lad.divergence": "js", "objective.tied_loss_weight": 0.0}),
    ("grpo(tied=0)", {"objective.name": "grpo", "objective.tied_loss_weight": 0.0}),
    ("grpo(ds=1)", {"objective.name": "grpo", "rollout.dynamic_sampling": True}),
    ("lad(js,ds=1)", {"objective.name": "lad", "objective.lad.divergence": "js", "rollout.dynamic_sampling": True}),
    ("lad(js,gs=1)", {"objective.name": "lad", "objective.lad.divergence": "js", "logging.tied_grad_share": True}),
    ("lad(neyman)", {"objective.name": "lad", "objective.lad.divergence": "neyman"}),
    ("ppo_penalty", {"objective.name": "ppo_penalty"}),
    ("ppo_penalty(beta=0.3)", {"objective.name": "ppo_penalty", "objective.ppo_penalty.beta": 0.3}),
    ("ppo_penalty(beta=1,kl=k1,tied_only=true)", {
        "objective.name": "ppo_penalty", "objective.ppo_penalty.beta": 1.0,
        "objective.ppo_penalty.kl_estimator": "k1", "objective.ppo_penalty.tied_only": True}),
])
def test_method_grammar(method, want):
    assert st.method_overrides(method) == want


@pytest.mark.parametrize("method, match", [
    ("grpo(beta=1)", r"option 'beta=1'; valid options are tied=<value>, ds=<value>, gs=<value>\."),
    ("ppo_penalty(kl=k4)", r"kl='k4'; valid estimators are k1, k2, k3\."),
    ("ppo_penalty(eta=1)", r"valid options are beta=<value>, kl=<value>, tied_only=<value>, tied="),
    ("grpo(ds=2)", r"ds='2'; valid values are 1, 0, true, false\."),
    ("lad(js,tied=x)", r"tied='x', which is not a number"),
    ("lad", r"unknown method 'lad'; valid methods are grpo, .*ppo_penalty"),
    ("lad()", r"names divergence ''; valid divergences are kl, rkl, jf, tv, hd, js, neyman"),
    ("ppo2(beta=1)", r"unknown method 'ppo2\(beta=1\)'"),
])
def test_method_grammar_errors(method, match):
    with pytest.raises(ConfigError, match=match):
        st.method_overrides(method)


def test_issue_groups_and_their_run_configs(tmp_path):
    study, groups = st.load_study(FULL)
    assert set(groups["control"].methods) >= {"grpo", "lad(js)", "lad(js,tied=0)"}
    assert set(groups["checks"].methods) >= {"grpo(tied=0)", "lad(js,gs=1)"} and groups["checks"].seeds == [0]
    assert set(groups["dynamic"].methods) >= {"grpo(ds=1)", "lad(js,ds=1)"}
    assert set(groups["penalty"].methods) >= {f"ppo_penalty(beta={b})" for b in (0.1, 1, 10)}
    assert "lad(js,eta=0.25)" in groups["eta"].methods and "lad(neyman)" in groups["divergence"].methods
    for g in ("control", "dynamic", "penalty"):
        assert groups[g].seeds == list(range(8))
    variants = st.all_variants(groups)
    cfg = {m: st.run_config(study, st.RunSpec("main", m, 0), variants, tmp_path)
           for m in ("lad(js,tied=0)", "grpo(ds=1)", "lad(js,gs=1)", "ppo_penalty(beta=0.3)")}
    assert cfg["lad(js,tied=0)"].objective.tied_loss_weight == 0.0
    assert cfg["grpo(ds=1)"].rollout.dynamic_sampling is True
    assert cfg["lad(js,gs=1)"].logging.tied_grad_share is True
    assert cfg["ppo_penalty(beta=0.3)"].objective.ppo_penalty == PpoPenaltyHparams(beta=0.3)

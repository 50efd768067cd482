"""The method grammar (lad_ref/methods.py): one parser for the study, the regime bandit, the report and the colours."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from lad_ref.config_io import ConfigError, load_yaml
from lad_ref.losses import register_objective, unregister_objective
from lad_ref.methods import Method, method_slug, parse_method
from lad_ref.style import METHOD_COLORS, method_color

STUDY = Path(__file__).resolve().parents[1] / "llm" / "configs" / "study.yaml"


def _old_slug(method: str) -> str:
    """The study's slug function before the grammar moved here (run folders in existing study outputs use it)."""
    return method.replace("(", "-").replace(")", "").replace(",", "-").replace("=", "").replace(" ", "")


def study_labels() -> list[str]:
    data = load_yaml(STUDY)
    labels = {m for g in data["groups"].values() for m in g["methods"]} | set(data.get("curve_methods", []))
    return sorted(labels)


@pytest.mark.parametrize("label", study_labels())
def test_every_study_label_round_trips_and_keeps_its_slug(label):
    m = parse_method(label)
    assert m.slug == _old_slug(label) == method_slug(label)
    assert parse_method(m.label) == m and m.label == label.replace(" ", "")
    assert hash(parse_method(m.label)) == hash(m)


@pytest.mark.parametrize("label, slug", [
    ("lad(js)", "lad-js"), ("lad(js,eta=0.25)", "lad-js-eta0.25"), ("ppo_penalty(beta=0.1)", "ppo_penalty-beta0.1"),
    ("lad(js,tied=0)", "lad-js-tied0"), ("grpo(ds=1)", "grpo-ds1"), ("grpo", "grpo"),
])
def test_slugs(label, slug):
    assert parse_method(label).slug == slug


@pytest.mark.parametrize("method, want", [
    ("lad(js,tied=0)", {"objective.name": "lad", "objective.lad.divergence": "js", "objective.tied_loss_weight": 0.0}),
    ("grpo(tied=0)", {"objective.name": "grpo", "objective.tied_loss_weight": 0.0}),
    ("grpo(ds=1)", {"objective.name": "grpo", "rollout.dynamic_sampling": True}),
    ("lad(js,ds=1)", {"objective.name": "lad", "objective.lad.divergence": "js", "rollout.dynamic_sampling": True}),
    ("lad(js,gs=1)", {"objective.name": "lad", "objective.lad.divergence": "js", "logging.tied_grad_share": True}),
    ("lad(neyman)", {"objective.name": "lad", "objective.lad.divergence": "neyman"}),
    ("lad(kl,eta=2,level=sequence)", {"objective.name": "lad", "objective.lad.divergence": "kl",
                                      "objective.lad.eta": 2.0, "objective.lad.level": "sequence"}),
    ("ppo_penalty", {"objective.name": "ppo_penalty"}),
    ("ppo_penalty(beta=0.3)", {"objective.name": "ppo_penalty", "objective.ppo_penalty.beta": 0.3}),
    ("ppo_penalty(beta=1,kl=k1,tied_only=true)", {
        "objective.name": "ppo_penalty", "objective.ppo_penalty.beta": 1.0,
        "objective.ppo_penalty.kl_estimator": "k1", "objective.ppo_penalty.tied_only": True}),
    ("grpo(clip_ratio_high=0.28,clip_ratio_c=none)", {"objective.name": "grpo", "objective.grpo.clip_ratio_high": 0.28,
                                                      "objective.grpo.clip_ratio_c": None}),
])
def test_trainer_overrides(method, want):
    got = parse_method(method).trainer_overrides()
    assert got == want and all(type(got[k]) is type(want[k]) for k in want)


def test_values_options_and_the_validated_hyperparameters():
    m = parse_method(" lad( hd , eta = 2 , tied=0.5) ")
    assert (m.objective, m.values, m.options) == ("lad", {"divergence": "hd", "eta": 2.0}, {"tied": 0.5})
    assert m.label == "lad(hd,eta=2,tied=0.5)" and m.family == "lad(hd)" and m.divergence == "hd"
    assert (m.hp.divergence, m.hp.eta, m.hp.level) == ("hd", 2.0, "token")
    assert parse_method("lad(divergence=hd,eta=2.0,tied=0.5)") == m  # one method, other spellings
    assert parse_method("lad(js)").kwargs(eta=0.5) == {"divergence": "js", "eta": 0.5}
    assert parse_method("grpo").kwargs(eta=0.5) == {}  # grpo has no eta
    assert parse_method("lad(js)").key(eta=1.0) == parse_method("lad(js,eta=1)").key(eta=1.0)
    assert isinstance(m, Method)


@pytest.mark.parametrize("method, match", [
    ("grpo(beta=1)", r"method 'grpo\(beta=1\)' has option 'beta=1'; valid options are clip_ratio_low=<value>, "
                     r"clip_ratio_high=<value>, clip_ratio_c=<value>, tied=<value>, ds=<value>, gs=<value>\."),
    ("ppo_penalty(kl=k4)", r"method 'ppo_penalty\(kl=k4\)': unknown kl_estimator 'k4'; valid choices are"),
    ("ppo_penalty(eta=1)", r"has option 'eta=1'; valid options are .*beta=<value>, kl_estimator=<value>, "
                           r"tied_only=<value>, kl=<value>, tied="),
    ("grpo(ds=2)", r"ds='2'; valid values are 1, 0, true, false\."),
    ("lad(js,tied=x)", r"tied='x', which is not a number"),
    ("lad", r"method 'lad' names no divergence; write lad\(<divergence>\) with one of kl, rkl, jf, tv, hd, js"),
    ("lad()", r"method 'lad\(\)' names no divergence"),
    ("lad(chi2)", r"method 'lad\(chi2\)': unknown divergence 'chi2'; valid choices are kl, rkl"),
    ("ppo2(beta=1)", r"unknown method 'ppo2\(beta=1\)'; valid objectives are .*grpo"),
    ("lad(js", r"is not of the form name or name\(arg,key=value,...\)"),
    ("lad(js,eta=1,eta=2)", r"sets 'eta' twice"),
    ("lad(js,eta=0)", r"method 'lad\(js,eta=0\)': eta must be a finite number > 0"),
    ("grpo(js)", r"has positional argument 'js'; only the first argument of an objective with a divergence"),
])
def test_errors_are_one_sentence_naming_the_label_and_the_choices(method, match):
    with pytest.raises(ConfigError, match=match):
        parse_method(method)


def test_choices_and_options_can_be_restricted():
    with pytest.raises(ValueError, match=r"unknown method 'flowrl'; valid objectives are grpo, lad\."):
        parse_method("flowrl", ["grpo", "lad"])
    with pytest.raises(ValueError, match=r"has option 'tied=0'; valid options are divergence=<value>, eta=<value>, "
                                         r"level=<value>\."):
        parse_method("lad(js,tied=0)", options=False)


def test_existing_labels_keep_their_colours_and_variants_stay_grey():
    for label, colour in METHOD_COLORS.items():
        assert method_color(label) == colour
    for label in ("lad(js,eta=2)", "ppo_penalty(beta=1)", "grpo(ds=1)", "start (SFT)", "lad(js) [k4]", "unknown"):
        assert method_color(label) == "#999999", label


@dataclass
class _MineHparams:
    alpha: float = 1.0


def test_an_objective_and_a_divergence_registered_now_parse_and_get_a_colour(request):
    from lad_ref.divergences import DIVERGENCES, Divergence, register_divergence, unregister_divergence

    @register_objective("mine_test", hparams=_MineHparams)
    def mine_loss(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode="token-mean", *, hp=None,
                  weights=None, agg_kwargs=None, compute_metrics=True, check=True):
        raise NotImplementedError

    try:
        m = parse_method("mine_test(alpha=2,tied=0)")
        assert m.trainer_overrides() == {"objective.name": "mine_test", "objective.mine_test.alpha": 2.0,
                                         "objective.tied_loss_weight": 0.0}
        assert m.slug == "mine_test-alpha2-tied0"
        c = method_color("mine_test")
        assert c.startswith("#") and c != "#999999" and method_color("mine_test(alpha=2)") == c
    finally:
        unregister_objective("mine_test")

    js = DIVERGENCES["js"]
    register_divergence(Divergence("chi_test", "a test divergence", js.f, js.f_prime))
    request.addfinalizer(lambda: unregister_divergence("chi_test"))
    m = parse_method("lad(chi_test,eta=2)")
    assert m.divergence == "chi_test" and m.slug == "lad-chi_test-eta2"
    c = method_color("lad(chi_test)")
    assert c != "#999999" and method_color("lad_theory(chi_test)") == c == method_color("lad(chi_test,eta=2)")

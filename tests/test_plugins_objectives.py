"""Additions from outside lad_ref (issue 20's acceptance): a divergence and an objective that needs an
extra input, each one file under tests/plugins/ that registers itself, with no edit to lad_ref/, run
through the bandit, the compact trainer (config file and command-line flags), the TRL adapter and the
verl adapter as applies.

Each plugin is imported fresh by a fixture and unregistered afterwards, so the rest of the suite sees
only the shipped registry.
"""

import importlib
import json
import sys
from pathlib import Path

import pytest
import torch
from test_llm_train import fast_args

import lad_ref.llm.train as train_mod
from lad_ref.bandit.train import BanditRun, train_bandit
from lad_ref.divergences import divergence_names, unregister_divergence
from lad_ref.losses import (
    LadHparams,
    get_loss,
    get_objective,
    lad_loss,
    objective_names,
    unregister_objective,
)

ROOT = Path(__file__).resolve().parents[1]


def _plugin(module: str, unregister):
    """Import ``module`` fresh (its registration runs), yield it, then unregister it."""
    unregister()
    sys.modules.pop(module, None)
    yield importlib.import_module(module)
    unregister()
    sys.modules.pop(module, None)


@pytest.fixture
def pearson():
    yield from _plugin("plugins.pearson_divergence", lambda: unregister_divergence("pearson"))


@pytest.fixture
def entropy_pg():
    yield from _plugin("plugins.entropy_pg", lambda: unregister_objective("entropy_pg"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("sft_cache")


def batch(seed=0, b=6, t=5):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(b, t, generator=g) * 3
    lp = (old + 0.3 * torch.randn(b, t, generator=g)).requires_grad_(True)
    adv = torch.randn(b, 1, generator=g).expand(b, t).contiguous()
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[0, 3:] = False
    return old, lp, adv, mask


# ---------------------------------------------------------------------------------- a divergence


def test_divergence_plugin_is_registered_and_its_gradient_is_r_fprime_u(pearson):
    assert "pearson" in divergence_names()
    old, lp, adv, mask = batch()
    loss, _ = lad_loss(old, lp, adv, mask, "token-sum", hp=LadHparams(divergence="pearson", eta=2.0))
    (grad,) = torch.autograd.grad(loss, lp)
    log_r = (lp - old).detach()
    u = torch.exp(log_r - adv / 2.0)
    want = torch.where(mask, torch.exp(log_r) * 2.0 * (u - 1.0), 0.0)  # r f'(u), f(u) = (u - 1)^2
    torch.testing.assert_close(grad, want, rtol=1e-5, atol=1e-6)


def test_divergence_plugin_reaches_the_target_on_the_bandit(pearson):
    (run,) = train_bandit([BanditRun("lad", "pearson")], steps=2000, progress=False)
    assert run["label"] == "lad(pearson)" and run["tv_to_target"] < 0.02 and run["modes_recovered"] == 3


def test_unknown_divergence_lists_the_plugin(pearson):
    with pytest.raises(ValueError, match=r"unknown divergence 'pearsn' \(did you mean 'pearson'\?\); valid choices are .*neyman, pearson"):
        LadHparams(divergence="pearsn")


def test_divergence_plugin_in_the_compact_trainer_cli_flags_and_aliases(pearson, cache, tmp_path):
    runs = {}
    for how, extra in (("cli", ["--objective.lad.divergence", "pearson", "--objective.lad.eta", "2"]),
                       ("alias", ["--divergence", "pearson", "--eta", "2"])):
        out = tmp_path / how
        assert train_mod.main(fast_args(cache, out, "--steps", "2", *extra)) == 0
        saved = train_mod.from_dict(train_mod.load_yaml(out / "config.yaml"))
        assert saved.objective.lad == LadHparams(divergence="pearson", eta=2.0)
        runs[how] = json.loads((out / "results.json").read_text())
    assert runs["cli"] == runs["alias"]  # the same run, bit for bit


def test_divergence_plugin_in_a_config_file(pearson, cache, tmp_path):
    import yaml

    toy = yaml.safe_load((ROOT / "llm" / "configs" / "toy.yaml").read_text())
    toy.setdefault("objective", {}).setdefault("lad", {}).update({"divergence": "pearson", "eta": 2.0})
    cfg_file = tmp_path / "pearson.yaml"
    cfg_file.write_text(yaml.safe_dump(toy))
    args = fast_args(cache, tmp_path / "run", "--steps", "2")
    args[args.index("--config") + 1] = str(cfg_file)
    assert train_mod.main(args) == 0
    saved = train_mod.from_dict(train_mod.load_yaml(tmp_path / "run" / "config.yaml"))
    assert saved.objective.lad.divergence == "pearson"


def test_divergence_plugin_in_verl(pearson):
    lad_verl = pytest.importorskip("lad_ref.integrations.verl")
    from verl.trainer.ppo.core_algos import get_policy_loss_fn

    old, lp, adv, mask = batch(seed=1)
    cfg = {"policy_loss": {"loss_mode": "lad", "divergence": "pearson", "eta": 2.0}, "global_batch_info": {}}
    got, metrics = get_policy_loss_fn("lad")(old, lp, adv, mask, "token-mean", cfg, None)
    want, _ = lad_loss(old, lp, adv, mask, "token-mean", hp=LadHparams(divergence="pearson", eta=2.0))
    torch.testing.assert_close(got, want)
    assert lad_verl.LadPolicyLossConfig(divergence="pearson", eta=2.0).divergence == "pearson"
    assert "actor/lad/weight_mean" in metrics


# ------------------------------------------------------------- an objective with an extra input


def test_objective_plugin_gets_its_entropy_on_the_bandit(entropy_pg, monkeypatch):
    import dataclasses

    import lad_ref.losses as losses

    spec = losses.OBJECTIVES["entropy_pg"]
    seen = []

    def spy(*a, **k):
        seen.append((type(k["hp"]).__name__, k["hp"].coef, tuple(k["entropy"].shape)))
        return spec.loss(*a, **k)

    monkeypatch.setitem(losses.OBJECTIVES, "entropy_pg", dataclasses.replace(spec, loss=spy))
    (run,) = train_bandit([BanditRun("entropy_pg", hparams={"coef": 0.5})], steps=3, progress=False)
    assert seen[0] == ("EntropyPGHparams", 0.5, (run["probs"].__len__(), 1))
    assert run["label"] == "entropy_pg" and run["hparams"] == {"coef": 0.5}


def test_objective_plugin_in_the_compact_trainer_cli(entropy_pg, cache, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_mod.main(fast_args(cache, out, "--steps", "2", "--objective", "entropy_pg",
                                    "--objective.entropy_pg.coef", "0.05")) == 0
    saved = train_mod.from_dict(train_mod.load_yaml(out / "config.yaml"))
    assert saved.objective.name == "entropy_pg" and saved.objective.entropy_pg.coef == 0.05
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("entropy_pg/entropy_mean" in r for r in rows)  # the trainer supplied the entropy
    capsys.readouterr()
    # a bad value: one sentence before any work, no run folder
    assert train_mod.main(fast_args(cache, tmp_path / "bad", "--objective", "entropy_pg",
                                    "--objective.entropy_pg.coef", "-1")) == 2
    assert "objective.entropy_pg: coef must be a finite number >= 0, got -1" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_objective_plugin_in_trl(entropy_pg, tmp_path):
    pytest.importorskip("trl")
    import dataclasses

    from datasets import Dataset

    from lad_ref.integrations import trl as lad_trl

    config_cls = lad_trl.lad_grpo_config_class()  # derived from the registry as it is now: has `coef`
    assert "coef" in {f.name for f in dataclasses.fields(config_cls)}
    from lad_ref.llm.config import TinyModelConfig
    from lad_ref.llm.model import materialise_tiny

    model = str(materialise_tiny(TinyModelConfig(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2,
                                                 intermediate_size=64, max_position_embeddings=64),
                                 tmp_path / "tiny", seed=0))
    args = config_cls(output_dir=str(tmp_path / "out"), objective="entropy_pg", coef=0.2, per_device_train_batch_size=4,
                      num_generations=4, max_completion_length=6, max_steps=1, learning_rate=0.1, use_cpu=True,
                      report_to="none", save_strategy="no", seed=0, dataloader_num_workers=0)
    trainer = lad_trl.LadGRPOTrainer(model=model, args=args, train_dataset=Dataset.from_dict({"prompt": ["ab", "cd"] * 4}),
                                     reward_funcs=lambda completions, **kw: [len(c) % 3 / 3 for c in completions])
    trainer.train()
    kwargs = trainer.objective_kwargs(torch.ones(2, 3))
    assert kwargs["hp"] == get_objective("entropy_pg").hparams(coef=0.2) and kwargs["entropy"].shape == (2, 3)
    with pytest.raises(ValueError, match="coef=0.3 applies to objective 'entropy_pg' only"):
        config_cls(output_dir=str(tmp_path / "o2"), objective="grpo", coef=0.3, use_cpu=True, report_to="none")


def test_objective_plugin_is_refused_by_verl_with_the_reason(entropy_pg):
    lad_verl = pytest.importorskip("lad_ref.integrations.verl")
    assert "entropy_pg" in objective_names() and "entropy_pg" not in lad_verl.verl_objectives()
    with pytest.raises(ValueError, match="cannot be a verl policy loss: it needs entropy"):
        lad_verl.policy_loss_fn("entropy_pg")


def test_registry_is_shipped_only_outside_the_fixtures():
    assert "entropy_pg" not in objective_names() and "pearson" not in divergence_names()
    assert get_loss("lad") is lad_loss


def test_plugins_reach_the_trainer_cli_by_module_name():
    """A fresh process: --plugins imports the modules before the schema is built, so the plugin objective has its
    --objective.entropy_pg.coef flag (in --help and in the resolved config) and the plugin divergence is valid."""
    import os
    import subprocess

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}
    base = [sys.executable, "-m", "lad_ref.llm.train", "--plugins", "[plugins.pearson_divergence, plugins.entropy_pg]"]
    help_text = subprocess.run([*base, "--help"], capture_output=True, text=True, env=env, check=True).stdout
    assert "--objective.entropy_pg.coef" in help_text
    out = subprocess.run([*base, "--config", str(ROOT / "llm" / "configs" / "toy.yaml"), "--output-dir", "unused",
                          "--objective", "entropy_pg", "--objective.entropy_pg.coef", "0.3", "--divergence", "pearson",
                          "--print-config"], capture_output=True, text=True, env=env, check=True).stdout
    import yaml

    cfg = yaml.safe_load(out)
    assert cfg["objective"]["entropy_pg"] == {"coef": 0.3} and cfg["objective"]["lad"]["divergence"] == "pearson"
    bad = subprocess.run([*base[:3], "--config", str(ROOT / "llm" / "configs" / "toy.yaml"), "--output-dir", "unused",
                          "--objective", "entropy_pg"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "unknown objective.name 'entropy_pg'" in bad.stderr  # without the plugin


def test_divergence_plugin_in_the_regime_bandit(pearson):
    """The regime bandit's labels parse through lad_ref.methods: lad(pearson) runs beside lad(js), and the plugin's
    loss is the one called (a different generator gives a different policy)."""
    from lad_ref.bandit.regime import RegimeConfig, run_sweep

    cfg = RegimeConfig(n_arms=20, n_correct=5, group_size=4, prompts_per_rollout=4, rollouts=20, lr=0.05,
                       objectives=("lad(js)", "lad(pearson)"), seeds=(0, 1), n_boot=200, steps_per_rollout=(4,))
    record = run_sweep(cfg, progress=False)
    rows = {r["objective"]: r for r in record["rows"]}
    assert set(rows) == {"lad(js)", "lad(pearson)"}
    assert rows["lad(js)"]["eff_correct"] != rows["lad(pearson)"]["eff_correct"]

"""The verl adapter: ``lad`` in verl 0.9.1's policy-loss registry equals lad_ref.losses.lad_loss.

Skips cleanly without the ``[verl]`` extra. Run with ``pytest -m verl`` or ``pytest -k verl``.
"""

import importlib.metadata
import os
import subprocess
import sys
import textwrap

import pytest
import torch

pytest.importorskip("verl.trainer.ppo.core_algos", reason="needs the [verl] extra (verl==0.9.1)")

from verl.trainer.ppo.core_algos import agg_loss, get_policy_loss_fn  # noqa: E402
from verl.workers.config import ActorConfig, PolicyLossConfig  # noqa: E402

import lad_ref.integrations.verl as lad_verl  # noqa: E402
from lad_ref.divergences import get_divergence  # noqa: E402
from lad_ref.losses import LadHparams, lad_loss  # noqa: E402

pytestmark = pytest.mark.verl

FOUR_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def batch(seed=0, b=5, t=7):
    """verl-shaped tensors: (B, T) advantages broadcast over tokens, a bool mask, IS weights."""
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(b, t, generator=g) * 3 - 0.1
    lp = (old + 0.3 * torch.randn(b, t, generator=g)).requires_grad_(True)
    adv = torch.randn(b, 1, generator=g).expand(b, t).contiguous()
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[0, 5:] = False
    mask[3, 2:] = False
    is_w = 0.5 + torch.rand(b, t, generator=g)
    return old, lp, adv, mask, is_w


def actor_config(policy_loss, global_batch_info=None):
    cfg = ActorConfig(strategy="fsdp", rollout_n=1, ppo_micro_batch_size_per_gpu=1, policy_loss=policy_loss)
    if global_batch_info:
        cfg.global_batch_info.update(global_batch_info)  # what verl's ppo_loss does before each call
    return cfg


def call(fn, old, lp, adv, mask, mode, cfg, is_w):
    # verl calls registered losses by keyword (verl/workers/utils/losses.py::ppo_loss)
    return fn(
        old_log_prob=old,
        log_prob=lp,
        advantages=adv,
        response_mask=mask,
        loss_agg_mode=mode,
        config=cfg,
        rollout_is_weights=is_w,
    )


def test_registered_under_lad():
    assert get_policy_loss_fn("lad") is lad_verl.compute_policy_loss_lad


@pytest.mark.parametrize("mode", FOUR_MODES)
@pytest.mark.parametrize(
    "hp",
    [
        {},  # verl's own PolicyLossConfig(loss_mode="lad"): no LAD fields -> lad_ref defaults
        {"divergence": "hd", "eta": 0.5, "level": "token"},
        {"divergence": "tv", "eta": 4.0, "level": "sequence"},
    ],
    ids=["defaults", "hd-0.5", "tv-4-seq"],
)
@pytest.mark.parametrize("global_info", [False, True], ids=["local", "global"])
def test_verl_lookup_equals_lad_ref(mode, hp, global_info):
    old, lp, adv, mask, is_w = batch()
    policy_loss = lad_verl.LadPolicyLossConfig(**hp) if hp else PolicyLossConfig(loss_mode="lad")
    info = (
        {"dp_size": 2, "batch_num_tokens": 40, "global_batch_size": 8, "loss_scale_factor": 10}
        if global_info
        else {}
    )
    cfg = actor_config(policy_loss, info)

    loss, metrics = call(get_policy_loss_fn(cfg.policy_loss.loss_mode), old, lp, adv, mask, mode, cfg, is_w)
    (grad,) = torch.autograd.grad(loss, lp)

    lp2 = lp.detach().clone().requires_grad_(True)
    full_hp = {"divergence": "js", "eta": 1.0, "level": "token", **hp}
    want, want_metrics = lad_loss(old, lp2, adv, mask, mode, weights=is_w, agg_kwargs=info, hp=LadHparams(**full_hp))
    (want_grad,) = torch.autograd.grad(want, lp2)

    torch.testing.assert_close(loss, want, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(grad, want_grad, rtol=1e-6, atol=1e-8)
    assert set(metrics) == {f"actor/{k}" for k in want_metrics} | {"actor/ppo_kl"}
    assert all(isinstance(v, float) for v in metrics.values())
    for k, v in want_metrics.items():
        assert metrics[f"actor/{k}"] == pytest.approx(v)


@pytest.mark.parametrize("mode", FOUR_MODES)
def test_aggregation_matches_verl_agg_loss(mode):
    """Independent of lad_ref.aggregate: the per-token LAD loss reduced by verl's own agg_loss."""
    old, lp, adv, mask, is_w = batch(seed=3)
    info = {"dp_size": 4, "batch_num_tokens": 55, "global_batch_size": 12, "loss_scale_factor": None}
    cfg = actor_config(lad_verl.LadPolicyLossConfig(divergence="jf", eta=2.0), info)
    loss, _ = call(get_policy_loss_fn("lad"), old, lp, adv, mask, mode, cfg, is_w)

    div = get_divergence("jf")
    a = adv / 2.0
    loss_mat = torch.exp(a) * div.f((lp - old) - a) * is_w
    want = agg_loss(loss_mat=loss_mat, loss_mask=mask, loss_agg_mode=mode, **info)
    torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-6)


def test_hparams_read_from_attributes_or_dict_keys():
    old, lp, adv, mask, _ = batch(seed=1)
    want, _ = lad_loss(old, lp, adv, mask, "token-mean", hp=LadHparams(divergence="rkl", eta=2.0))
    as_dict = {"policy_loss": {"loss_mode": "lad", "divergence": "rkl", "eta": 2.0}, "global_batch_info": {}}
    got, _ = call(get_policy_loss_fn("lad"), old, lp, adv, mask, "token-mean", as_dict, None)
    torch.testing.assert_close(got, want)
    # no config at all -> lad_ref defaults and local aggregation
    got_none, _ = call(get_policy_loss_fn("lad"), old, lp, adv, mask, "token-mean", None, None)
    torch.testing.assert_close(got_none, lad_loss(old, lp, adv, mask, "token-mean")[0])
    assert lad_verl.hp_from_config("lad", {"policy_loss": {"eta": None}}) == LadHparams()


def test_bad_hparams_fail_clearly():
    with pytest.raises(ValueError, match=r"policy_loss: unknown divergence 'kl2' \(did you mean 'kl'\?\); valid choices are"):
        lad_verl.LadPolicyLossConfig(divergence="kl2")
    with pytest.raises(ValueError, match="eta must be a finite number > 0"):
        lad_verl.hp_from_config("lad", {"policy_loss": {"eta": 0.0}})
    with pytest.raises(ValueError, match="policy_loss: unknown level 'batch'"):
        lad_verl.hp_from_config("lad", {"policy_loss": {"level": "batch"}})


def test_policy_loss_config_fields_are_lad_hparams():
    """One set of names: verl's LadPolicyLossConfig has LadHparams' fields, defaults and checks (derived)."""
    import dataclasses

    ours = {f.name: (f.type, f.default) for f in dataclasses.fields(lad_verl.LadPolicyLossConfig)}
    for f in dataclasses.fields(LadHparams):
        assert ours[f.name] == (f.type, f.default)
    assert issubclass(lad_verl.LadPolicyLossConfig, PolicyLossConfig)


def test_hydra_target_instantiates_lad_fields():
    """What verl does with actor_rollout_ref.actor.policy_loss (omega_conf_to_dataclass -> hydra instantiate)."""
    from omegaconf import OmegaConf
    from verl.utils.config import omega_conf_to_dataclass

    base = {"loss_mode": "lad", "divergence": "tv", "eta": 4}
    ours = omega_conf_to_dataclass(
        OmegaConf.create({"_target_": "lad_ref.integrations.verl.LadPolicyLossConfig", **base})
    )
    assert isinstance(ours, PolicyLossConfig)
    assert lad_verl.hp_from_config("lad", {"policy_loss": ours}) == LadHparams(divergence="tv", eta=4)
    # verl's own target rejects the extra keys: this is why the recipes override _target_
    with pytest.raises(Exception, match="divergence"):
        omega_conf_to_dataclass(
            OmegaConf.create({"_target_": "verl.workers.config.PolicyLossConfig", **base})
        )


def test_entry_point_discoverable():
    eps = importlib.metadata.entry_points(group="verl.plugins")
    ours = [ep for ep in eps if ep.name == "lad_ref"]
    assert len(ours) == 1, f"lad_ref's verl.plugins entry point not found among {[ep.name for ep in eps]}"
    assert ours[0].value == "lad_ref.integrations.verl"
    assert ours[0].load() is lad_verl


def _fresh_python(code, **env):
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **env}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=REPO,
        timeout=300,
    )


@pytest.mark.parametrize(
    "env",
    [
        {"VERL_USE_EXTERNAL_PLUGINS": "auto"},  # the entry point (verl's default)
        {"VERL_USE_EXTERNAL_PLUGINS": "none", "VERL_USE_EXTERNAL_MODULES": "lad_ref.integrations.verl"},
    ],
    ids=["entry-point", "external-modules"],
)
def test_import_verl_alone_registers_lad(env):
    """A fresh process that only imports verl (as a Ray worker does) can look up 'lad'."""
    proc = _fresh_python(
        """
        import sys
        import verl
        from verl.trainer.ppo.core_algos import get_policy_loss_fn
        fn = get_policy_loss_fn("lad")
        print(fn.__module__)
        """,
        **env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "lad_ref.integrations.verl"


def test_module_imports_without_verl():
    proc = _fresh_python(
        """
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "verl" or name.startswith("verl."):
                    raise ModuleNotFoundError(f"No module named {name!r}")
                return None

        sys.meta_path.insert(0, Block())
        import lad_ref.integrations.verl as m
        assert not hasattr(m, "LadPolicyLossConfig")
        try:
            m.register()
        except ImportError as e:
            assert '.[verl]' in str(e), str(e)
            print("ok")
        """
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ok"

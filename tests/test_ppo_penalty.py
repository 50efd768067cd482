"""The PPO-penalty baseline (issue 24): GRPO's clipped surrogate plus beta * KL(pi_theta || pi_old) estimate.

* its gradient is the closed form -A r + beta * k'(log r) per token (inside the clip range);
* at r == 1 the penalty's gradient is 0 for k2 / k3, so one update per rollout batch is GRPO's update
  bit for bit; k1's gradient is beta at every r;
* the estimators equal verl's ``kl_penalty`` on random inputs, and the loss equals verl's actor
  composition (policy loss + beta * aggregated KL) with pi_ref := pi_old;
* tied_only penalises exactly the tokens with advantage 0 (the tied groups' responses).
"""

from __future__ import annotations

import pytest
import torch

from lad_ref.losses import (
    AGG_MODES,
    KL_ESTIMATORS,
    PpoPenaltyHparams,
    aggregate,
    get_objective,
    grpo_loss,
    kl_penalty,
    ppo_penalty_loss,
)


def batch(seed=0, b=6, t=5, spread=0.1, tied_rows=(1, 4)):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(b, t, generator=g) * 2.0
    lp = old + spread * torch.randn(b, t, generator=g)
    adv = torch.randn(b, 1, generator=g)
    adv[list(tied_rows)] = 0.0
    mask = torch.ones(b, t)
    mask[2, 3:] = 0
    return old, lp, adv, mask


K_GRAD = {  # d k / d log r, x = log r
    "k1": lambda x: torch.ones_like(x),
    "k2": lambda x: x,
    "k3": lambda x: 1.0 - torch.exp(-x),
}


@pytest.mark.parametrize("tied_only", [False, True])
@pytest.mark.parametrize("kl", ["k1", "k2", "k3"])
def test_gradient_is_the_closed_form(kl, tied_only):
    old, lp, adv, mask = batch()  # |log r| small: no ratio clipped
    lp = lp.requires_grad_(True)
    beta = 0.7
    loss, metrics = ppo_penalty_loss(
        old, lp, adv, mask, "token-sum", hp=PpoPenaltyHparams(beta=beta, kl_estimator=kl, tied_only=tied_only))
    assert metrics["ppo_penalty/clipfrac"] == 0.0
    (grad,) = torch.autograd.grad(loss, lp)
    x = (lp - old).detach()
    pen = beta * K_GRAD[kl](x)
    if tied_only:
        pen = pen * (adv == 0)
    want = (-adv * torch.exp(x) + pen) * mask
    torch.testing.assert_close(grad, want, rtol=1e-6, atol=1e-7)
    # the penalty did act (the test can fail): with tied_only the untied rows get GRPO's gradient alone
    assert not torch.allclose(grad, -adv * torch.exp(x) * mask)


@pytest.mark.parametrize("mode", AGG_MODES)
@pytest.mark.parametrize("kl", ["k2", "k3"])
@pytest.mark.parametrize("tied_only", [False, True])
def test_at_r_equal_1_it_is_grpo_bit_for_bit(kl, mode, tied_only):
    old, _, adv, mask = batch()
    outs = []
    penalty = PpoPenaltyHparams(beta=3.0, kl_estimator=kl, tied_only=tied_only)
    for fn, hp in ((grpo_loss, None), (ppo_penalty_loss, penalty)):
        lp = old.clone().requires_grad_(True)
        loss, _ = fn(old, lp, adv, mask, mode, hp=hp)
        outs.append((loss.detach(), torch.autograd.grad(loss, lp)[0]))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


def test_k1_gradient_at_r_equal_1_is_beta():
    old, _, adv, mask = batch()
    lp = old.clone().requires_grad_(True)
    loss, _ = ppo_penalty_loss(old, lp, adv, mask, "token-sum", hp=PpoPenaltyHparams(beta=0.5, kl_estimator="k1"))
    (grad,) = torch.autograd.grad(loss, lp)
    torch.testing.assert_close(grad, (-adv + 0.5) * mask)


def test_beta_zero_is_grpo():
    old, lp, adv, mask = batch(spread=1.0)
    a, _ = grpo_loss(old, lp, adv, mask)
    b, _ = ppo_penalty_loss(old, lp, adv, mask, hp=PpoPenaltyHparams(beta=0.0))
    assert torch.equal(a, b)


verl_algos = pytest.importorskip("verl.trainer.ppo.core_algos", reason="verl not installed")


@pytest.mark.parametrize("kind", sorted(KL_ESTIMATORS))
def test_estimators_equal_verls_kl_penalty(kind):
    g = torch.Generator().manual_seed(3)
    for scale in (0.1, 3.0, 30.0):  # 30: beyond verl's clamps of k3's input (20) and output (10)
        lp = scale * torch.randn(16, 9, generator=g)
        ref = scale * torch.randn(16, 9, generator=g)
        torch.testing.assert_close(kl_penalty(lp, ref, kind), verl_algos.kl_penalty(lp, ref, kind), rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"])
@pytest.mark.parametrize("kl", ["k1", "k2", "k3"])
def test_loss_equals_verl_policy_loss_plus_beta_kl(kl, mode):
    # verl's actor: pg_loss (compute_policy_loss_vanilla) + kl_coef * agg_loss(kl_penalty(lp, ref)), ref := old
    from types import SimpleNamespace

    old, lp, adv, mask = batch(spread=0.5)
    advt = adv.expand_as(lp)
    cfg = SimpleNamespace(clip_ratio=0.2, clip_ratio_low=0.2, clip_ratio_high=0.2, clip_ratio_c=3.0,
                          get=lambda k, d=None: {"clip_ratio_c": 3.0}.get(k, d), global_batch_info={})
    try:
        pg, *_ = verl_algos.compute_policy_loss_vanilla(old, lp, advt, mask, loss_agg_mode=mode, config=cfg)
    except Exception as e:  # noqa: BLE001 - verl's config object varies by version
        pytest.skip(f"verl's compute_policy_loss_vanilla needs a fuller config here: {e}")
    kl_term = verl_algos.agg_loss(verl_algos.kl_penalty(lp, old, kl), mask, mode)
    ours, _ = ppo_penalty_loss(old, lp, adv, mask, mode, hp=PpoPenaltyHparams(beta=0.3, kl_estimator=kl))
    torch.testing.assert_close(ours, pg + 0.3 * kl_term, rtol=1e-6, atol=1e-7)


def test_registered_and_validating():
    spec = get_objective("ppo_penalty")
    assert spec.defaults() == {"clip_ratio_low": 0.2, "clip_ratio_high": 0.2, "clip_ratio_c": 3.0,
                               "beta": 0.1, "kl_estimator": "k3", "tied_only": False}
    with pytest.raises(ValueError, match=r"unknown kl_estimator 'k4'; valid choices are kl, k1, mse, k2"):
        spec.make_hparams({"kl_estimator": "k4"})
    with pytest.raises(ValueError, match=r"beta must be a finite number >= 0"):
        spec.make_hparams({"beta": -1.0})
    with pytest.raises(ValueError, match=r"tied_only must be true or false"):
        spec.make_hparams({"tied_only": "yes"})


def test_tied_only_penalises_exactly_the_zero_advantage_rows():
    old, lp, adv, mask = batch(spread=0.5)
    _, m = ppo_penalty_loss(old, lp, adv, mask, hp=PpoPenaltyHparams(beta=1.0, tied_only=True))
    want = float(((adv == 0).float().expand_as(mask) * mask).sum() / mask.sum())
    assert m["ppo_penalty/penalised_frac"] == pytest.approx(want)
    full, _ = ppo_penalty_loss(old, lp, adv, mask, hp=PpoPenaltyHparams(beta=1.0))
    tied, _ = ppo_penalty_loss(old, lp, adv, mask, hp=PpoPenaltyHparams(beta=1.0, tied_only=True))
    grpo, _ = grpo_loss(old, lp, adv, mask)
    kl = kl_penalty(lp, old)
    torch.testing.assert_close(tied, grpo + aggregate(kl * (adv == 0), mask), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(full, grpo + aggregate(kl, mask), rtol=1e-6, atol=1e-7)

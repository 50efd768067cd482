"""The objectives of lad_ref.losses against hand-written formulas (docs/research/baselines.md, docs/design.md)."""

import math

import pytest
import torch

from lad_ref.divergences import DIVERGENCE_NAMES, get_divergence
from lad_ref.losses import (
    AGG_MODES,
    LOSS_NAMES,
    ClipCovHparams,
    EntAdvHparams,
    FlowRLHparams,
    GrpoHparams,
    KlCovHparams,
    LadHparams,
    LadTheoryHparams,
    aggregate,
    get_loss,
    get_objective,
    kl_penalty,
    lad_loss,
)

FOUR_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")


def batch(seed=0, b=4, t=6, spread=1.0):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(b, t, generator=g) * 3 - 0.1
    lp = (old + spread * 0.5 * torch.randn(b, t, generator=g)).requires_grad_(True)
    adv = torch.randn(b, generator=g).unsqueeze(-1).expand(b, t).contiguous()
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[0, 4:] = False
    mask[2, 1:] = False
    return old, lp, adv, mask


def agg_weights(mask, mode):
    """d(aggregate)/d(loss_mat): the weight each valid token's loss gets."""
    m = mask.double()
    n_seq = (m.sum(-1) > 0).sum()
    if mode == "token-mean":
        return m / m.sum()
    if mode == "seq-mean-token-mean":
        return m / m.sum(-1, keepdim=True).clamp(min=1) / n_seq
    if mode == "seq-mean-token-sum":
        return m / n_seq
    if mode == "seq-mean-token-sum-norm":
        return m / n_seq / mask.shape[-1]
    raise AssertionError(mode)


def ref_aggregate(mat, mask, mode):
    """Loop-based reference of baselines.md §1.3."""
    rows = []
    for i in range(mat.shape[0]):
        vals = [float(mat[i, t]) for t in range(mat.shape[1]) if mask[i, t]]
        if vals:
            rows.append(vals)
    if mode == "token-mean":
        flat = [v for r in rows for v in r]
        return sum(flat) / len(flat)
    if mode == "seq-mean-token-mean":
        return sum(sum(r) / len(r) for r in rows) / len(rows)
    if mode == "seq-mean-token-sum":
        return sum(sum(r) for r in rows) / len(rows)
    if mode == "seq-mean-token-sum-norm":
        return sum(sum(r) for r in rows) / len(rows) / mat.shape[1]
    raise AssertionError(mode)


# ------------------------------------------------------------------------------------ registry


def test_registry_names():
    assert set(LOSS_NAMES) >= {"lad", "grpo", "entadv", "kl_cov", "clip_cov", "flowrl"}
    with pytest.raises(ValueError, match=r"unknown objective 'ppo2'; valid choices are lad, "):
        get_loss("ppo2")
    assert get_objective("lad").hparams().divergence == "js"
    assert get_objective("grpo").hparams().clip_ratio_high == 0.2


# ------------------------------------------------------------------------------------ aggregate


@pytest.mark.parametrize("mode", FOUR_MODES)
def test_aggregate_matches_loop_reference(mode):
    mat = torch.arange(24, dtype=torch.float32).view(4, 6) / 7
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[1, 3:] = False
    mask[3] = False  # a fully masked sequence is excluded from the sequence means
    assert float(aggregate(mat, mask, mode)) == pytest.approx(ref_aggregate(mat, mask, mode), rel=1e-6)


def test_aggregate_hand_values():
    mat = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    assert float(aggregate(mat, mask, "token-mean")) == pytest.approx(10 / 4)
    assert float(aggregate(mat, mask, "seq-mean-token-mean")) == pytest.approx((2 + 4) / 2)
    assert float(aggregate(mat, mask, "seq-mean-token-sum")) == pytest.approx((6 + 4) / 2)
    assert float(aggregate(mat, mask, "seq-mean-token-sum-norm")) == pytest.approx((6 + 4) / 2 / 3)
    assert float(aggregate(mat, mask, "seq-mean-token-sum-norm", loss_scale_factor=10)) == pytest.approx(0.5)
    assert float(aggregate(mat, mask, "token-sum")) == pytest.approx(10)


# ------------------------------------------------------------------------------------ LAD


@pytest.mark.parametrize("mode", FOUR_MODES)
@pytest.mark.parametrize("div", DIVERGENCE_NAMES)
def test_lad_gradient_is_r_fprime_u_times_aggregation_weight(div, mode):
    old, lp, adv, mask = batch(seed=1)
    eta = 0.7
    loss, _ = lad_loss(old, lp, adv, mask, mode, hp=LadHparams(divergence=div, eta=eta))
    (grad,) = torch.autograd.grad(loss, lp)
    log_r = (lp - old).detach().double()
    log_u = log_r - adv.double() / eta
    weight = log_r.exp() * get_divergence(div).f_prime(log_u)
    expected = weight * agg_weights(mask, mode)
    torch.testing.assert_close(grad.double(), expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("div", DIVERGENCE_NAMES)
def test_lad_loss_value_is_exp_a_f_u(div):
    old, lp, adv, mask = batch(seed=2)
    loss, _ = lad_loss(old, lp, adv, mask, "token-mean", hp=LadHparams(divergence=div, eta=2.0))
    naive = []
    for i in range(4):
        for t in range(6):
            if mask[i, t]:
                a = float(adv[i, t]) / 2.0
                u = math.exp(float(lp[i, t].detach() - old[i, t]) - a)
                naive.append(math.exp(a) * float(get_divergence(div).f(torch.tensor(math.log(u), dtype=torch.float64))))
    assert loss.item() == pytest.approx(sum(naive) / len(naive), rel=1e-5)


@pytest.mark.parametrize("div", DIVERGENCE_NAMES)
def test_lad_sequence_level_gradient(div):
    old, lp, adv, mask = batch(seed=3)
    loss, _ = lad_loss(old, lp, adv, mask, "seq-mean-token-mean", hp=LadHparams(divergence=div, eta=1.0, level="sequence"))
    (grad,) = torch.autograd.grad(loss, lp)
    m = mask.double()
    log_r = ((lp - old).detach().double() * m).sum(-1)
    a = (adv.double() * m).sum(-1) / m.sum(-1)
    w = log_r.exp() * get_divergence(div).f_prime(log_r - a)
    # every token of response i gets d L / d log pi(y_i) = r_i f'(u_i) / B
    expected = (w / 4).unsqueeze(-1) * m
    torch.testing.assert_close(grad.double(), expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("div", [d for d in DIVERGENCE_NAMES if d != "tv"])
def test_lad_reduces_to_policy_gradient_at_r_equal_1_small_advantage(div):
    # weight r f'(u) at r = 1 is f'(exp(-A/eta)) ~ f'(1) - f''(1) A/eta: linear in A, with descent
    # direction -weight of the same sign as A (it raises high-advantage responses).
    a = torch.tensor([[-0.02, -0.01, 0.01, 0.02]]).T
    lp = torch.zeros(4, 1, requires_grad=True)
    loss, _ = lad_loss(torch.zeros(4, 1), lp, a, torch.ones(4, 1, dtype=torch.bool), hp=LadHparams(divergence=div))
    (grad,) = torch.autograd.grad(loss, lp)
    centred = grad - grad.mean()  # remove f'(1), which multiplies E[grad log pi] = 0 in expectation
    assert bool((torch.sign(-centred) == torch.sign(a)).all())
    ratio = centred.flatten() / a.flatten()
    torch.testing.assert_close(ratio, ratio.mean().expand(4), rtol=2e-2, atol=0)


# f'(u0) = 0 at u0 = 1 for jf, hd, js (and tv); at u0 = 1/e for kl; never for rkl (-1/u < 0).
SIGN_CHANGE_LOG_U = {"kl": -1.0, "jf": 0.0, "hd": 0.0, "js": 0.0}


@pytest.mark.parametrize("div", sorted(SIGN_CHANGE_LOG_U))
def test_lad_suppresses_overconfidence(div):
    # A > 0: below r = exp(A/eta + log u0) descent raises log pi, above it descent lowers it.
    a = 1.0
    switch = a + SIGN_CHANGE_LOG_U[div]
    log_r = torch.tensor([[switch - 0.5], [switch + 0.5]], requires_grad=True)
    ones = torch.ones(2, 1, dtype=torch.bool)
    loss, metrics = lad_loss(torch.zeros(2, 1), log_r, torch.full((2, 1), a), ones, hp=LadHparams(divergence=div))
    (grad,) = torch.autograd.grad(loss, log_r)
    assert float(grad[0]) < 0 < float(grad[1])
    assert metrics["lad/weight_flip_frac"] == pytest.approx(0.5)


def test_lad_rkl_never_pushes_back():
    # reverse KL: weight r f'(u) = -exp(A/eta) < 0 whatever r: weighted MLE, mass-covering.
    log_r = torch.tensor([[-3.0], [0.0], [5.0]], requires_grad=True)
    loss, _ = lad_loss(torch.zeros(3, 1), log_r, torch.ones(3, 1), torch.ones(3, 1, dtype=torch.bool),
                       hp=LadHparams(divergence="rkl"))
    (grad,) = torch.autograd.grad(loss, log_r)
    torch.testing.assert_close(grad, torch.full((3, 1), -math.e / 3))


@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("div", DIVERGENCE_NAMES)
def test_lad_finite_for_extreme_inputs(div, level):
    b, t = 8, 5
    bound = min(50.0, get_divergence(div).max_adv_over_eta)  # neyman accepts |A/eta| <= 30
    a = torch.linspace(-bound, bound, b).unsqueeze(-1).expand(b, t)
    log_r = torch.linspace(-20, 20, b * t).view(b, t)
    if level == "sequence":
        log_r = log_r / t  # keep the sequence log-ratio within [-20, 20]
    lp = log_r.clone().requires_grad_(True)
    for eta in (1.0, 0.5):  # advantages scaled with eta so that |A/eta| reaches the bound in both
        loss, metrics = lad_loss(torch.zeros(b, t), lp, a * eta, torch.ones(b, t, dtype=torch.bool),
                                 hp=LadHparams(divergence=div, eta=eta, level=level))
        (grad,) = torch.autograd.grad(loss, lp)
        assert math.isfinite(loss.item())
        assert bool(torch.isfinite(grad).all())
        assert all(math.isfinite(v) for v in metrics.values())


def test_lad_bf16_inputs_give_float32_loss():
    old, lp, adv, mask = batch()
    loss, _ = lad_loss(old.bfloat16(), lp.detach().bfloat16().requires_grad_(), adv, mask)
    assert loss.dtype == torch.float32


# ------------------------------------------------------------------------------------ theory


@pytest.mark.parametrize("div", DIVERGENCE_NAMES)
def test_lad_theory_is_f_divergence_between_normalised_distributions(div):
    g = torch.Generator().manual_seed(4)
    k = 7
    old = torch.log_softmax(torch.randn(k, generator=g), 0)
    lp = torch.log_softmax(torch.randn(k, generator=g), 0)
    adv = torch.randn(k, generator=g)
    eta = 1.5
    loss, _ = get_loss("lad_theory")(old.view(k, 1), lp.view(k, 1), adv.view(k, 1), torch.ones(k, 1, dtype=torch.bool),
                                     hp=LadTheoryHparams(divergence=div, eta=eta))
    p_pi = torch.softmax((lp - old).double(), 0)
    p_a = torch.softmax(adv.double() / eta, 0)
    expected = (p_a * get_divergence(div).f(torch.log(p_pi / p_a))).sum()
    assert loss.item() == pytest.approx(float(expected), rel=1e-5)
    # zero exactly at P_pi = P_A, i.e. pi ∝ pi_old exp(A/eta)
    opt = torch.log_softmax(old.double() + adv.double() / eta, 0)
    at_opt, _ = get_loss("lad_theory")(old.view(k, 1), opt.float().view(k, 1), adv.view(k, 1),
                                       torch.ones(k, 1, dtype=torch.bool), hp=LadTheoryHparams(divergence=div, eta=eta))
    assert float(at_opt) == pytest.approx(0.0, abs=1e-6)


# ------------------------------------------------------------------------------------ baselines


def ref_grpo_mat(old, lp, adv, lo, hi, c):
    out = torch.zeros_like(old, dtype=torch.float64)
    for i in range(old.shape[0]):
        for t in range(old.shape[1]):
            a = float(adv[i, t])
            r = math.exp(max(-20.0, min(20.0, float(lp[i, t] - old[i, t]))))
            v = max(-a * r, -a * min(max(r, 1 - lo), 1 + hi))
            if c is not None and a < 0:
                v = min(v, -a * c)
            out[i, t] = v
    return out


@pytest.mark.parametrize("mode", FOUR_MODES)
def test_grpo_matches_baselines_formula(mode):
    # hand-checkable: ratios 0.5, 1.0, 1.1, 1.5, 4.0 against positive and negative advantages
    old = torch.zeros(2, 5)
    lp = torch.log(torch.tensor([[0.5, 1.0, 1.1, 1.5, 4.0], [0.5, 1.0, 1.1, 1.5, 4.0]])).requires_grad_(True)
    adv = torch.tensor([[1.0], [-1.0]]).expand(2, 5)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]], dtype=torch.bool)
    loss, metrics = get_loss("grpo")(
        old, lp, adv, mask, mode, hp=GrpoHparams(clip_ratio_low=0.2, clip_ratio_high=0.28, clip_ratio_c=3.0))
    # row 0 (A=+1): -min(r, clip(r)) = -0.5, -1.0, -1.1, -1.28, -1.28
    # row 1 (A=-1): max(r, clip(r)) = 0.8, 1.0, 1.1, 1.5, min(4.0, 3.0)=3.0 (masked)
    hand = torch.tensor([[-0.5, -1.0, -1.1, -1.28, -1.28], [0.8, 1.0, 1.1, 1.5, 3.0]], dtype=torch.float64)
    torch.testing.assert_close(ref_grpo_mat(old, lp.detach(), adv, 0.2, 0.28, 3.0), hand)
    assert loss.item() == pytest.approx(ref_aggregate(hand, mask, mode), rel=1e-6, abs=1e-6)
    # clipped: r=1.5,4.0 for A>0 and r=0.5 for A<0 -> 3 of 9 valid tokens
    assert metrics["grpo/clipfrac"] == pytest.approx(3 / 9)
    # gradient flows only through unclipped tokens
    (grad,) = torch.autograd.grad(loss, lp)
    w = agg_weights(mask, mode)
    expected = torch.tensor([[-0.5, -1.0, -1.1, 0, 0], [0, 1.0, 1.1, 1.5, 0]], dtype=torch.float64) * w
    torch.testing.assert_close(grad.double(), expected, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("mode", FOUR_MODES)
def test_grpo_random_inputs_match_reference(mode):
    old, lp, adv, mask = batch(seed=5, spread=2.0)
    loss, _ = get_loss("grpo")(old, lp, adv, mask, mode)
    ref = ref_grpo_mat(old, lp.detach(), adv, 0.2, 0.2, 3.0)
    assert loss.item() == pytest.approx(ref_aggregate(ref, mask, mode), rel=1e-5)


def test_kl_penalty_is_clamped_k3_and_grpo_has_no_kl_term():
    old, lp, adv, mask = batch(seed=6)
    ref = old - 0.3
    d = (ref - lp.detach()).double()
    k3 = d.exp() - d - 1
    torch.testing.assert_close(kl_penalty(lp.detach(), ref).double(), k3, rtol=1e-5, atol=1e-6)
    # the KL-to-reference term is the trainers' (added outside every objective), not grpo's
    with pytest.raises(TypeError):
        get_loss("grpo")(old, lp, adv, mask, ref_log_prob=ref, kl_coef=0.1)


@pytest.mark.parametrize("mode", FOUR_MODES)
def test_kl_cov_matches_baselines_formula(mode):
    # 2 x 3 valid tokens; mean A = 0, mean lp = -6.1/6; covariance (A - mean A)(lp - mean lp):
    #   row 0 (A=+1): -0.183, 0.117, 0.917   row 1 (A=-1): 0.983, 0.083, -0.217  -> top-1 is (1, 0)
    old = torch.tensor([[-1.0, -1.0, -1.0], [-1.0, -1.0, -1.0]])
    lp = torch.tensor([[-1.2, -0.9, -0.1], [-2.0, -1.1, -0.8]], requires_grad=True)
    adv = torch.tensor([[1.0], [-1.0]]).expand(2, 3)
    mask = torch.ones(2, 3, dtype=torch.bool)
    loss, metrics = get_loss("kl_cov")(old, lp, adv, mask, mode, hp=KlCovHparams(kl_cov_ratio=0.2, ppo_kl_coef=0.5))
    # k = max(1, floor(6 * 0.2)) = 1 token penalised: (1, 0), with |lp - lp_old| = 1.0
    r = torch.exp(lp.detach() - old).double()
    hand = -adv.double() * r
    hand[1, 0] += 0.5 * 1.0
    assert loss.item() == pytest.approx(ref_aggregate(hand, mask, mode), rel=1e-6)
    assert metrics["kl_cov/penalised_frac"] == pytest.approx(1 / 6)


@pytest.mark.parametrize("mode", FOUR_MODES)
def test_clip_cov_matches_baselines_formula(mode):
    old = torch.zeros(2, 4)
    # ratios: row 0 (A=+2): 1.0, 1.1, 1.5 (clipped), 0.9 ; row 1 (A=-2): 1.0, 0.7 (clipped), 1.1, 1.0
    lp = torch.log(torch.tensor([[1.0, 1.1, 1.5, 0.9], [1.0, 0.7, 1.1, 1.0]])).requires_grad_(True)
    adv = torch.tensor([[2.0], [-2.0]]).expand(2, 4)
    mask = torch.ones(2, 4, dtype=torch.bool)
    lp_d = lp.detach().double()
    cov = (adv.double() - 0.0) * (lp_d - lp_d.mean())
    clipped = torch.tensor([[0, 0, 1, 0], [0, 1, 0, 0]], dtype=torch.bool)
    candidates = {(i, t) for i in range(2) for t in range(4) if not clipped[i, t] and 0.02 < cov[i, t] < 5.0}
    # mean lp = 0.0167; cov row 0: -0.033, 0.157, 0.777 (clipped), -0.243; row 1: 0.033, 0.747 (clipped), -0.157, 0.033
    assert candidates == {(0, 1), (1, 0), (1, 3)}
    loss, metrics = get_loss("clip_cov")(
        old, lp, adv, mask, mode, hp=ClipCovHparams(clip_cov_ratio=0.25, clip_cov_lb=0.02, clip_cov_ub=5.0),
        generator=torch.Generator().manual_seed(0),
    )
    # n = max(1, floor(0.25 * 8)) = 2 of the 3 candidates are zeroed; which ones is the seeded draw's choice
    (grad,) = torch.autograd.grad(loss, lp)
    zeroed = {(i, t) for i in range(2) for t in range(4) if grad[i, t] == 0 and not clipped[i, t]}
    assert len(zeroed) == 2 and zeroed <= candidates
    assert metrics["clip_cov/zeroed_frac"] == pytest.approx(2 / 8)
    r = lp_d.exp()
    hand = torch.maximum(-adv.double() * r, -adv.double() * r.clamp(0.8, 1.2))
    for i, t in zeroed:
        hand[i, t] = 0.0
    assert loss.item() == pytest.approx(ref_aggregate(hand, mask, mode), rel=1e-6)
    # the same generator seed gives the same choice
    loss2, _ = get_loss("clip_cov")(
        old, lp, adv, mask, mode, hp=ClipCovHparams(clip_cov_ratio=0.25, clip_cov_lb=0.02, clip_cov_ub=5.0),
        generator=torch.Generator().manual_seed(0),
    )
    assert loss2.item() == loss.item()


def test_entadv_shapes_advantage_and_keeps_sign():
    old, lp, adv, mask = batch(seed=7)
    ent = torch.rand(4, 6) * 3
    loss, metrics = get_loss("entadv")(old, lp, adv, mask, hp=EntAdvHparams(alpha=0.4, kappa=2.0), entropy=ent)
    psi = torch.minimum(0.4 * ent, adv.abs() / 2)
    shaped = adv + psi
    assert bool((torch.sign(shaped) == torch.sign(adv)).all())
    ref = ref_grpo_mat(old, lp.detach(), shaped, 0.2, 0.2, 3.0)
    assert loss.item() == pytest.approx(ref_aggregate(ref, mask, "token-mean"), rel=1e-5)
    assert metrics["entadv/psi_mean"] > 0


def test_flowrl_trajectory_balance():
    old, lp, adv, mask = batch(seed=8)
    ref = old - 0.2
    log_z = torch.tensor([0.1, -0.2, 0.3, 0.0], requires_grad=True)
    loss, _ = get_loss("flowrl")(old, lp, adv, mask, hp=FlowRLHparams(beta=2.0, is_weight_cap=10.0),
                                 log_z=log_z, ref_log_prob=ref)
    m = mask.double()
    mm = lambda x: (x.double() * m).sum(-1) / m.sum(-1)  # noqa: E731
    delta = log_z.detach().double() + mm(lp.detach()) - 2.0 * mm(adv) - mm(ref)
    w = torch.exp(((lp.detach() - old).double() * m).sum(-1)).clamp(max=10.0)
    assert loss.item() == pytest.approx(float((w * delta**2).mean()), rel=1e-5)
    (gz,) = torch.autograd.grad(loss, log_z)
    torch.testing.assert_close(gz.double(), 2 * w * delta / 4, rtol=1e-4, atol=1e-7)


# ------------------------------------------------------------------------------------ bad input


def common(**over):
    old, lp, adv, mask = batch()
    args = dict(old_log_prob=old, log_prob=lp, advantages=adv, response_mask=mask)
    args.update(over)
    return args


@pytest.mark.parametrize(
    "name, values, match",
    [
        ("lad", dict(divergence="chi2"), r"unknown divergence 'chi2'; valid choices are kl, rkl, jf, tv, hd, js"),
        ("lad", dict(eta=0.0), r"eta must be a finite number > 0, got 0.0"),
        ("lad", dict(eta=-1.0), r"eta must be a finite number > 0, got -1.0"),
        ("lad", dict(level="word"), r"unknown level 'word'; valid choices are token, sequence"),
        ("grpo", dict(clip_ratio_c=0.5), r"clip_ratio_c must be a finite number > 1"),
    ],
)
def test_bad_hyperparameters_fail_where_the_dataclass_is_built(name, values, match):
    # the values are validated once, when the hyperparameter object is built (not by the loss)
    spec = get_objective(name)
    with pytest.raises(ValueError, match=match):
        spec.hparams(**values)
    with pytest.raises(ValueError, match=match):
        spec.make_hparams(values)


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("lad", dict(loss_agg_mode="mean"), r"unknown loss_agg_mode 'mean'; valid choices are token-mean"),
        ("grpo", dict(loss_agg_mode="sum"), r"unknown loss_agg_mode 'sum'"),
        ("entadv", dict(), r"entadv needs entropy"),
        ("flowrl", dict(), r"flowrl needs log_z"),
    ],
)
def test_bad_inputs(name, kwargs, match):
    agg = kwargs.get("loss_agg_mode", "token-mean")
    with pytest.raises(ValueError, match=match):
        get_loss(name)(**common(), loss_agg_mode=agg)


@pytest.mark.parametrize(
    "hp, match",
    [
        ({"eta": 2.0}, r"hp must be a LadHparams, got dict"),
        (LadTheoryHparams(eta=2.0), r"hp must be a LadHparams, got LadTheoryHparams"),  # a subclass's base
        (GrpoHparams(), r"hp must be a LadHparams, got GrpoHparams"),
    ],
)
def test_hp_of_the_wrong_type_is_a_type_error(hp, match):
    with pytest.raises(TypeError, match=match):
        lad_loss(**common(), hp=hp)


def test_keyword_hyperparameters_are_gone():
    # hyperparameters travel in one object: the old keywords are unknown arguments
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'eta'"):
        lad_loss(**common(), eta=2.0)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'clip_ratio_high'"):
        get_loss("grpo")(**common(), clip_ratio_high=0.28)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_hp_none_is_the_dataclass_defaults_bit_for_bit(name):
    spec = get_objective(name)
    g = torch.Generator().manual_seed(11)
    b, t = 4, 6
    extra = {"entropy": torch.rand(b, t, generator=g), "ref_log_prob": -torch.rand(b, t, generator=g),
             "log_z": torch.randn(b, generator=g)}
    outs = []
    for hp in (None, spec.hparams()):
        args = common()
        kw = {k: extra[k] for k in spec.needs if k != "generator"}
        if "generator" in spec.needs:
            kw["generator"] = torch.Generator().manual_seed(0)
        loss, metrics = spec.loss(**args, hp=hp, **kw)
        outs.append((loss.detach(), torch.autograd.grad(loss, args["log_prob"])[0], metrics))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    assert outs[0][2] == outs[1][2]


@pytest.mark.parametrize("name", ["lad", "grpo", "kl_cov", "clip_cov"])
@pytest.mark.parametrize(
    "over, match",
    [
        (dict(advantages=torch.full((4, 6), float("nan"))), "NaN or inf"),
        (dict(advantages=torch.tensor([1.0, float("inf"), 0.0, 0.0])), "NaN or inf"),
        (dict(old_log_prob=torch.zeros(4, 5)), r"old_log_prob has shape \(4, 5\) but log_prob has shape \(4, 6\)"),
        (dict(response_mask=torch.zeros(4, 6, dtype=torch.bool)), "response_mask is all zero"),
        (dict(advantages=torch.zeros(3)), r"advantages has shape \(3, 1\), which does not broadcast"),
    ],
)
def test_bad_tensors(name, over, match):
    with pytest.raises(ValueError, match=match):
        get_loss(name)(**common(**over))


def test_aggregate_bad_mode():
    with pytest.raises(ValueError, match=r"unknown loss_agg_mode 'avg'; valid choices are " + ", ".join(AGG_MODES)):
        aggregate(torch.zeros(2, 2), torch.ones(2, 2), "avg")

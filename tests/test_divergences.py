import math

import pytest
import torch

from lad_ref.divergences import DIVERGENCE_NAMES, get_divergence

# Naive formulas of docs/design.md's generator table, in float64, as functions of u.
NAIVE_F = {
    "kl": lambda u: u * math.log(u),
    "rkl": lambda u: -math.log(u),
    "jf": lambda u: (u - 1) * math.log(u),
    "tv": lambda u: abs(u - 1),
    "hd": lambda u: (math.sqrt(u) - 1) ** 2,
    "js": lambda u: 0.5 * (u * math.log(u) - (u + 1) * math.log((u + 1) / 2)),
    "neyman": lambda u: (u - 1) ** 2 / u,
}
NAIVE_FP = {
    "kl": lambda u: math.log(u) + 1,
    "rkl": lambda u: -1 / u,
    "jf": lambda u: math.log(u) + 1 - 1 / u,
    "tv": lambda u: math.copysign(1.0, u - 1) if u != 1 else 0.0,
    "hd": lambda u: 1 - 1 / math.sqrt(u),
    "js": lambda u: 0.5 * math.log(2 * u / (u + 1)),
    "neyman": lambda u: 1 - 1 / u**2,
}


def test_seven_divergences_registered():
    # the paper's six, then neyman (issue 19: the released code's "ps" generator (x - 1)^2 / x)
    assert DIVERGENCE_NAMES == ("kl", "rkl", "jf", "tv", "hd", "js", "neyman")
    assert set(NAIVE_F) == set(NAIVE_FP) == set(DIVERGENCE_NAMES)


def u_fprime(d, log_u):
    """u f'(u), the factor of LAD's gradient weight, as Divergence.scaled computes it."""
    return d.u_f_prime(log_u) if d.u_f_prime is not None else log_u.exp() * d.f_prime(log_u)


@pytest.mark.parametrize("name", DIVERGENCE_NAMES)
def test_f_and_fprime_match_table(name):
    d = get_divergence(name)
    log_u = torch.linspace(-6, 6, 101, dtype=torch.float64)
    f = d.f(log_u)
    fp = d.f_prime(log_u)
    for lu, fv, fpv in zip(log_u.tolist(), f.tolist(), fp.tolist()):
        u = math.exp(lu)
        assert fv == pytest.approx(NAIVE_F[name](u), rel=1e-9, abs=1e-12)
        assert fpv == pytest.approx(NAIVE_FP[name](u), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", DIVERGENCE_NAMES)
def test_f_is_zero_at_one_and_convex(name):
    d = get_divergence(name)
    assert float(d.f(torch.zeros(1, dtype=torch.float64))) == pytest.approx(0.0, abs=1e-15)
    # f' non-decreasing in u <=> f convex
    fp = d.f_prime(torch.linspace(-10, 10, 2001, dtype=torch.float64))
    assert bool((fp[1:] - fp[:-1] >= -1e-12).all())


@pytest.mark.parametrize("name", [n for n in DIVERGENCE_NAMES if n != "tv"])
def test_fprime_is_derivative_of_f(name):
    d = get_divergence(name)
    log_u = torch.linspace(-8, 8, 33, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(d.f(log_u).sum(), log_u)
    # d f(e^l) / d l = f'(u) * u
    torch.testing.assert_close(grad, d.f_prime(log_u.detach()) * log_u.detach().exp())
    torch.testing.assert_close(grad, u_fprime(d, log_u.detach()))


@pytest.mark.parametrize("name", DIVERGENCE_NAMES)
def test_finite_in_float32_for_log_u_up_to_50(name):
    d = get_divergence(name)
    log_u = torch.linspace(-50, 50, 1001, dtype=torch.float32, requires_grad=True)
    f = d.f(log_u)
    assert bool(torch.isfinite(f).all())
    assert bool(torch.isfinite(u_fprime(d, log_u.detach())).all())
    if d.u_f_prime is None:  # neyman's f' = 1 - 1/u^2 alone overflows below log u = -44; u f'(u) does not
        assert bool(torch.isfinite(d.f_prime(log_u.detach())).all())
    (grad,) = torch.autograd.grad(f.sum(), log_u)
    assert bool(torch.isfinite(grad).all())


def test_js_stable_where_naive_formula_cancels():
    # At u = e^40 the naive u log u - (u+1) log((u+1)/2) loses every digit in float32.
    d = get_divergence("js")
    f32 = d.f(torch.tensor([40.0]))
    f64 = d.f(torch.tensor([40.0], dtype=torch.float64))
    assert float(f32) == pytest.approx(float(f64), rel=1e-5)


def test_unknown_divergence_names_choices():
    with pytest.raises(ValueError, match=r"unknown divergence 'chi2'.*js"):
        get_divergence("chi2")


def test_neyman_u_fprime_finite_and_accurate_to_its_bound():
    d = get_divergence("neyman")
    x32 = torch.linspace(-d.log_u_max, d.log_u_max, 1101)
    got = d.u_f_prime(x32).double()
    want = 2 * torch.sinh(x32.double())  # u - 1/u
    assert bool(torch.isfinite(got).all())
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    # the value near u = 1 has no cancellation: f(u) ~ (log u)^2 for small log u
    assert float(d.f(torch.tensor([1e-4]))) == pytest.approx(1e-8, rel=1e-5)


@pytest.mark.parametrize("name", [n for n in DIVERGENCE_NAMES if n != "tv"])
def test_lemma_minimiser_is_proportional_to_g2(name):
    # docs/design.md: min_pi sum_y g1 f(pi / g2) subject to sum pi = 1, with g1 / g2 constant,
    # is pi ∝ g2 for a strictly convex f (tv is convex but not strictly: excluded).
    d = get_divergence(name)
    g2 = torch.tensor([0.5, 1.5, 0.2, 3.0, 0.8], dtype=torch.float64)
    g1 = 2.0 * g2
    logits = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([logits], lr=1.0, max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-15,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        log_pi = torch.log_softmax(logits, 0)
        loss = (g1 * d.f(log_pi - g2.log())).sum()
        loss.backward()
        return loss

    opt.step(closure)
    pi = torch.softmax(logits.detach(), 0)
    torch.testing.assert_close(pi, g2 / g2.sum(), rtol=1e-5, atol=1e-7)

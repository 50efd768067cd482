"""f-divergence generators for LAD, evaluated from log u.

LAD minimises  E_{y~pi_old}[ exp(A/eta) * f(u) ]  with  u = r * exp(-A/eta),  r = pi_theta/pi_old
(docs/design.md, "The method"). Every f here is convex with f(1) = 0, and is written as a function of
``log_u`` so that u itself is never formed where it could overflow, and naive formulas such as
u*log(u) - (u+1)*log(u+1) never cancel catastrophically.

The six generators are those of the paper's ablation, in the scaling the authors' released code
is reported to use (no 1/2 in front of the squared Hellinger generator); a constant factor only
rescales the step:

=====  =====================  ======================================  =========================
name   divergence             f(u)                                    f'(u)
=====  =====================  ======================================  =========================
kl     Kullback-Leibler       u log u                                 log u + 1
rkl    reverse KL             -log u                                  -1/u
jf     Jeffreys (KL + rKL)    (u - 1) log u                           log u + 1 - 1/u
tv     total variation        |u - 1|                                 sign(u - 1)
hd     squared Hellinger      (sqrt(u) - 1)^2                         1 - 1/sqrt(u)
js     Jensen-Shannon         1/2 [u log u - (u+1) log((u+1)/2)]      1/2 log(2u / (u+1))
neyman Neyman chi-squared     (u - 1)^2 / u                           1 - 1/u^2
=====  =====================  ======================================  =========================

``neyman`` is a seventh generator, not in the paper's table: a port that says it follows the
authors' released code carries a generator "ps" whose per-sample loss is e^{A/eta} (x - 1)^2 / x
and calls it Pearson-style. (x - 1)^2 / x is the generator of Neyman's chi^2 divergence
sum_y (p - q)^2 / p (Pearson's chi^2 has (u - 1)^2), hence the name here. Its f grows like 1/u
as u -> 0 and like u as u -> infinity, so exp(A/eta) f(u) overflows float32 sooner than the
others' does: it has its own, tighter bounds (``log_u_max`` = 55, ``max_adv_over_eta`` = 30, so
that e^30 * e^55 < float32's maximum e^88.7), and its gradient weight u f'(u) = u - 1/u =
2 sinh(log u) is computed directly (f'(u) = 1 - 1/u^2 alone would overflow below log u = -44).

No linear term c*(u - 1) is added to any f: the plain generators of the table are used. Adding
one changes neither the divergence between normalised distributions nor the minimiser
(E_{pi_old}[r] = 1), but it does move the point where LAD's gradient weight r f'(u) changes
sign (f' becomes f' + c): with the table's forms the weight changes sign at u = 1, i.e.
r = e^{A/eta}, only for the generators with f'(1) = 0 (jf, tv, hd, js); kl's changes sign at
u = 1/e (r = e^{A/eta - 1}) and rkl's never does (-1/u < 0).

Gradients. :meth:`Divergence.scaled` evaluates exp(log_scale) * f(u) with a gradient computed
from f', not by autograd through f: autograd through ``expm1`` computes its derivative as
result + 1, which is exactly 0 in float32 once log u < -16.6, so TV and HD lost their gradient
there. The backward is exp(log_scale) * u * f'(u), which is finite and accurate
for |log u| <= LOG_U_MAX = 80 (a generator's own ``log_u_max`` where it is smaller: neyman);
beyond that log u is clamped and its gradient is zero.

``tv`` is convex but not *strictly* convex, so the g1/g2 lemma does not pin down a unique
minimiser for it (see lad_ref.bandit for what that does in practice).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lad_ref.checks import choice

Tensor = torch.Tensor
_LOG2 = math.log(2.0)
#: |log u| beyond which :meth:`Divergence.scaled` clamps log u (and gives it zero gradient).
LOG_U_MAX = 80.0


@dataclass(frozen=True)
class Divergence:
    """A generator f of an f-divergence, with its derivative, both as functions of log u.

    Attributes:
        name: registry key (``kl``, ``rkl``, ``jf``, ``tv``, ``hd``, ``js``, ``neyman``).
        long_name: human-readable name.
        f: ``log_u -> f(exp(log_u))``, elementwise.
        f_prime: ``log_u -> f'(exp(log_u))``, elementwise.
        strict: whether f is strictly convex (the lemma's condition for a unique minimiser).
        u_f_prime: ``log_u -> u * f'(u)``, for a generator whose f' alone overflows where u f'(u)
            does not (neyman); None = exp(log_u) * f_prime(log_u).
        log_u_max: |log u| beyond which :meth:`scaled` clamps (LOG_U_MAX unless f grows faster).
        max_adv_over_eta: largest |A|/eta with which exp(A/eta) f(u) and its gradient stay finite in
            float32 for |log r| <= 20 (losses.py refuses larger values up front).
    """

    name: str
    long_name: str
    f: Callable[[Tensor], Tensor]
    f_prime: Callable[[Tensor], Tensor]
    strict: bool = True
    u_f_prime: Callable[[Tensor], Tensor] | None = None
    log_u_max: float = LOG_U_MAX
    max_adv_over_eta: float = 80.0

    def weight(self, log_ratio: Tensor, log_u: Tensor) -> Tensor:
        """r * f'(u) from log r and log u (already clamped to ``log_u_max``), without autograd.

        With ``u_f_prime`` it is exp(log r - log u) * u f'(u) (= e^{A/eta} u f'(u) inside the clamp),
        so that no factor overflows; otherwise exp(log r) * f'(u).
        """
        if self.u_f_prime is None:
            return torch.exp(log_ratio) * self.f_prime(log_u)
        return torch.exp(log_ratio - log_u) * self.u_f_prime(log_u)

    def scaled(self, log_u: Tensor, log_scale: Tensor) -> Tensor:
        """exp(log_scale) * f(u), elementwise (broadcast), with the exact gradient w.r.t. log_u.

        The value is computed from ``f`` and the gradient from ``f_prime``, never by autograd
        through f (see the module docstring):

            value  = exp(log_scale) * f(u)                      (no graph)
            weight = exp(log_scale) * u * f'(u)                 (no graph; 0 where |log u| > log_u_max)
            return   value + weight * (log_u - log_u.detach())  (= value; d/d log_u = weight)

        The last line is the standard surrogate for a known gradient: its forward adds an exact
        zero, its backward is two elementwise ops in C++ (a torch.autograd.Function would run a
        Python backward per call, which the bandit's inner loop pays 68,000 times a sweep).
        |log u| > ``log_u_max`` is clamped with zero gradient; ``log_scale`` gets no gradient.
        """
        if log_scale.requires_grad:
            raise ValueError("Divergence.scaled: log_scale must be a constant (detach it); it gets no gradient.")
        with torch.no_grad():
            x = log_u.clamp(-self.log_u_max, self.log_u_max)
            scale = torch.exp(log_scale)
            value = scale * self.f(x)
            if not log_u.requires_grad:
                return value
            # u f'(u) <= e^80 * 81 for |x| <= 80, and scale * (u f'(u)) is one rounding of finite factors
            u_fp = torch.exp(x) * self.f_prime(x) if self.u_f_prime is None else self.u_f_prime(x)
            weight = torch.where(x == log_u, scale * u_fp, 0.0)  # 0 where clamped
        return value + weight * (log_u - log_u.detach())


# --- generators ---------------------------------------------------------------------------
# Each pair below is written so that no intermediate exceeds exp(|log_u|) and nothing
# subtracts two numbers of size u: this keeps f and f' finite for |log u| <= 80 in float32.
# The gradients LAD uses come from f' (Divergence.scaled), not from autograd through f.


def _kl_f(log_u: Tensor) -> Tensor:
    return torch.exp(log_u) * log_u


def _kl_fp(log_u: Tensor) -> Tensor:
    return log_u + 1.0


def _rkl_f(log_u: Tensor) -> Tensor:
    return -log_u


def _rkl_fp(log_u: Tensor) -> Tensor:
    return -torch.exp(-log_u)


def _jf_f(log_u: Tensor) -> Tensor:
    return torch.expm1(log_u) * log_u


def _jf_fp(log_u: Tensor) -> Tensor:
    return log_u + 1.0 - torch.exp(-log_u)


def _tv_f(log_u: Tensor) -> Tensor:
    return torch.expm1(log_u).abs()


def _tv_fp(log_u: Tensor) -> Tensor:
    return torch.sign(log_u)


def _hd_f(log_u: Tensor) -> Tensor:
    return torch.expm1(0.5 * log_u).square()


def _hd_fp(log_u: Tensor) -> Tensor:
    return -torch.expm1(-0.5 * log_u)


def _js_f(log_u: Tensor) -> Tensor:
    # 1/2 [u log u - (u+1) log(u+1) + (u+1) log 2]; with log(u+1) = softplus(log u) and
    # log u - softplus(log u) = -softplus(-log u) the two u-sized terms never cancel:
    #   = 1/2 [ -u softplus(-log u) - softplus(log u) + (u+1) log 2 ].
    u = torch.exp(log_u)
    return 0.5 * (-u * F.softplus(-log_u) - F.softplus(log_u) + (u + 1.0) * _LOG2)


def _js_fp(log_u: Tensor) -> Tensor:
    # 1/2 log(2u/(u+1)) = 1/2 [log 2 - softplus(-log u)]; bounded above by 1/2 log 2.
    return 0.5 * (_LOG2 - F.softplus(-log_u))


def _neyman_f(log_u: Tensor) -> Tensor:
    # (u - 1)^2 / u = u - 2 + 1/u = 2 (cosh log u - 1) = 4 sinh^2(log u / 2): no cancellation near u = 1
    return 4.0 * torch.sinh(0.5 * log_u).square()


def _neyman_fp(log_u: Tensor) -> Tensor:
    # 1 - 1/u^2 = -expm1(-2 log u); overflows below log u = -44 (the gradient uses _neyman_u_fp)
    return -torch.expm1(-2.0 * log_u)


def _neyman_u_fp(log_u: Tensor) -> Tensor:
    # u f'(u) = u - 1/u = 2 sinh(log u): finite wherever u and 1/u are
    return 2.0 * torch.sinh(log_u)


DIVERGENCES: dict[str, Divergence] = {
    d.name: d
    for d in (
        Divergence("kl", "Kullback-Leibler", _kl_f, _kl_fp),
        Divergence("rkl", "reverse Kullback-Leibler", _rkl_f, _rkl_fp),
        Divergence("jf", "Jeffreys", _jf_f, _jf_fp),
        Divergence("tv", "total variation", _tv_f, _tv_fp, strict=False),
        Divergence("hd", "squared Hellinger", _hd_f, _hd_fp),
        Divergence("js", "Jensen-Shannon", _js_f, _js_fp),
        Divergence(
            "neyman", "Neyman chi-squared", _neyman_f, _neyman_fp, u_f_prime=_neyman_u_fp,
            log_u_max=55.0, max_adv_over_eta=30.0,
        ),
    )
}
#: The generators lad_ref ships (:func:`divergence_names` also lists ones registered later).
DIVERGENCE_NAMES: tuple[str, ...] = tuple(DIVERGENCES)


def register_divergence(div: Divergence) -> Divergence:
    """Add a generator to the registry under ``div.name`` (a new name); returns it.

    From then on it is valid wherever a divergence is named: LAD's hyperparameters, the bandits'
    labels (``lad(<name>)``), the trainer's ``objective.lad.divergence``, TRL's and verl's configs.
    """
    if not isinstance(div, Divergence):
        raise TypeError(f"register_divergence takes a Divergence, got {type(div).__name__}.")
    if div.name in DIVERGENCES:
        raise ValueError(f"divergence {div.name!r} is already registered.")
    DIVERGENCES[div.name] = div
    return div


def unregister_divergence(name: str) -> None:
    """Remove ``name`` from the registry (for tests that register a temporary generator)."""
    DIVERGENCES.pop(name, None)


def divergence_names() -> tuple[str, ...]:
    """Every registered generator's name, the shipped ones first."""
    return tuple(DIVERGENCES)


def get_divergence(name: str) -> Divergence:
    """Look a generator up by name; an unknown name raises ValueError listing the registered ones."""
    try:
        return DIVERGENCES[name]
    except (KeyError, TypeError):
        choice("divergence", name, DIVERGENCES)
        raise

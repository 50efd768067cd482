"""A contributor's divergence, written outside lad_ref: Pearson's chi-squared generator f(u) = (u - 1)^2.

One file, one registration. From then on ``lad(pearson)`` is a valid LAD setting everywhere: the
loss, the bandits' labels, the compact trainer's ``objective.lad.divergence``, TRL's
``divergence`` field and verl's ``policy_loss.divergence``.
"""

import torch

from lad_ref.divergences import Divergence, register_divergence


def _f(log_u: torch.Tensor) -> torch.Tensor:
    return torch.expm1(log_u).square()  # (u - 1)^2 without cancelling near u = 1


def _f_prime(log_u: torch.Tensor) -> torch.Tensor:
    return 2.0 * torch.expm1(log_u)


# f grows like u^2: exp(A/eta) f(u) <= e^{A/eta + 2 log u} stays finite in float32 (e^88) with
# |log u| <= 30 and |A|/eta <= 20.
PEARSON = register_divergence(
    Divergence("pearson", "Pearson chi-squared", _f, _f_prime, log_u_max=30.0, max_adv_over_eta=20.0)
)

"""The 50-armed trimodal bandit of the paper's controlled experiment.

The advantage of arm a is the centred log of a mixture of three Gaussians over the arm index,

    A(a) = log p(a) - mean_b log p(b),    p(a) ∝ sum_j w_j N(a; mu_j, sigma_j^2),

so the advantage-induced target P_A ∝ exp(A/eta) = p^(1/eta) is the mixture itself at eta = 1,
sharper for eta < 1 and flatter for eta > 1. The means, widths and weights are not given by the
paper (docs/research/paper.md §3); these are our choice: three well separated modes of unequal weight, so
that the advantage maximiser has a unique best arm (the centre of the heaviest mode).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TrimodalBandit:
    """A bandit whose target distribution is known exactly.

    Attributes:
        n_arms: number of arms (the paper: 50).
        centers: mode centres, in arm-index units.
        stds: mode standard deviations, in arm-index units.
        mix_weights: mixture weights (normalised internally).
    """

    n_arms: int = 50
    centers: tuple[float, ...] = (10.0, 25.0, 40.0)
    stds: tuple[float, ...] = (3.0, 3.0, 3.0)
    mix_weights: tuple[float, ...] = (0.3, 0.4, 0.3)

    def log_density(self) -> torch.Tensor:
        """log p(a) over arms, normalised over the n_arms arms, float64 (K,)."""
        arms = torch.arange(self.n_arms, dtype=torch.float64)
        mu = torch.tensor(self.centers, dtype=torch.float64)
        sd = torch.tensor(self.stds, dtype=torch.float64)
        w = torch.tensor(self.mix_weights, dtype=torch.float64)
        comp = -0.5 * ((arms[:, None] - mu) / sd) ** 2 - torch.log(sd) + torch.log(w / w.sum())
        log_p = torch.logsumexp(comp, dim=1)
        return log_p - torch.logsumexp(log_p, 0)

    def advantages(self) -> torch.Tensor:
        """A(a): the centred log-density, float32 (K,). Centred so that E_uniform[A] = 0."""
        log_p = self.log_density()
        return (log_p - log_p.mean()).float()

    def target(self, eta: float = 1.0) -> torch.Tensor:
        """P_A = softmax(A / eta), float64 (K,); the LAD optimum when pi_old is uniform."""
        return torch.softmax(self.advantages().double() / eta, 0)

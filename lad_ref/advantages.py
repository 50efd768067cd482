"""Outcome advantages from per-response rewards and group ids (one group = one prompt's G responses).

Every estimator maps rewards (B,) and group ids (B,) to advantages (B,); the losses broadcast
them over the response's tokens. Groups may appear in any order and have different sizes.

* ``grpo``:   A_i = (R_i - mean_g R) / (std_g R + eps), std unbiased (verl
  ``compute_grpo_outcome_advantage``; a group of one gets A = 0).
* ``drgrpo``: A_i = R_i - mean_g R (Dr.GRPO; verl ``norm_adv_by_std_in_grpo=False``).
* ``rloo``:   A_i = R_i - mean_{j in g, j != i} R_j = G/(G-1) (R_i - mean_g R) (Ahmadian et al. 2024).
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor
ESTIMATORS: tuple[str, ...] = ("grpo", "drgrpo", "rloo")


def _group_stats(rewards: Tensor, group_ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-row group size, group mean and unbiased group std (0 for groups of one)."""
    _, inverse = torch.unique(group_ids, return_inverse=True)
    n_groups = int(inverse.max()) + 1
    r = rewards.double()
    count = torch.zeros(n_groups, dtype=r.dtype).index_add_(0, inverse, torch.ones_like(r))
    total = torch.zeros(n_groups, dtype=r.dtype).index_add_(0, inverse, r)
    mean = total / count
    sq = torch.zeros(n_groups, dtype=r.dtype).index_add_(0, inverse, (r - mean[inverse]) ** 2)
    std = torch.where(count > 1, (sq / (count - 1).clamp(min=1)).sqrt(), torch.zeros_like(sq))
    return count[inverse], mean[inverse], std[inverse]


def compute_advantages(
    rewards: Tensor, group_ids: Tensor, estimator: str = "grpo", *, eps: float = 1e-6
) -> Tensor:
    """Advantages (B,) of ``rewards`` (B,) within groups ``group_ids`` (B,), float32.

    ``estimator`` is one of ``grpo``, ``drgrpo``, ``rloo`` (see module docstring).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown advantage estimator {estimator!r}; valid choices are {', '.join(ESTIMATORS)}.")
    if rewards.dim() != 1 or group_ids.shape != rewards.shape:
        raise ValueError(
            f"rewards and group_ids must both have shape (B,), got {tuple(rewards.shape)} and {tuple(group_ids.shape)}."
        )
    if not bool(torch.isfinite(rewards).all()):
        raise ValueError("rewards contain NaN or inf; every reward must be a finite number.")
    count, mean, std = _group_stats(rewards, group_ids)
    centred = rewards.double() - mean
    if estimator == "grpo":
        adv = torch.where(count > 1, centred / (std + eps), torch.zeros_like(centred))
    elif estimator == "drgrpo":
        adv = centred
    else:
        adv = torch.where(count > 1, centred * count / (count - 1).clamp(min=1), torch.zeros_like(centred))
    return adv.float()

"""Metrics: distances between discrete distributions, mode recovery, pass@k, avg@k, diversity."""

from __future__ import annotations

from collections.abc import Sequence
from math import comb

import torch

Tensor = torch.Tensor


def _check_dist(name: str, p: Tensor) -> None:
    if p.dim() < 1 or not bool(torch.isfinite(p).all()) or bool((p < 0).any()):
        raise ValueError(f"{name} must be a non-negative finite probability vector, got {p!r}.")


def tv_distance(p: Tensor, q: Tensor) -> Tensor:
    """Total variation 1/2 sum |p - q| over the last dimension."""
    _check_dist("p", p)
    _check_dist("q", q)
    return 0.5 * (p - q).abs().sum(-1)


def kl_divergence(p: Tensor, q: Tensor) -> Tensor:
    """KL(p || q) = sum p log(p/q) over the last dimension (0 log 0 = 0; inf where q = 0 < p)."""
    _check_dist("p", p)
    _check_dist("q", q)
    p, q = p.double(), q.double()
    terms = torch.where(p > 0, p * (torch.log(p) - torch.log(q)), torch.zeros_like(p))
    return terms.sum(-1)


def modes_recovered(policy: Tensor, target: Tensor, centers: Sequence[float], stds: Sequence[float]) -> int:
    """Number of target modes the policy covers.

    A mode with centre c and standard deviation s (in arm-index units) counts when the policy's
    mass on arms within [c - 2s, c + 2s] is at least half the target's mass there.
    """
    _check_dist("policy", policy)
    _check_dist("target", target)
    arms = torch.arange(policy.shape[-1], dtype=torch.float64)
    count = 0
    for c, s in zip(centers, stds, strict=True):
        window = (arms >= c - 2 * s) & (arms <= c + 2 * s)
        if float(policy.double()[window].sum()) >= 0.5 * float(target.double()[window].sum()):
            count += 1
    return count


def pass_at_k(num_samples: int, num_correct: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): 1 - C(n - c, k) / C(n, k) for n samples, c correct."""
    n, c = int(num_samples), int(num_correct)
    if not (0 <= c <= n) or not (1 <= k <= n):
        raise ValueError(f"pass_at_k needs 0 <= num_correct <= num_samples and 1 <= k <= num_samples, got n={n}, c={c}, k={k}.")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def avg_at_k(correct: Sequence[Sequence[bool]]) -> float:
    """avg@k: mean correctness over prompts and their k samples (one inner sequence per prompt)."""
    per_prompt = [sum(map(bool, row)) / len(row) for row in correct if len(row) > 0]
    if not per_prompt:
        raise ValueError("avg_at_k needs at least one prompt with at least one sample.")
    return sum(per_prompt) / len(per_prompt)


def dist_n(sequences: Sequence[Sequence], n: int) -> float:
    """dist-n (Li et al. 2016): distinct n-grams / total n-grams over all sequences (0 if none).

    A ``str`` is a sequence of characters; pass token lists for token-level dist-n.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    seen, total = set(), 0
    for seq in sequences:
        items = tuple(seq)
        for i in range(len(items) - n + 1):
            seen.add(items[i : i + n])
            total += 1
    return len(seen) / total if total else 0.0


def count_distinct_correct(answers: Sequence[str], correct: Sequence[bool]) -> int:
    """Number of distinct answers among the correct ones (answers compared after strip())."""
    if len(answers) != len(correct):
        raise ValueError(f"answers and correct differ in length: {len(answers)} vs {len(correct)}.")
    return len({a.strip() for a, ok in zip(answers, correct) if ok})


# --------------------------------------------------------------------------------------
# distributions over a finite set of answers: entropy, effective number, restriction to a subset
# (the bandit in the LLM regime, lad_ref.bandit.regime). Batched: the last dimension is the support.
# --------------------------------------------------------------------------------------


def entropy(p: Tensor) -> Tensor:
    """Shannon entropy H(p) = -sum_a p(a) log p(a) in nats over the last dimension, float64 (0 log 0 = 0).

    p: (..., K) probability vectors; returns (...).
    """
    _check_dist("p", p)
    p = p.double()
    return -torch.where(p > 0, p * torch.log(p), torch.zeros_like(p)).sum(-1)


def effective_number(p: Tensor) -> Tensor:
    """Effective number of outcomes N_eff(p) = exp(H(p)), float64 over the last dimension.

    N_eff is n for the uniform distribution on n outcomes and 1 for a point mass; between them it
    counts how many outcomes the distribution really spreads over (the Hill number of order 1).
    """
    return torch.exp(entropy(p))


def conditional(p: Tensor, mask: Tensor) -> Tensor:
    """p restricted to the subset ``mask`` and renormalised: p(a | S) = p(a) 1[a in S] / sum_{b in S} p(b).

    p: (..., K) probability vectors; mask: (K,) or (..., K) booleans marking the subset S.
    Returns float64 (..., K), zero off S. A row with no mass on S has no conditional: ValueError.
    """
    _check_dist("p", p)
    mask = mask.bool()
    if mask.shape[-1] != p.shape[-1]:
        raise ValueError(f"mask has {mask.shape[-1]} entries but p has {p.shape[-1]} outcomes; they must match.")
    restricted = torch.where(mask, p.double(), torch.zeros((), dtype=torch.float64))
    mass = restricted.sum(-1, keepdim=True)
    if bool((mass <= 0).any()):
        raise ValueError("p puts no mass on the subset given by mask, so the conditional distribution is undefined.")
    return restricted / mass


def bootstrap_mean_ci(x: Tensor, *, level: float = 0.95, n_boot: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of the 1-D sample ``x``.

    Resamples x with replacement ``n_boot`` times (a fixed ``seed``, so the interval is reproducible)
    and returns the (1 - level)/2 and (1 + level)/2 quantiles of the resampled means. For a paired
    comparison pass the per-seed differences x_s = metric(A, s) - metric(B, s).
    """
    x = torch.as_tensor(x, dtype=torch.float64).flatten()
    if x.numel() < 2 or not bool(torch.isfinite(x).all()):
        raise ValueError(f"bootstrap_mean_ci needs at least 2 finite values, got {x.tolist()!r}.")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}.")
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, x.numel(), (n_boot, x.numel()), generator=gen)
    means = x[idx].mean(-1)
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    lo, hi = torch.quantile(means, q).tolist()
    return lo, hi

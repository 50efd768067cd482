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

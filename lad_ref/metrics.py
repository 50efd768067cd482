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


def pass_at_k_curve(num_samples: int, num_correct: Tensor | Sequence[int]) -> Tensor:
    """Unbiased pass@k for every k = 1..n at once, per prompt: shape (P,) counts -> (P, n).

    pass@k = 1 - C(n-c, k) / C(n, k) (Chen et al. 2021) with C(n-c, k) / C(n, k) =
    prod_{i=0}^{k-1} (n - c - i) / (n - i), so the whole curve is one cumulative product
    (float64; a factor clamped at 0 once n - c - i < 0 gives pass@k = 1 for k > n - c).
    Equal to :func:`pass_at_k` (n, c, k) for every k; averaging over prompts gives the curve.
    """
    n = int(num_samples)
    c = torch.as_tensor(num_correct, dtype=torch.float64).reshape(-1)
    if n < 1 or bool((c < 0).any()) or bool((c > n).any()):
        raise ValueError(f"pass_at_k_curve needs num_samples >= 1 and 0 <= num_correct <= num_samples, got n={n}, c={c.tolist()}.")
    i = torch.arange(n, dtype=torch.float64)
    factors = ((n - c[:, None] - i) / (n - i)).clamp(min=0.0)
    return 1.0 - torch.cumprod(factors, dim=-1)


def _correct_counts(answers: Sequence[str], correct: Sequence[bool]) -> dict[str, int]:
    if len(answers) != len(correct):
        raise ValueError(f"answers and correct differ in length: {len(answers)} vs {len(correct)}.")
    counts: dict[str, int] = {}
    for a, ok in zip(answers, correct):
        if ok:
            counts[a.strip()] = counts.get(a.strip(), 0) + 1
    return counts


def correct_answer_entropy(answers: Sequence[str], correct: Sequence[bool]) -> float:
    """Entropy (nats) of the empirical distribution over the distinct correct answers of one prompt.

    H = -sum_a p_a log p_a with p_a = (times answer a was sampled and correct) / (correct samples);
    answers compared after strip(), like :func:`count_distinct_correct`. exp(H) is the effective
    number of correct answers (= distinct_correct when they are equally frequent, less when one
    dominates). NaN when no sample is correct (the distribution does not exist).
    """
    counts = _correct_counts(answers, correct)
    if not counts:
        return float("nan")
    p = torch.tensor(list(counts.values()), dtype=torch.float64)
    p = p / p.sum()
    return float(-(p * p.log()).sum())


def correct_answer_kl(answers: Sequence[str], correct: Sequence[bool], ref_answers: Sequence[str],
                      ref_correct: Sequence[bool], pseudocount: float = 0.5) -> float:
    """KL(p || p_ref) between two empirical distributions over the distinct correct answers of one prompt.

    p is this policy's, p_ref the reference's (the RL start). Both are smoothed over the union U
    of correct answers seen in either sample set: p_a = (count_a + alpha) / (total + alpha |U|),
    alpha = ``pseudocount`` (0.5, the Krichevsky-Trofimov estimator), so an answer one policy
    never produced does not make the KL infinite. 0 when the two samples have the same counts;
    grows as the policy reshapes (e.g. concentrates) its mass among correct answers. NaN when
    either sample has no correct answer.
    """
    if pseudocount <= 0:
        raise ValueError(f"pseudocount must be > 0, got {pseudocount}.")
    p_counts, q_counts = _correct_counts(answers, correct), _correct_counts(ref_answers, ref_correct)
    if not p_counts or not q_counts:
        return float("nan")
    support = sorted(set(p_counts) | set(q_counts))
    p = torch.tensor([p_counts.get(a, 0) for a in support], dtype=torch.float64) + pseudocount
    q = torch.tensor([q_counts.get(a, 0) for a in support], dtype=torch.float64) + pseudocount
    return float(kl_divergence(p / p.sum(), q / q.sum()))


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

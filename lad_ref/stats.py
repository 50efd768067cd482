"""Multiplicity for paired seed comparisons: a sign-flip permutation p-value and Holm's step-down adjustment.

The study reports each paired difference A - B (per seed s: d_s = metric(A, s) - metric(B, s)) with a
bootstrap CI (``lad_ref.metrics.bootstrap_mean_ci``). A table holds many such comparisons, so some CIs exclude 0
by chance alone; the report states, per table, how many comparisons survive Holm's correction:

* :func:`sign_flip_p` — two-sided p-value of H0 "d_s is symmetric about 0" (A and B exchangeable within each
  seed): the share of the 2^n sign patterns e in {-1, +1}^n with |mean(e * d)| >= |mean(d)|, enumerated exactly
  for n <= ``EXACT_MAX`` (the observed pattern counts, so p >= 2 / 2^n: 4 seeds can never reach 0.05, 8 seeds
  reach 0.0078); beyond, ``n_resamples`` random patterns with a fixed seed and p = (1 + hits) / (1 + n_resamples).
* :func:`holm` — Holm's step-down adjusted p-values (controls the family-wise error rate, no assumption on the
  dependence between the tests): with p_(1) <= ... <= p_(m),
  adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)); a test survives at level alpha when adj <= alpha.

Pure functions of lists of floats (numpy only; no torch).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Largest number of seeds whose 2^n sign patterns are enumerated exactly (2^16 = 65,536 patterns).
EXACT_MAX = 16


def sign_flip_p(diffs: Sequence[float], *, n_resamples: int = 65_536, seed: int = 0) -> float:
    """Two-sided paired sign-flip permutation p-value of the mean of ``diffs`` (see the module doc)."""
    d = np.asarray(diffs, dtype=np.float64).ravel()
    if d.size < 1 or not np.isfinite(d).all():
        raise ValueError(f"sign_flip_p needs at least one finite difference, got {list(diffs)!r}.")
    n = d.size
    observed = abs(d.mean())
    tol = 1e-12 * max(1.0, np.abs(d).max())  # patterns whose mean equals the observed one up to rounding count
    if n <= EXACT_MAX:
        bits = (np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1
        means = np.abs((1 - 2 * bits) @ d) / n
        return float((means >= observed - tol).mean())
    rng = np.random.default_rng(seed)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(n_resamples, n))
    hits = int((np.abs(signs @ d) / n >= observed - tol).sum())
    return (1 + hits) / (1 + n_resamples)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the order given (see the module doc)."""
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    if p.size and (np.isnan(p).any() or (p < 0).any() or (p > 1).any()):
        raise ValueError(f"holm needs p-values in [0, 1], got {list(pvalues)!r}.")
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out.tolist()


def holm_survivors(pvalues: Sequence[float], alpha: float = 0.05) -> int:
    """How many of the family's tests survive Holm's correction at level ``alpha``."""
    return sum(a <= alpha for a in holm(pvalues))

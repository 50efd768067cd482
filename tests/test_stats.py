"""lad_ref.stats: the sign-flip permutation p-value and Holm's adjustment on hand-checked examples."""

from __future__ import annotations

import itertools

import pytest

from lad_ref.stats import holm, holm_survivors, sign_flip_p


def test_holm_textbook_example():
    # Holm (1979)-style example: m = 4, p = 0.01, 0.04, 0.03, 0.005 -> sorted 0.005, 0.01, 0.03, 0.04,
    # multiplied by 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    adj = holm([0.01, 0.04, 0.03, 0.005])
    assert adj == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_survivors([0.01, 0.04, 0.03, 0.005]) == 2
    # the step-down stops at the first failure even if a later raw p is small enough alone
    assert holm_survivors([0.02, 0.02, 0.02]) == 0  # 3 x 0.02 = 0.06 > 0.05
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]) == [] and holm([0.04]) == [0.04]


def test_holm_matches_statsmodels_when_available():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = [0.001, 0.2, 0.013, 0.04, 0.049, 0.0001, 0.7]
    want = multitest.multipletests(p, alpha=0.05, method="holm")[1]
    assert holm(p) == pytest.approx(list(want))


def test_sign_flip_exact_small_cases():
    # 4 seeds all positive: only the all-+ and all-- patterns reach |mean| = observed -> 2/16
    assert sign_flip_p([1.0, 2.0, 3.0, 4.0]) == pytest.approx(2 / 16)
    # 8 seeds all positive and equal: 2 / 256
    assert sign_flip_p([0.5] * 8) == pytest.approx(2 / 256)
    # mean 0 -> every pattern is at least as extreme -> p = 1
    assert sign_flip_p([1.0, -1.0, 2.0, -2.0]) == 1.0


def test_sign_flip_equals_brute_force():
    d = [0.3, -0.1, 0.25, 0.4, -0.05, 0.2, 0.1]
    obs = abs(sum(d) / len(d))
    hits = sum(abs(sum(s * x for s, x in zip(signs, d)) / len(d)) >= obs - 1e-12
               for signs in itertools.product((-1, 1), repeat=len(d)))
    assert sign_flip_p(d) == pytest.approx(hits / 2 ** len(d))


def test_sign_flip_monte_carlo_beyond_exact_is_close_and_reproducible():
    d = [0.1 * ((i % 5) - 1.5) + 0.05 for i in range(20)]
    p1, p2 = sign_flip_p(d), sign_flip_p(d)
    assert p1 == p2 and 0 < p1 <= 1


def test_bad_inputs():
    with pytest.raises(ValueError, match="at least one finite difference"):
        sign_flip_p([float("nan"), 1.0])
    with pytest.raises(ValueError, match=r"p-values in \[0, 1\]"):
        holm([0.1, 1.5])

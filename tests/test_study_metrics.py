"""The diversity-study metrics: the pass@k curve, correct-answer entropy and KL, brake statistics."""

import math

import pytest
import torch

from lad_ref.metrics import correct_answer_entropy, correct_answer_kl, pass_at_k, pass_at_k_curve


@pytest.mark.parametrize("n", [1, 7, 32, 256])
def test_pass_at_k_curve_equals_scalar_estimator_for_every_k(n):
    counts = sorted({0, 1, n // 3, n // 2, n - 1, n})
    curve = pass_at_k_curve(n, counts)
    assert curve.shape == (len(counts), n)
    for row, c in zip(curve, counts):
        for k in range(1, n + 1):
            assert row[k - 1].item() == pytest.approx(pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_curve_is_monotone_and_ends_at_any_correct():
    curve = pass_at_k_curve(64, [0, 3, 20])
    assert bool((curve[:, 1:] >= curve[:, :-1] - 1e-15).all())
    assert curve[:, -1].tolist() == [0.0, 1.0, 1.0]
    assert curve[1, 0].item() == pytest.approx(3 / 64)  # pass@1 = c / n


def test_pass_at_k_curve_bad_input():
    with pytest.raises(ValueError, match="num_correct"):
        pass_at_k_curve(8, [9])


def test_correct_answer_entropy():
    ans = ["1+2", "2+1", " 1+2", "3+0", "x"]
    ok = [True, True, True, True, False]
    # counts over correct answers: 1+2 twice (after strip), 2+1 once, 3+0 once -> p = (1/2, 1/4, 1/4)
    expected = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert correct_answer_entropy(ans, ok) == pytest.approx(expected)
    assert correct_answer_entropy(["a", "a", "a"], [True] * 3) == 0.0  # collapsed onto one answer
    assert correct_answer_entropy(list("abcd"), [True] * 4) == pytest.approx(math.log(4))  # uniform: log(distinct)
    assert math.isnan(correct_answer_entropy(["a"], [False]))


def test_correct_answer_kl():
    a = ["1", "2", "3", "4"]
    assert correct_answer_kl(a, [True] * 4, list(reversed(a)), [True] * 4) == pytest.approx(0.0, abs=1e-12)
    collapsed = correct_answer_kl(["1"] * 4, [True] * 4, a, [True] * 4)
    spread = correct_answer_kl(["1", "1", "2", "3"], [True] * 4, a, [True] * 4)
    assert collapsed > spread > 0  # concentrating on one answer moves further from a uniform start
    # the smoothed value by hand: support {1,2,3,4}, p = (4.5, .5, .5, .5)/6, q = uniform
    p = torch.tensor([4.5, 0.5, 0.5, 0.5]) / 6
    assert collapsed == pytest.approx(float((p * (p / 0.25).log()).sum()), rel=1e-6)
    assert math.isnan(correct_answer_kl(["1"], [False], a, [True] * 4))
    with pytest.raises(ValueError, match="pseudocount"):
        correct_answer_kl(a, [True] * 4, a, [True] * 4, pseudocount=0)


def test_brake_stats_quantiles_pool_the_minibatches():
    from lad_ref.llm.train import brake_stats

    first = torch.zeros(50)  # the first minibatch of a step: pi_theta = pi_old, log r = 0
    last = torch.linspace(-1.0, 1.0, 101)
    s = brake_stats([first, last])
    pooled = torch.cat([first, last])
    assert s["brake/log_ratio_q50"] == pytest.approx(torch.quantile(pooled, 0.5).item())
    assert s["brake/log_ratio_q05"] == pytest.approx(torch.quantile(pooled, 0.05).item())
    assert s["brake/log_ratio_abs_max"] == 1.0
    assert s["brake/last_q95"] == pytest.approx(0.9) and s["brake/last_q05"] == pytest.approx(-0.9)
    assert brake_stats([]) == {}

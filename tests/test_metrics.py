import itertools

import pytest
import torch

from lad_ref.metrics import (
    avg_at_k,
    count_distinct_correct,
    dist_n,
    kl_divergence,
    modes_recovered,
    pass_at_k,
    tv_distance,
)


def brute_pass_at_k(n, c, k):
    outcomes = [1] * c + [0] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(outcomes[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n,c,k", [(8, 0, 1), (8, 1, 1), (8, 3, 4), (8, 8, 8), (10, 2, 5), (6, 5, 2)])
def test_pass_at_k_equals_subset_enumeration(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k))


def test_pass_at_k_bad_input():
    with pytest.raises(ValueError, match="num_correct"):
        pass_at_k(4, 5, 1)


def test_avg_at_k():
    assert avg_at_k([[True, False], [True, True, True, False]]) == pytest.approx((0.5 + 0.75) / 2)


def test_dist_n():
    assert dist_n(["abab"], 2) == pytest.approx(2 / 3)  # ab, ba, ab
    assert dist_n([[1, 2, 3], [1, 2, 3]], 3) == pytest.approx(1 / 2)
    assert dist_n(["a"], 2) == 0.0


def test_distinct_correct():
    assert count_distinct_correct(["1+2", "2+1", "1+2 ", "3"], [True, True, True, False]) == 2


def test_tv_and_kl():
    p = torch.tensor([0.5, 0.5, 0.0])
    q = torch.tensor([0.25, 0.25, 0.5])
    assert float(tv_distance(p, q)) == pytest.approx(0.5)
    assert float(kl_divergence(p, q)) == pytest.approx(2 * 0.5 * torch.log(torch.tensor(2.0)).item())
    assert float(kl_divergence(q, p)) == float("inf")


def test_modes_recovered():
    target = torch.zeros(50)
    target[[10, 25, 40]] = 1 / 3
    policy = torch.zeros(50)
    policy[25] = 1.0
    assert modes_recovered(policy, target, (10, 25, 40), (2, 2, 2)) == 1
    assert modes_recovered(target, target, (10, 25, 40), (2, 2, 2)) == 3
    spread = torch.zeros(50)
    spread[[9, 26, 41]] = 1 / 3  # inside the +-2 sd windows
    assert modes_recovered(spread, target, (10, 25, 40), (2, 2, 2)) == 3

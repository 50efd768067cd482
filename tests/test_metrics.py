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


# --- distributions over answers: entropy, effective number, conditional, bootstrap CI ---------------

from lad_ref.metrics import bootstrap_mean_ci, conditional, effective_number, entropy  # noqa: E402


def test_effective_number_of_uniform_is_n_and_of_a_point_mass_is_1():
    for n in (1, 2, 7, 50):
        assert float(effective_number(torch.full((n,), 1.0 / n, dtype=torch.float64))) == pytest.approx(n, rel=1e-12)
    assert float(effective_number(torch.tensor([0.0, 1.0, 0.0]))) == pytest.approx(1.0)
    # uniform on 3 of 5 outcomes (zeros contribute 0 log 0 = 0), batched over rows
    p = torch.tensor([[1 / 3, 1 / 3, 0.0, 1 / 3, 0.0], [0.5, 0.5, 0.0, 0.0, 0.0]])
    assert effective_number(p).tolist() == pytest.approx([3.0, 2.0])
    assert float(entropy(torch.tensor([0.5, 0.5]))) == pytest.approx(float(torch.log(torch.tensor(2.0))))
    # between 1 and n for an uneven distribution
    assert 1.0 < float(effective_number(torch.tensor([0.7, 0.2, 0.1]))) < 3.0


def test_conditional_restricts_and_renormalises():
    p = torch.tensor([0.1, 0.2, 0.3, 0.4])
    mask = torch.tensor([True, False, True, False])
    q = conditional(p, mask)
    assert q.tolist() == pytest.approx([0.25, 0.0, 0.75, 0.0])
    # ratios inside the subset are kept, and scaling p inside it changes nothing
    scaled = p.clone()
    scaled[mask] *= 0.1
    assert conditional(scaled / scaled.sum(), mask).tolist() == pytest.approx(q.tolist())
    # batched rows, KL to itself is zero
    rows = torch.stack([p, p.flip(0)])
    qs = conditional(rows, mask)
    assert qs.sum(-1).tolist() == pytest.approx([1.0, 1.0])
    assert float(kl_divergence(qs[0], qs[0])) == 0.0
    with pytest.raises(ValueError, match="no mass on the subset"):
        conditional(torch.tensor([0.0, 1.0, 0.0, 0.0]), mask)
    with pytest.raises(ValueError, match="mask has 3 entries but p has 4"):
        conditional(p, torch.tensor([True, False, True]))


def test_bootstrap_mean_ci():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    lo, hi = bootstrap_mean_ci(x, n_boot=4000)
    assert lo < 4.5 < hi and (lo, hi) == bootstrap_mean_ci(x, n_boot=4000)  # reproducible
    assert 2.5 < lo and hi < 6.5
    # more data, narrower interval; a constant sample has a zero-width one
    lo2, hi2 = bootstrap_mean_ci(x.repeat(10), n_boot=4000)
    assert hi2 - lo2 < (hi - lo) / 2
    assert bootstrap_mean_ci(torch.full((5,), 2.0), n_boot=500) == pytest.approx((2.0, 2.0))
    with pytest.raises(ValueError, match="at least 2 finite values"):
        bootstrap_mean_ci(torch.tensor([1.0]))

import pytest
import torch

from lad_ref.advantages import compute_advantages


def test_grpo_matches_hand_computation():
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 2.0])
    groups = torch.tensor([0, 0, 0, 1, 1, 1, 2])
    adv = compute_advantages(rewards, groups, "grpo")
    # group 0: mean 2/3, unbiased std sqrt(1/3)
    s = (1 / 3) ** 0.5
    expected = [(1 - 2 / 3) / (s + 1e-6), (0 - 2 / 3) / (s + 1e-6), (1 - 2 / 3) / (s + 1e-6)]
    expected += [(1 - 1 / 3) / (s + 1e-6), (0 - 1 / 3) / (s + 1e-6), (0 - 1 / 3) / (s + 1e-6), 0.0]
    torch.testing.assert_close(adv, torch.tensor(expected))


def test_drgrpo_and_rloo():
    rewards = torch.tensor([3.0, 1.0, 2.0, 5.0])
    groups = torch.tensor([7, 7, 7, 9])
    torch.testing.assert_close(compute_advantages(rewards, groups, "drgrpo"), torch.tensor([1.0, -1.0, 0.0, 0.0]))
    # RLOO: r_i - mean of the others
    torch.testing.assert_close(compute_advantages(rewards, groups, "rloo"), torch.tensor([1.5, -1.5, 0.0, 0.0]))


def test_interleaved_groups_equal_contiguous_groups():
    g = torch.Generator().manual_seed(0)
    rewards = torch.rand(24, generator=g)
    groups = torch.arange(24) // 8
    perm = torch.randperm(24, generator=g)
    for est in ("grpo", "drgrpo", "rloo"):
        a = compute_advantages(rewards, groups, est)
        b = compute_advantages(rewards[perm], groups[perm], est)
        torch.testing.assert_close(a[perm], b)


def test_grpo_constant_group_is_zero():
    adv = compute_advantages(torch.ones(4), torch.zeros(4, dtype=torch.long), "grpo")
    assert torch.equal(adv, torch.zeros(4))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(estimator="ppo"), "unknown advantage estimator 'ppo'"),
        (dict(rewards=torch.tensor([1.0, float("nan")])), "NaN or inf"),
        (dict(group_ids=torch.zeros(3, dtype=torch.long)), "shape"),
    ],
)
def test_bad_input(kwargs, match):
    args = dict(rewards=torch.tensor([1.0, 0.0]), group_ids=torch.zeros(2, dtype=torch.long), estimator="grpo")
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        compute_advantages(**args)

"""The 50-armed trimodal bandit: a target distribution known exactly, for checking LAD."""

from lad_ref.bandit.env import TrimodalBandit
from lad_ref.bandit.train import BanditRun, sweep_runs, train_bandit

__all__ = ["TrimodalBandit", "BanditRun", "sweep_runs", "train_bandit"]

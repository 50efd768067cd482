"""Every random number of a run, derived from its one ``seed``.

A run never draws from a shared random stream whose position depends on what ran before;
each draw is seeded by :func:`sub_seed` (seed, tag, step, ...). So resume needs no iterator
state, the same (seed, step) gives the same rollouts for GRPO and LAD (paired comparisons),
and evaluation samples do not depend on how much training happened first. The tags keep the
streams apart: a new kind of draw takes a new tag here, never a number written at its call site.
"""

from __future__ import annotations

import enum
import random

import torch


class Tag(enum.IntEnum):
    """Which stream a derived seed belongs to (values are part of every cached/recorded result)."""

    SFT = 1  # SFT data order and dropout
    EVAL = 3  # held-out evaluation samples
    DATA = 10  # order of the RL prompt stream, per data epoch
    ROLLOUT = 11  # RL rollout sampling, per step
    SHUFFLE = 12  # minibatch shuffles, per (step, epoch)
    LOSS = 13  # the loss's own randomness (Clip-Cov's draw) and the log Z head's init


def sub_seed(seed: int, *parts: int) -> int:
    """A derived 63-bit seed: every random draw of a run is a pure function of (seed, step, ...)."""
    x = seed & 0x7FFFFFFFFFFFFFFF
    for p in parts:
        x = (x * 6364136223846793005 + 1442695040888963407 + int(p)) & 0x7FFFFFFFFFFFFFFF
    return x


def seed_everything(seed: int) -> None:
    """Seed Python's, torch's and numpy's global generators (for library code that draws from them)."""
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover
        pass


def rng_state() -> dict:
    """The global generators' states, for a checkpoint."""
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    try:
        import numpy as np

        state["numpy"] = np.random.get_state()
    except ImportError:  # pragma: no cover
        pass
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` saved."""
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        import numpy as np

        np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])

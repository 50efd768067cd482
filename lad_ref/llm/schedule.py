"""The learning-rate schedule of both the SFT warm start and RL: linear warm-up, then decay.

One function so that the two phases cannot drift apart; each passes its own settings (SFT:
cosine to 10 % of the peak; RL: ``optim.schedule`` / ``optim.min_lr_ratio``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

SCHEDULES: tuple[str, ...] = ("constant", "linear", "cosine")


def warmup_then_decay(warmup_steps: int, total_steps: int, schedule: str, min_lr_ratio: float) -> Callable[[int], float]:
    """Multiplier of the peak learning rate at optimizer update ``u`` (for ``torch.optim.lr_scheduler.LambdaLR``).

        u < W:   (u + 1) / W
        else:    m + (1 - m) * shape(t),   t = min(1, (u - W) / max(1, total - W))

    with shape = 1 (constant), 1 - t (linear) or (1 + cos(pi t)) / 2 (cosine), m = ``min_lr_ratio``.
    The product is written ``(1 - m) * 0.5 * (1 + cos)`` on purpose: that is the order the SFT
    warm start has always used, so cached SFT checkpoints stay bit-for-bit reproducible.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; valid choices are {', '.join(SCHEDULES)}.")

    def multiplier(u: int) -> float:
        if u < warmup_steps:
            return (u + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        t = min(1.0, (u - warmup_steps) / max(1, total_steps - warmup_steps))
        if schedule == "linear":
            return min_lr_ratio + (1.0 - min_lr_ratio) * (1.0 - t)
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))

    return multiplier

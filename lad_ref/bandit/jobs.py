"""The bandit's runs trained side by side: chunks of runs in worker processes (lad_ref.sweep).

``train_bandit`` trains all its runs in one loop: their logits are rows of one tensor, the loss is the
sum of the runs' losses (so row j's gradient is run j's alone) and Adam's state is per element; every
run draws from its own generator. A run's numbers therefore do not depend on which other runs share
its process, and splitting the runs into chunks gives the same numbers bit for bit
(tests/test_bandit.py checks it), in about 1/jobs of the time on idle cores.
"""

from __future__ import annotations

import time

from lad_ref.bandit.train import BanditRun, train_bandit
from lad_ref.sweep import Job, default_jobs, run_jobs


def default_bandit_jobs(runs: list[BanditRun]) -> int:
    """The CPUs this process may use, capped by the number of run groups (objective, seed)."""
    return default_jobs(len({(r.objective, r.seed) for r in runs}))


def _train_chunk(arg: tuple) -> list[dict]:
    runs, steps, lr = arg
    return train_bandit(runs, steps=steps, lr=lr, progress=False)


def train_split(runs: list[BanditRun], *, steps: int, lr: float, jobs: int, progress: bool = True) -> list[dict]:
    """``train_bandit(runs, ...)`` with the runs dealt round-robin into ``jobs`` chunks trained side by side;
    results in the runs' order, each with ``wall_s_all_runs`` the wall time of the whole sweep."""
    jobs = max(1, min(jobs, len(runs)))
    if jobs == 1:
        return train_bandit(runs, steps=steps, lr=lr, progress=progress)
    chunks = [list(range(i, len(runs), jobs)) for i in range(jobs)]
    start = time.perf_counter()
    parts = run_jobs([Job(f"bandit runs {', '.join(runs[j].label() for j in c)}", _train_chunk,
                          ([runs[j] for j in c], steps, lr)) for c in chunks],
                     jobs, progress=progress, desc="bandit chunks")
    wall = round(time.perf_counter() - start, 3)
    out: list[dict] = [{}] * len(runs)
    for c, part in zip(chunks, parts):
        for j, res in zip(c, part):
            out[j] = {**res, "wall_s_all_runs": wall}
    return out

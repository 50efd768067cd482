"""Run a function in N CPU processes under torch.distributed (gloo), as torchrun / accelerate launch would.

:func:`run_ranks` spawns ``world_size`` processes with the environment a launcher sets (``MASTER_ADDR``,
``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``), calls
``fn(rank, world_size, *args)`` in each and returns the per-rank results (anything ``torch.save`` can
write). Whoever initialises the process group inside ``fn`` (accelerate's ``PartialState`` for TRL, or
:func:`init_gloo`) finds that environment. ``world_size = 1`` runs the same code in one spawned process
without a process group, so a one-process reference goes through exactly the same code path.

Also: :func:`flat_grad` (a model's gradient as one vector) and :func:`rel_diff` (the relative
difference ||a - b|| / ||b|| that the multi-rank tests assert on and report).
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port that was free a moment ago (the rendezvous of one spawned group)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, fn, world_size: int, port: int, out_dir: str, args: tuple) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world_size),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    torch.set_num_threads(1)  # N ranks share the machine's cores; keeps the float reduction order fixed
    try:
        result = fn(rank, world_size, *args)
        tmp = Path(out_dir) / f"rank{rank}.pt.tmp"
        torch.save(result, tmp)
        os.replace(tmp, Path(out_dir) / f"rank{rank}.pt")
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def run_ranks(fn, world_size: int, *args) -> list:
    """``[fn(0, world_size, *args), ..., fn(world_size - 1, world_size, *args)]``, each in its own process.

    ``fn`` must be importable by name (a module-level function). A rank that raises makes this raise
    (torch.multiprocessing.ProcessRaisedException with the rank's traceback).
    """
    with tempfile.TemporaryDirectory(prefix="lad_dist_") as out:
        mp.spawn(_entry, args=(fn, world_size, free_port(), out, args), nprocs=world_size, join=True)
        return [torch.load(Path(out) / f"rank{r}.pt", weights_only=False) for r in range(world_size)]


def init_gloo() -> None:
    """Initialise the default process group with gloo from the launcher environment (no-op for one rank)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")


def flat_grad(params) -> torch.Tensor:
    """The gradients of ``params`` concatenated into one float64 vector (zeros where a grad is None)."""
    return torch.cat(
        [(p.grad if p.grad is not None else torch.zeros_like(p)).detach().double().flatten() for p in params]
    )


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| (the reference is ``b``)."""
    return float((a.double() - b.double()).norm() / b.double().norm().clamp(min=1e-300))

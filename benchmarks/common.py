"""Timing helpers: warm-up discarded, A/B interleaved, medians with min-max, machine description."""

from __future__ import annotations

import atexit
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from lad_ref.llm.files import write_atomic

RESULTS_DIR = Path(__file__).parent / "results"


_SFT_CACHE: Path | None = None


def sft_cache() -> Path:
    """One SFT cache for the whole ``python -m benchmarks`` process (a temporary folder, removed at
    exit): the trainer and TRL sections start from the same warm start, trained once and not timed,
    and nothing of the user's own cache is read or written."""
    global _SFT_CACHE
    if _SFT_CACHE is None:
        _SFT_CACHE = Path(tempfile.mkdtemp(prefix="lad_ref_bench_sft_"))
        atexit.register(shutil.rmtree, _SFT_CACHE, ignore_errors=True)
    return _SFT_CACHE


def machine() -> dict:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info


def machine_name() -> str:
    m = machine()
    if m["gpu"]:
        return m["gpu"].lower().replace(" ", "-")
    return f"cpu-{m['cores']}core"


def interleaved(
    fns: dict[str, Callable[[], object]], repeats: int = 7, warmup: int = 2, number: int = 1
) -> dict[str, dict]:
    """Time each function ``repeats`` times, interleaving them so that drifts in the machine's load hit
    every candidate alike; the order reverses every round (A B C, C B A, ...) so that no candidate
    always runs right after the same neighbour (whose freed memory or warm caches it would inherit).
    Each sample is the mean of ``number`` back-to-back calls (as in ``timeit``: calls of a millisecond
    or less are otherwise at the mercy of the timer and the scheduler). The first ``warmup`` rounds
    are discarded."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for i in range(warmup + repeats):
        for name in names if i % 2 == 0 else reversed(names):
            fn = fns[name]
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            if i >= warmup:
                times[name].append((time.perf_counter() - t0) / number)
    return {k: summarise(v) for k, v in times.items()}


def summarise(samples: list[float]) -> dict:
    return {"median_s": statistics.median(samples), "min_s": min(samples), "max_s": max(samples), "n": len(samples)}


def write_results(section: str, payload: dict, name: str | None = None) -> Path:
    """Merge ``payload`` under ``section`` into benchmarks/results/<machine>.json."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name or machine_name()}.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data["machine"] = machine()
    data[section] = payload
    write_atomic(path, json.dumps(data, indent=2) + "\n")
    return path

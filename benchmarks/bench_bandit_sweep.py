"""The bandit's ``--all`` sweep before and after it ran in worker processes (issue 20), side by side.

    python -m benchmarks.bench_bandit_sweep                  # c70ec88 vs this tree, 3 repeats each (make bench-bandit-sweep)
    python -m benchmarks.bench_bandit_sweep --before <rev> --repeats 5 --jobs 2

BEFORE is the code at a git revision (default c70ec88, the last commit before the sweep runner), extracted
with ``git archive`` into a temporary folder and run with PYTHONPATH pointing there; AFTER is this tree.
Both run ``python -m lad_ref.bandit --config bandit/paper_exact.yaml --all --json`` as separate processes,
alternately (B A, A B, B A, ...), so that a drift in the machine's load hits both alike. Every run's JSON
output must equal the other's (all fields but ``wall_s_all_runs``): the split must not change a number.
The 1-minute load average is recorded before and after each run: on a shared machine the absolute times
are not a quiet machine's. The CPU seconds of each command (its workers included) over its wall time
give the cores it actually got: where that stays near 1 for AFTER, the machine had no second core to
give (other jobs, or the scheduler's per-session fairness), and the wall-time ratio says nothing about
the split. The target is <= 8 s wall (process) on an idle 2-core machine.

Writes ``benchmarks/results/bandit-sweep-<machine>.json`` and ``.md`` (``--name`` to choose the stem).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from benchmarks.common import RESULTS_DIR, machine, machine_name, summarise
from lad_ref.llm.files import write_atomic

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "c70ec88"
CONFIG = "bandit/paper_exact.yaml"
TARGET_S = 8.0


def extract(rev: str, dest: Path) -> Path:
    """The tree of ``rev`` (git archive) under ``dest``; returns the folder."""
    tar = dest / "tree.tar"
    with open(tar, "wb") as f:
        subprocess.run(["git", "archive", "--format=tar", rev], cwd=ROOT, stdout=f, check=True)
    out = dest / rev
    out.mkdir()
    with tarfile.open(tar) as t:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 / 3.12
            t.extractall(out, filter="data")
        else:
            t.extractall(out)
    tar.unlink()
    return out


def run_once(checkout: Path, jobs: int | None) -> dict:
    """One ``--all --json`` sweep in ``checkout``: process wall, the sweep time it reports, its runs, loads."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    cmd = [sys.executable, "-m", "lad_ref.bandit", "--config", str(checkout / CONFIG), "--all", "--json"]
    if jobs is not None:
        cmd += ["--jobs", str(jobs)]
    load0 = os.getloadavg()[0]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)  # the command and its workers
    runs = [json.loads(line) for line in out.splitlines()]
    return {"wall": wall, "sweep": runs[0]["wall_s_all_runs"], "runs": runs, "cpu": cpu,
            "load1": [round(load0, 2), round(os.getloadavg()[0], 2)]}


def _numbers(runs: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "wall_s_all_runs"} for r in runs]


def compare(before: str = BEFORE, repeats: int = 3, jobs: int | None = None) -> dict:
    samples: dict[str, list[dict]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="lad_ref_bench_sweep_") as tmp:
        where = {"before": extract(before, Path(tmp)), "after": ROOT}
        order = ["before", "after"]
        for i in range(repeats):
            for name in order if i % 2 == 0 else reversed(order):
                samples[name].append(run_once(where[name], jobs if name == "after" else None))
    reference = _numbers(samples["before"][0]["runs"])
    identical = all(_numbers(s["runs"]) == reference for v in samples.values() for s in v)
    out: dict = {"config": CONFIG, "before_rev": before, "repeats": repeats, "jobs_after": jobs or "default",
                 "runs": len(reference), "identical_json": identical, "target_wall_s": TARGET_S}
    for name, v in samples.items():
        out[name] = {"wall": summarise([s["wall"] for s in v]), "sweep": summarise([s["sweep"] for s in v]),
                     "cpu": summarise([s["cpu"] for s in v]),
                     # CPU seconds over wall seconds: the cores the command actually got (2 on an idle 2-core
                     # machine for AFTER; on a shared one the scheduler may give its process tree far less)
                     "cores_used": summarise([s["cpu"] / s["wall"] for s in v]),
                     "load1_before_after": [s["load1"] for s in v]}
    out["wall_ratio_after_over_before"] = out["after"]["wall"]["median_s"] / out["before"]["wall"]["median_s"]
    out["cpus_available"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    out["machine"] = machine()
    return out


def markdown(res: dict) -> str:
    m = res["machine"]
    loads = [x for name in ("before", "after") for pair in res[name]["load1_before_after"] for x in pair]
    lines = [
        f"# Bandit `--all` sweep before / after the sweep runner (`--config {res['config']}`, {res['runs']} runs)",
        "",
        f"Measured with `python -m benchmarks.bench_bandit_sweep --repeats {res['repeats']}` (`make bench-bandit-sweep`): "
        f"BEFORE = {res['before_rev']} (git archive), AFTER = this tree with --jobs {res['jobs_after']}; separate processes, "
        f"alternating. Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}; 1-minute load average "
        f"{min(loads):.2f}-{max(loads):.2f} during the runs (the target, <= {res['target_wall_s']:g} s, is for an idle "
        "2-core machine).",
        "",
        "| code | process wall median | min-max | sweep (reported by the run) median | CPU s (all processes) | "
        "cores used (CPU / wall) |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("before", "after"):
        w, s, c, u = res[name]["wall"], res[name]["sweep"], res[name]["cpu"], res[name]["cores_used"]
        lines.append(f"| {name} | {w['median_s']:.1f} s | {w['min_s']:.1f}-{w['max_s']:.1f} s | {s['median_s']:.1f} s | "
                     f"{c['median_s']:.1f} | {u['median_s']:.2f} |")
    lines += ["", f"after / before (wall medians): {res['wall_ratio_after_over_before']:.2f}. "
              f"JSON outputs identical (every field but wall_s_all_runs): {'yes' if res['identical_json'] else 'NO'}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_bandit_sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("--before", default=BEFORE, help=f"git revision of the BEFORE code (default {BEFORE})")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--jobs", type=int, default=None, help="--jobs of the AFTER runs (default: its own default)")
    p.add_argument("--name", default=None, help="results file stem (default bandit-sweep-<machine>)")
    args = p.parse_args(argv)
    res = compare(args.before, args.repeats, args.jobs)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stem = RESULTS_DIR / (args.name or f"bandit-sweep-{machine_name()}")
    write_atomic(stem.with_suffix(".json"), json.dumps(res, indent=2) + "\n")
    write_atomic(stem.with_suffix(".md"), markdown(res))
    print(markdown(res))
    if not res["identical_json"]:
        print("error: the JSON outputs differ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

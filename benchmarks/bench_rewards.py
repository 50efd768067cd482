"""Grader throughput and agreement: math grades/s with 1 and N workers side by side, sandboxed code tests/s
against plain ``python -I -S``, and the held-out math corpus (lad_ref vs plain math-verify).

* math: :func:`lad_ref.rewards.batch.grade_math` on synthetic items whose answer strings are all new
  (fractions, intervals, sets, polynomials; see :func:`synthetic_math`), so no cache of math-verify or of
  ours is hit: a lower bound for training, where the 16 samples of a group often share an answer string.
  ``workers=1`` grades in this process, more workers in the warm pool (started before timing). The
  repeats of each worker count are interleaved, and CPU seconds per item (this process + the pool's
  workers) give the ratio N free cores would reach (see :func:`math_rates`).
* code: one tiny stdin program per item, one test each, through :func:`grade_code` (root launcher, or
  bubblewrap when not root); the same programs through plain ``python -I -S -B file`` (no isolation) show
  the sandbox's cost; a HumanEval-style test-code item (program and test in two sandboxes); when run as
  root with bubblewrap installed, the non-root mode is measured too (as uid 65534).
* held-out: :func:`heldout_agreement` on tests/data/heldout_math_cases.jsonl.

Each rate is the median of ``repeats`` runs (after a warm-up run). ``uptime`` is recorded before and after:
on a shared machine other jobs take cores, which lowers the multi-worker numbers. ``--write`` stores
benchmarks/results/rewards-cpu-2core.{json,md}.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lad_ref.rewards.batch import default_workers, grade_code, grade_math

HELDOUT_PATH = Path(__file__).resolve().parents[1] / "tests" / "data" / "heldout_math_cases.jsonl"
PROGRAM = "a, b = map(int, input().split())\nprint(a + b)\n"
TESTS = [{"input": "2 3\n", "output": "5\n"}]
STEP_PROMPTS, STEP_SAMPLES = 512, 16


def heldout_agreement() -> dict:
    """lad_ref and plain math-verify (``verify(parse(gold), parse(prediction))``, its defaults) on the held-out
    corpus: agreement with the source projects' verdicts, false positives (verdict 0 scored 1) and false
    negatives, overall and per source project. The corpus was written before the normalisation and is not
    used to tune it (tests/data/build_heldout_math_cases.py)."""
    from math_verify import parse, verify

    from lad_ref.rewards.math import math_reward

    rows = [json.loads(line) for line in HELDOUT_PATH.read_text(encoding="utf-8").splitlines() if line.strip()]

    def plain(pred, gold):
        try:
            return int(bool(verify(parse(gold), parse(pred))))
        except Exception:
            return 0

    out: dict = {"cases": len(rows)}
    for name, grade in (("lad_ref", lambda p, g: int(math_reward(p, g))), ("math_verify", plain)):
        got = [grade(r["prediction"], r["gold"]) for r in rows]
        per: dict = {}
        for r, g in zip(rows, got):
            project = r["source"].split("@")[0]
            s = per.setdefault(project, {"cases": 0, "agree": 0, "false_positives": 0, "false_negatives": 0})
            s["cases"] += 1
            s["agree"] += g == r["verdict"]
            s["false_positives"] += g == 1 and r["verdict"] == 0
            s["false_negatives"] += g == 0 and r["verdict"] == 1
        out[name] = {
            "agree": sum(s["agree"] for s in per.values()),
            "false_positives": sum(s["false_positives"] for s in per.values()),
            "false_negatives": sum(s["false_negatives"] for s in per.values()),
            "per_project": per,
            "verdicts": got,
        }
    return out


def _median_rate(fn, items: int, repeats: int) -> dict:
    fn()  # warm-up: imports, pool start, caches
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"per_s": items / med, "median_s": med, "min_s": min(times), "max_s": max(times), "items": items}


_offset = [0]


def synthetic_math(n: int) -> tuple[list[str], list[str]]:
    """``n`` (completion, gold) pairs, every answer string new to this process: math-verify caches parsed
    LaTeX, so repeating the corpus would time cache hits. Four kinds: an equivalent fraction, a half-open
    interval, a reordered set, a reordered polynomial -- all correct, each parsed and verified in full."""
    start = _offset[0]
    _offset[0] += n
    completions, golds = [], []
    for i in range(start, start + n):
        kind = i % 4
        if kind == 0:
            golds.append(f"\\frac{{{i + 1}}}{{{i + 3}}}")
            completions.append(f"Simplifying, the answer is $\\boxed{{\\frac{{{2 * (i + 1)}}}{{{2 * (i + 3)}}}}}$.")
        elif kind == 1:
            golds.append(f"[{i}, {i + 5})")
            completions.append(f"The solution set is $\\boxed{{[{i},{i + 5})}}$.")
        elif kind == 2:
            golds.append(f"\\{{{i}, {i + 2}\\}}")
            completions.append(f"So the roots form $\\boxed{{\\{{{i + 2}, {i}\\}}}}$.")
        else:
            golds.append(f"{i}x^2 + {i + 1}")
            completions.append(f"Collecting terms we get $\\boxed{{{i + 1} + {i}x^2}}$.")
    return completions, golds


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (/proc/<pid>/stat)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def math_rates(worker_counts: tuple[int, ...] = (1, 2), n: int = 400, repeats: int = 3) -> dict:
    """grades/s with each worker count, measured side by side: the repeats are interleaved (1, 2, 1, 2, ...)
    so a change of the machine's load hits every count alike. Also CPU seconds per item (this process plus
    the pool's workers, from /proc): on an idle machine N workers reach N / (cpu per item) items/s, so
    ``projected_idle_ratio`` = N x (one worker's CPU per item) / (N workers' CPU per item) is what the pool
    would give with N free cores; the measured ratio is lower when other jobs hold the cores."""
    import multiprocessing

    def once(workers: int) -> tuple[float, float]:
        completions, golds = synthetic_math(n)
        pids = [p.pid for p in multiprocessing.active_children()]
        cpu0, t0 = time.process_time() + _cpu_s(pids), time.perf_counter()
        assert grade_math(completions, golds, workers=workers) == [1.0] * n
        wall = time.perf_counter() - t0
        return wall, time.process_time() + _cpu_s(pids) - cpu0

    for w in worker_counts:  # warm-up: imports, pool start, caches
        once(w)
    samples: dict[int, list[tuple[float, float]]] = {w: [] for w in worker_counts}
    for _ in range(repeats):
        for w in worker_counts:
            samples[w].append(once(w))
    out: dict = {}
    for w, rows in samples.items():
        walls = [r[0] for r in rows]
        med = statistics.median(walls)
        out[f"workers_{w}"] = {"per_s": n / med, "median_s": med, "min_s": min(walls), "max_s": max(walls),
                               "items": n, "cpu_ms_per_item": 1e3 * statistics.median(r[1] for r in rows) / n}
    one = out["workers_1"]
    for w in worker_counts[1:]:
        r = out[f"workers_{w}"]
        r["measured_ratio"] = r["per_s"] / one["per_s"]
        r["target_ratio"] = 0.8 * w
        r["projected_idle_ratio"] = w * one["cpu_ms_per_item"] / r["cpu_ms_per_item"]
    return out


def _plain_run(path: str) -> bool:
    out = subprocess.run([sys.executable, "-I", "-S", "-B", path], input=TESTS[0]["input"], capture_output=True,
                         text=True, timeout=30, env={})
    return out.stdout.strip() == TESTS[0]["output"].strip()


ADD_FN = "def add(a, b):\n    return a + b\n"
ADD_TEST_CODE = {"test": "def check(candidate):\n    assert candidate(2, 3) == 5\n", "entry_point": "add"}


def code_rates(workers: int, n: int = 64, repeats: int = 3, plain: bool = True) -> dict:
    programs, tests = [PROGRAM] * n, [TESTS] * n
    out = {"sandbox_one_core": _median_rate(lambda: grade_code(programs, tests, workers=1), n, repeats)}
    # HumanEval-style test code: two sandboxes per test (the program's and the test's)
    out["test_code_one_core"] = _median_rate(
        lambda: grade_code([ADD_FN] * n, [ADD_TEST_CODE] * n, workers=1), n, repeats)
    if workers > 1:
        out["sandbox_all_cores"] = _median_rate(lambda: grade_code(programs, tests, workers=workers), n, repeats)
    if not plain:
        return out
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "prog.py")
        Path(path).write_text(PROGRAM)
        out["plain_one_core"] = _median_rate(lambda: [_plain_run(path) for _ in range(n)], n, repeats)
        if workers > 1:
            def plain_all():
                with ThreadPoolExecutor(workers) as pool:
                    list(pool.map(_plain_run, [path] * n))
            out["plain_all_cores"] = _median_rate(plain_all, n, repeats)
    return out


def bwrap_rates(workers: int, n: int = 64, repeats: int = 3) -> dict | None:
    """The non-root (bubblewrap) mode, measured as uid 65534 when this process is root."""
    setpriv, bwrap = shutil.which("setpriv"), shutil.which("bwrap")
    if os.geteuid() != 0 or not (setpriv and bwrap):
        return None
    root = Path(__file__).resolve().parents[1]
    code = (f"import json; from benchmarks.bench_rewards import code_rates; "
            f"r = code_rates({workers}, n={n}, repeats={repeats}, plain=False); "
            f"print(json.dumps({{k: v for k, v in r.items() if k.startswith('sandbox')}}))")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": str(root)}
    drop = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    prefix = os.path.realpath(sys.base_prefix)
    blocked = next((p for p in Path(prefix).parents if p != Path("/") and not os.stat(p).st_mode & 0o001), None)
    if blocked is not None and shutil.which("unshare"):  # pyenv under a 0700 /root: bind it in, privately
        script = ('set -e; src=$(mktemp -d); mount --bind "$1" "$src"; mount -t tmpfs -o mode=755 tmpfs "$2"; '
                  'mkdir -p "$1"; mount --bind "$src" "$1"; shift 2; exec "$@"')
        drop = [shutil.which("unshare"), "--mount", "--propagation", "private", "sh", "-c", script, "sh", prefix,
                str(blocked), *drop]
    out = subprocess.run([*drop, sys.executable, "-c", code],
                         cwd=root, env=env, capture_output=True, text=True, timeout=1200)
    if out.returncode != 0:
        return {"error": out.stderr[-500:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> dict:
    workers = default_workers()
    load_before = os.getloadavg()
    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    repeats = 1 if quick else 3
    counts = tuple(sorted({1, 2, workers}))
    math = math_rates(counts, n=40 if quick else 400, repeats=repeats)
    code = code_rates(workers, n=8 if quick else 64, repeats=repeats)
    bw = None if quick else bwrap_rates(workers)
    held = heldout_agreement()
    for name in ("lad_ref", "math_verify"):
        held[name].pop("verdicts")
    load_after = os.getloadavg()
    uptime_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    res = {"workers": workers, "load_avg_before": load_before, "load_avg_after": load_after,
           "uptime_before": uptime_before, "uptime_after": uptime_after, "math": math, "code": code, "bwrap": bw,
           "heldout_math": held}
    step = STEP_PROMPTS * STEP_SAMPLES
    best_math = max(v["per_s"] for v in math.values())
    best_code = code.get("sandbox_all_cores", code["sandbox_one_core"])["per_s"]
    res["rl_step"] = {
        "responses": step,
        "math_s": step / best_math,
        "math_s_one_core": step / math["workers_1"]["per_s"],
        "code_s_per_test": step / best_code,  # x tests per problem (rLLM caps at 15)
    }
    lines = [
        f"Graders on {workers} cores. `uptime` before: {uptime_before}; after: {uptime_after}. The machine is "
        "shared (other jobs hold the cores), so measured multi-worker ratios are lower bounds; the projected "
        "ratio is from CPU seconds per item (what N free cores would give).",
        "",
        "| math grading | grades/s | CPU ms/item | measured / 1 worker | projected idle / 1 worker | target |",
        "|---|---|---|---|---|---|",
    ]
    for key, r in math.items():
        w = int(key.split("_")[1])
        if w == 1:
            lines.append(f"| 1 worker (in process) | {r['per_s']:.1f} | {r['cpu_ms_per_item']:.1f} | 1.00 | 1.00 | |")
        else:
            lines.append(f"| {w} workers (warm pool) | {r['per_s']:.1f} | {r['cpu_ms_per_item']:.1f} | "
                         f"{r['measured_ratio']:.2f} | {r['projected_idle_ratio']:.2f} | {r['target_ratio']:.1f} |")
    lines += ["", "| code tests | one core /s | all cores /s | all / one |", "|---|---|---|---|"]

    def row(name, one, all_=None):
        if not all_:  # not measured on all cores
            return f"| {name} | {one:.1f} | — | — |"
        return f"| {name} | {one:.1f} | {all_:.1f} | {all_ / one:.2f} |"

    lines.append(row("stdin program, sandbox (" + ("root" if os.geteuid() == 0 else "bwrap") + ")",
                     code["sandbox_one_core"]["per_s"], code.get("sandbox_all_cores", {}).get("per_s")))
    if bw and "error" not in bw:
        lines.append(row("stdin program, sandbox (bwrap, uid 65534)", bw["sandbox_one_core"]["per_s"],
                         bw.get("sandbox_all_cores", {}).get("per_s")))
    lines.append(row("stdin program, plain python -I -S", code["plain_one_core"]["per_s"],
                     code.get("plain_all_cores", {}).get("per_s")))
    lines.append(row("test code (program and test in two sandboxes)", code["test_code_one_core"]["per_s"]))
    overhead = 1 / code["sandbox_one_core"]["per_s"] - 1 / code["plain_one_core"]["per_s"]
    lm, mv = held["lad_ref"], held["math_verify"]
    lines += [
        "",
        f"Sandbox overhead over plain `python -I -S`: {overhead * 1e3:.1f} ms per test (one core).",
        "",
        f"Held-out math corpus ({held['cases']} cases from other projects' grader tests, "
        "tests/data/heldout_math_cases.jsonl): agreement with their verdicts "
        f"lad_ref {lm['agree']}/{held['cases']} ({lm['false_positives']} false positives, "
        f"{lm['false_negatives']} false negatives); plain math-verify {mv['agree']}/{held['cases']} "
        f"({mv['false_positives']} false positives, {mv['false_negatives']} false negatives).",
        "",
        f"RL step of {STEP_PROMPTS} prompts x {STEP_SAMPLES} samples = {step} responses on this machine: "
        f"math grading {res['rl_step']['math_s']:.1f} s ({res['rl_step']['math_s_one_core']:.1f} s with one "
        f"worker); code {res['rl_step']['code_s_per_test']:.1f} s per test per problem (x15 at rLLM's cap).",
    ]
    res["markdown"] = "\n".join(lines)
    return res


def write_results(res: dict, stem: str = "rewards-cpu-2core") -> None:
    """benchmarks/results/<stem>.json and .md, each written whole (temporary file + rename)."""
    out_dir = Path(__file__).resolve().parent / "results"
    for suffix, text in ((".json", json.dumps(res, indent=2) + "\n"), (".md", res["markdown"] + "\n")):
        fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{stem}")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, out_dir / f"{stem}{suffix}")


if __name__ == "__main__":
    result = run(quick="--quick" in sys.argv)
    if "--write" in sys.argv:
        write_results(result)
    print(result["markdown"])

"""Grader throughput: math calls/s and sandboxed programs/s, one core vs all cores, sandbox vs plain
``python -I -S``, and what that means for one RL step of 512 prompts x 16 samples.

* math: :func:`lad_ref.rewards.batch.grade_math` on synthetic items whose answer strings are all new
  (fractions, intervals, sets, polynomials; see :func:`synthetic_math`), so no cache of math-verify or of
  ours is hit: a lower bound for training, where the 16 samples of a group often share an answer string;
  ``workers=1`` grades in this process, ``workers=cores`` in the process pool (warmed up first).
* code: one tiny stdin program per item, one test each, through :func:`grade_code` (root launcher, or
  bubblewrap when not root); the same programs through plain ``python -I -S -B file`` (no isolation) show
  the sandbox's cost; when run as root with bubblewrap installed, the non-root mode is measured too (as
  uid 65534, through setpriv).

Each measurement is the median of ``repeats`` runs (first run discarded as warm-up). The machine's load
average is recorded before and after: on a shared machine other jobs take cores, which lowers the
all-core numbers (the "x one core" ratio is then a lower bound of what the code can do).
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

PROGRAM = "a, b = map(int, input().split())\nprint(a + b)\n"
TESTS = [{"input": "2 3\n", "output": "5\n"}]
STEP_PROMPTS, STEP_SAMPLES = 512, 16


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


def math_rates(workers: int, n: int = 400, repeats: int = 3) -> dict:
    def one():
        completions, golds = synthetic_math(n)
        assert grade_math(completions, golds, workers=1) == [1.0] * n

    def all_cores():
        completions, golds = synthetic_math(n)
        assert grade_math(completions, golds, workers=workers) == [1.0] * n

    out = {"one_core": _median_rate(one, n, repeats)}
    if workers > 1:
        out["all_cores"] = _median_rate(all_cores, n, repeats)
    return out


def _plain_run(path: str) -> bool:
    out = subprocess.run([sys.executable, "-I", "-S", "-B", path], input=TESTS[0]["input"], capture_output=True,
                         text=True, timeout=30, env={})
    return out.stdout.strip() == TESTS[0]["output"].strip()


def code_rates(workers: int, n: int = 64, repeats: int = 3, plain: bool = True) -> dict:
    programs, tests = [PROGRAM] * n, [TESTS] * n
    out = {"sandbox_one_core": _median_rate(lambda: grade_code(programs, tests, workers=1), n, repeats)}
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
    out = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
                         cwd=root, env=env, capture_output=True, text=True, timeout=1200)
    if out.returncode != 0:
        return {"error": out.stderr[-500:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> dict:
    workers = default_workers()
    load_before = os.getloadavg()
    repeats = 1 if quick else 3
    math = math_rates(workers, n=40 if quick else 400, repeats=repeats)
    code = code_rates(workers, n=8 if quick else 64, repeats=repeats)
    bw = None if quick else bwrap_rates(workers)
    load_after = os.getloadavg()
    res = {"workers": workers, "load_avg_before": load_before, "load_avg_after": load_after, "math": math,
           "code": code, "bwrap": bw}
    step = STEP_PROMPTS * STEP_SAMPLES
    best_math = math.get("all_cores", math["one_core"])["per_s"]
    best_code = code.get("sandbox_all_cores", code["sandbox_one_core"])["per_s"]
    res["rl_step"] = {
        "responses": step,
        "math_s": step / best_math,
        "math_s_one_core": step / math["one_core"]["per_s"],
        "code_s_per_test": step / best_code,  # x tests per problem (rLLM caps at 15)
    }
    lines = [
        f"Graders on {workers} cores (load average {load_before[0]:.1f} before, {load_after[0]:.1f} after; "
        "the machine is shared, so all-core figures are lower bounds).",
        "",
        "| grader | one core /s | all cores /s | all / one | target 0.8 x cores |",
        "|---|---|---|---|---|",
    ]

    def row(name, one, all_):
        ratio = all_ / one if all_ else float("nan")
        return f"| {name} | {one:.1f} | {all_:.1f} | {ratio:.2f} | {0.8 * workers:.1f} |"

    m1, ma = math["one_core"]["per_s"], math.get("all_cores", {}).get("per_s", 0.0)
    lines.append(row("math_reward calls", m1, ma))
    lines.append(row("programs, sandbox (" + ("root" if os.geteuid() == 0 else "bwrap") + ")",
                     code["sandbox_one_core"]["per_s"], code.get("sandbox_all_cores", {}).get("per_s", 0.0)))
    if bw and "error" not in bw:
        lines.append(row("programs, sandbox (bwrap, uid 65534)", bw["sandbox_one_core"]["per_s"],
                         bw.get("sandbox_all_cores", {}).get("per_s", 0.0)))
    lines.append(row("programs, plain python -I -S", code["plain_one_core"]["per_s"],
                     code.get("plain_all_cores", {}).get("per_s", 0.0)))
    overhead = 1 / code["sandbox_one_core"]["per_s"] - 1 / code["plain_one_core"]["per_s"]
    lines += [
        "",
        f"Sandbox overhead over plain `python -I -S`: {overhead * 1e3:.1f} ms per test (one core).",
        f"RL step of {STEP_PROMPTS} prompts x {STEP_SAMPLES} samples = {step} responses on this machine: "
        f"math grading {res['rl_step']['math_s']:.1f} s ({res['rl_step']['math_s_one_core']:.1f} s on one core); "
        f"code {res['rl_step']['code_s_per_test']:.1f} s per test per problem (x15 at rLLM's cap). Grading "
        "scales with cores: divide by (cores x measured all/one per core) for a larger node.",
    ]
    res["markdown"] = "\n".join(lines)
    return res


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))

"""``python -m benchmarks [section ...]``: measure, write benchmarks/results/<machine>.json and
benchmarks/results/<machine>.md. Sections: bandit, loss, trainer, trl, gpu (skipped without CUDA), rewards (grader throughput)."""

from __future__ import annotations

import argparse
import json
import sys

import torch

from benchmarks import bench_bandit, bench_gpu, bench_loss, bench_rewards, bench_trainer, bench_trl
from benchmarks.common import RESULTS_DIR, machine, machine_name, write_results

SECTIONS = {"bandit": bench_bandit.run, "loss": bench_loss.run, "trainer": bench_trainer.run, "trl": bench_trl.run,
            "gpu": bench_gpu.run, "rewards": bench_rewards.run}


def table(data: dict) -> str:
    m = data["machine"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads)"
             + (f", GPU {m['gpu']}" if m.get("gpu") else ""), ""]
    if "bandit" in data:
        b = data["bandit"]
        w = b["sweep_wall"]
        lines += [
            "| bandit | median | min-max | target |",
            "|---|---|---|---|",
            f"| `--all --mode exact` ({b['sweep_runs']} runs x {b['sweep_steps']} steps) | {w['median_s']:.2f} s "
            f"| {w['min_s']:.2f}-{w['max_s']:.2f} s | <= {b['target_sweep_s']} s |",
        ]
        for k, v in b["steps_per_s"].items():
            lines.append(f"| one run, {k} | {v:.0f} steps/s | | |")
        lines.append(f"| closed-form optimum (floor) | {b['closed_form_optimum_s'] * 1e6:.0f} us | | |")
        lines.append("")
    if "loss" in data:
        lo = data["loss"]
        lines += [f"| loss fwd+bwd at {lo['shape'][0]}x{lo['shape'][1]} tokens | median ms | min-max ms | / GRPO |",
                  "|---|---|---|---|"]
        for k, v in lo["timings"].items():
            lines.append(f"| {k} | {v['median_s'] * 1e3:.2f} | {v['min_s'] * 1e3:.2f}-{v['max_s'] * 1e3:.2f} "
                         f"| {lo['ratio_to_grpo'][k]:.2f} |")
        lines.append(f"\nTarget: LAD / GRPO <= {lo['target_lad_over_grpo']} for the loss alone.")
        if lo.get("with_vocab"):
            lines += ["", "| hidden -> logits -> chunked log-softmax -> loss, fwd+bwd | GRPO ms | LAD(js) ms | LAD / GRPO |",
                      "|---|---|---|---|"]
            for v in lo["with_vocab"]:
                gt, lt = v["timings"]["grpo"], v["timings"]["lad(js)"]
                lines.append(f"| vocab {v['vocab']:,}, {v['shape'][0]}x{v['shape'][1]} tokens, hidden {v['hidden']} "
                             f"| {gt['median_s'] * 1e3:.0f} ({gt['min_s'] * 1e3:.0f}-{gt['max_s'] * 1e3:.0f}) "
                             f"| {lt['median_s'] * 1e3:.0f} ({lt['min_s'] * 1e3:.0f}-{lt['max_s'] * 1e3:.0f}) "
                             f"| {v['lad_over_grpo']:.2f} |")
        lines.append("")
    if data.get("gpu", {}).get("skipped"):
        lines += [f"GPU section: skipped ({data['gpu']['skipped']}).", ""]
    for key in data:
        if key not in ("machine", "bandit", "loss") and isinstance(data[key], dict) and "markdown" in data[key]:
            lines += [data[key]["markdown"], ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("sections", nargs="*", choices=[*SECTIONS, []], help="sections to run (default: all)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    chosen = args.sections or list(SECTIONS)
    print(f"machine: {json.dumps(machine())}", file=sys.stderr)
    path = None
    for name in chosen:
        print(f"running {name} ...", file=sys.stderr)
        path = write_results(name, SECTIONS[name]())
    data = json.loads(path.read_text())
    md = RESULTS_DIR / f"{machine_name()}.md"
    md.write_text(table(data) + "\n")
    print(md.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

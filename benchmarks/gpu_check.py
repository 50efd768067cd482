"""``make gpu-check`` / ``python -m benchmarks.gpu_check``: the GPU path, proven by one command.

On a CUDA machine (about 4-6 minutes on one H100/H200-class GPU; the budget is 8) it runs

1. ``toy``: the toy experiment in bf16 through the real trainer (``llm/configs/toy-gpu.yaml``,
   shortened: SFT, a few RL steps of LAD(js) and of GRPO from the same SFT start, evaluation),
   with gradient checkpointing and HF rollouts. The model is the config's (Qwen2.5-0.5B) when it
   can be loaded without the network (a local folder or the Hugging Face cache), else the ``tiny``
   preset in bf16; the JSON says which;
2. ``qwen2_0_5b``: ``benchmarks.bench_gpu`` on a randomly initialised Qwen2.5-0.5B-shaped model:
   generation through each HF rollout path (plain ``generate``, static KV cache + torch.compile,
   continuous batching) with tokens/s and whether the samples equal plain ``generate``'s for the
   same seed; full fine-tuning steps with gradient checkpointing and LoRA steps (peft), GRPO and
   LAD(js) interleaved; training tokens/s, peak memory, the LAD/GRPO step ratio, MFU.

It writes ``gpu-<device>.json`` and ``gpu-<device>.md`` (device, torch, transformers and peft
versions, every figure) into ``--out`` (default ``benchmarks/results``; ``runs/gpu-check`` for the
CPU smoke), after each part, so a
run cut short still leaves what it measured, and exits with status 1 if any part failed
(an exception, a non-finite loss, a toy run that did not finish). Without CUDA the same code
runs with tiny shapes on the CPU and exits 0: CI runs it (tests/test_gpu_check.py), so it cannot
rot between the rare occasions when a GPU is there.

It needs only torch, transformers, peft, accelerate, tokenizers, safetensors, numpy, tqdm,
matplotlib and pyyaml (no vLLM, no math-verify, no pyarrow), runs from the repository root
without installing the project, and never touches the network (``HF_HUB_OFFLINE=1``).

Why here and not in ``lad_ref``: it is a measurement, like the rest of ``benchmarks/``, and reuses
``bench_gpu``; the library stays free of benchmark code. docs/gpu.md says how to run it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

# Set before transformers is imported anywhere: the GPU machine has no network, and a hub lookup
# would wait for its timeouts instead of failing at once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# A bare GPU image lacks the trainer's pure-Python config library (omegaconf); `make gpu-deps` copies
# it into .gpu_pythonpath/ to carry along. Appended, so an image that has it keeps its own.
if (ROOT / ".gpu_pythonpath").is_dir():
    sys.path.append(str(ROOT / ".gpu_pythonpath"))
TOY_CONFIG = ROOT / "llm" / "configs" / "toy-gpu.yaml"
RESULTS_DIR = ROOT / "benchmarks" / "results"

TRAINING_RESERVE_S = 120.0  # kept free of generation measurements for the training steps (see --budget-s)

# Shapes: "cuda" is what the check measures on a GPU; "cpu" is the smoke that CI runs.
SHAPES = {
    "cuda": {
        "toy": {"sft.steps": 40, "sft.batch_size": 64, "optim.steps": 4, "rollout.prompts_per_step": 16,
                "rollout.group_size": 8, "optim.mini_batch_size": 64, "optim.micro_batch_size": 64,
                "eval.num_samples": 8, "eval.pass_ks": [1, 4]},
        "bench": {"gen_batch": 64, "prompt_len": 128, "new_tokens": 256, "train_batch": 8, "seq_len": 1024,
                  "response_len": 768, "repeats": 5, "gen_repeats": 2},
    },
    "cpu": {
        "toy": {"sft.steps": 4, "sft.batch_size": 16, "optim.steps": 2, "rollout.prompts_per_step": 4,
                "rollout.group_size": 4, "optim.mini_batch_size": 8, "optim.micro_batch_size": 8,
                "eval.num_samples": 2, "eval.pass_ks": [1], "data.max_eval_prompts": 6, "eval.batch_size": 64},
        "bench": {"model_kwargs": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                                   "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300,
                                   "max_position_embeddings": 64, "tie_word_embeddings": True},
                  "gen_batch": 4, "prompt_len": 4, "new_tokens": 6, "train_batch": 2, "seq_len": 12,
                  "response_len": 6, "repeats": 1, "gen_repeats": 1},
    },
}


def environment(device: str) -> dict:
    """What the figures were measured with."""
    import transformers

    env = {"device": torch.cuda.get_device_name(0) if device == "cuda" else f"cpu ({platform.machine()})",
           "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "transformers": transformers.__version__}
    for pkg in ("peft", "accelerate"):
        try:
            env[pkg] = __import__(pkg).__version__
        except ImportError:
            env[pkg] = None
    try:
        import vllm  # noqa: F401

        env["vllm"] = vllm.__version__
    except ImportError:
        env["vllm"] = None  # the vLLM backend is run only where vLLM is installed
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        env["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        env["bf16_supported"] = torch.cuda.is_bf16_supported()
    return env


def device_slug(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3' (the results file name)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def loadable_offline(name_or_path: str) -> bool:
    """Whether ``from_pretrained(name_or_path)`` can work without the network: a local folder, or a
    hub id whose config, tokenizer and (single-file or sharded) safetensors are in the HF cache."""
    if Path(name_or_path).is_dir():
        return True
    try:
        from huggingface_hub import try_to_load_from_cache

        def cached(f: str) -> bool:
            return isinstance(try_to_load_from_cache(name_or_path, f), str)

        return cached("config.json") and cached("tokenizer.json") and (
            cached("model.safetensors") or cached("model.safetensors.index.json"))
    except Exception:  # noqa: BLE001 - an unusual hub client counts as "not available"
        return False


def toy(device: str, work: Path, overrides: dict, config: Path = TOY_CONFIG) -> dict:
    """LAD(js) then GRPO on the toy task from one shared SFT start, through ``lad_ref.llm.train``."""
    from lad_ref.llm.checkpoint import prepare_run_dir, read_metrics
    from lad_ref.llm.config import resolve
    from lad_ref.llm.tasks import build_task
    from lad_ref.llm.train import train

    base = resolve(str(config), {})
    model = base.model.name_or_path
    if device != "cuda" or not loadable_offline(model):
        model = "tiny"  # the same code path (bf16, gradient checkpointing) on a model built locally
    out: dict = {"config": str(config.relative_to(ROOT)) if config.is_relative_to(ROOT) else str(config),
                 "model": model, "runs": {}}
    for objective in ("lad", "grpo"):
        ov = {**overrides, "device": device, "model.name_or_path": model, "objective.name": objective,
              "rollout.backend": "hf", "sft.cache_dir": str(work / "sft"), "output_dir": str(work / objective),
              "eval.every": 0, "checkpoint.every": 1000, "logging.progress_bar": False}
        cfg = resolve(str(config), ov)
        out["dtype"], out["gradient_checkpointing"] = cfg.model.dtype, cfg.model.gradient_checkpointing
        task = build_task(cfg)
        run = prepare_run_dir(cfg.output_dir, resume=False, overwrite=False)
        t0 = time.perf_counter()
        results = train(cfg, task, run, progress=False)
        wall = time.perf_counter() - t0
        rows = [r for r in read_metrics(run) if r.get("step", 0) > 0]
        if len(rows) != cfg.optim.steps or "final" not in results:
            raise RuntimeError(f"the toy {objective} run logged {len(rows)} of {cfg.optim.steps} RL steps")
        losses = [r["train/loss"] for r in rows]
        if not all(map(lambda x: abs(x) < float("inf"), losses)):  # NaN fails the comparison too
            raise FloatingPointError(f"the toy {objective} run logged a non-finite loss: {losses}")
        out["runs"][objective] = {
            "wall_s": wall, "steps": len(rows),
            "step_s": sum(r["time/step_s"] for r in rows) / len(rows),
            "rollout_s": sum(r["time/rollout_s"] for r in rows) / len(rows),
            "update_s": sum(r["time/update_s"] for r in rows) / len(rows),
            "logprob_max_abs_diff": max(r["rollout/logprob_max_abs_diff"] for r in rows),
            "start_avg_at_k": results["start"]["avg_at_k"], "final_avg_at_k": results["final"]["avg_at_k"],
            "losses": losses,
        }
    r = out["runs"]
    out["lad_over_grpo_update"] = r["lad"]["update_s"] / r["grpo"]["update_s"]
    return out


def toy_markdown(t: dict) -> str:
    lines = [f"Toy run (`{t['config']}`, model `{t['model']}`, {t['dtype']}, gradient checkpointing "
             f"{'on' if t['gradient_checkpointing'] else 'off'}; shortened, so accuracy is not the point):", "",
             "| objective | RL steps | s/step | rollout s | update s | avg@k start -> final "
             "| max abs log-prob diff (gen vs recompute) |",
             "|---|---|---|---|---|---|---|"]
    for k, v in t["runs"].items():
        lines.append(f"| {k} | {v['steps']} | {v['step_s']:.2f} | {v['rollout_s']:.2f} | {v['update_s']:.2f} "
                     f"| {v['start_avg_at_k']:.3f} -> {v['final_avg_at_k']:.3f} | {v['logprob_max_abs_diff']:.2g} |")
    lines.append(f"\nLAD / GRPO update time in the trainer: {t['lad_over_grpo_update']:.2f} "
                 f"(a few steps only: noisy).")
    return "\n".join(lines)


def recommendation(gen: dict) -> str:
    """One sentence on which HF rollout path to use, from this run's generation figures."""
    best, same = gen.get("fastest"), gen.get("fastest_same_samples")
    if not best:
        return "No generation path finished; no recommendation."
    up = gen.get("speedup_over_hf", {})
    s = (f"Fastest generation path here: `{best}` ({up.get(best, float('nan')):.2f}x plain `hf`). "
         f"Fastest that gives the same samples as `hf` for a seed: `{same or 'none'}`")
    s += f" ({up.get(same, float('nan')):.2f}x)." if same else "."
    s += (" The shipped default is `rollout.backend: hf` (chosen before any GPU measurement); "
          f"set `rollout.backend: {same}` in a GPU config to use the faster path" if same and same != "hf"
          else " Keep `rollout.backend: hf`")
    return s + "."


def markdown(data: dict) -> str:
    env = data["environment"]
    lines = [f"# gpu-check: {env['device']}", "",
             f"torch {env['torch']} (CUDA {env['cuda']}), transformers {env['transformers']}, peft {env['peft']}, "
             f"accelerate {env['accelerate']}, vLLM {env['vllm'] or 'not installed'}, python {env['python']}; "
             f"mode {data['mode']}, total {data['wall_s']:.0f} s, status **{data['status']}**.", ""]
    if data["mode"] != "cuda":
        lines += ["Tiny shapes on a CPU: this run tests that the code works; its figures measure nothing.", ""]
    for name, sec in data["sections"].items():
        lines.append(f"## {name} ({sec.get('wall_s', 0):.0f} s)")
        lines.append("")
        if "error" in sec:
            lines += ["FAILED:", "", "```", sec["error"].strip()[-2000:], "```", ""]
        if "result" not in sec:
            continue
        if name == "toy":
            lines += [toy_markdown(sec["result"]), ""]
        elif name == "qwen2_0_5b":
            lines += [sec["result"]["markdown"], "", recommendation(sec["result"]["generation"]), ""]
    return "\n".join(lines)


def write(data: dict, out: Path, stem: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    (out / f"{stem}.md").write_text(markdown(data) + "\n")
    return out / f"{stem}.md"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=None,
                   help="folder for gpu-<device>.json and .md (default: benchmarks/results on CUDA; "
                        "runs/gpu-check for the CPU smoke, which is not a result to commit)")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                   help="auto: cuda if available, else the tiny CPU smoke")
    p.add_argument("--only", choices=("toy", "qwen2_0_5b"), action="append",
                   help="run only these parts (repeatable; default: both)")
    p.add_argument("--budget-s", type=float, default=480.0,
                   help="CUDA: time budget of the whole check (default 480 s = 8 min): no generation path starts "
                        f"later than {TRAINING_RESERVE_S:.0f} s before it ends (it is then marked skipped)")
    p.add_argument("--toy-config", type=Path, default=TOY_CONFIG, help="the toy run's config (default: toy-gpu.yaml)")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but no CUDA GPU is visible; valid choices here are auto, cpu.")
    if not args.toy_config.is_file():
        p.error(f"--toy-config {str(args.toy_config)!r} is not a file.")
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    device = "cpu" if device == "auto" else device
    shapes = SHAPES[device]
    args.out = args.out or (RESULTS_DIR if device == "cuda" else ROOT / "runs" / "gpu-check")
    parts = args.only or ["toy", "qwen2_0_5b"]

    from benchmarks import bench_gpu  # after the environment variables above

    env = environment(device)
    stem = "gpu-" + device_slug(env["device"] if device == "cuda" else "cpu-smoke")
    data = {"mode": "cuda" if device == "cuda" else "cpu smoke (tiny shapes)", "environment": env,
            "sections": {}, "status": "running", "wall_s": 0.0}
    t_all = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="lad_ref_gpu_check_"))
    print(f"[gpu-check] {data['mode']} on {env['device']}; torch {env['torch']}, transformers "
          f"{env['transformers']}; writing {args.out / stem}.{{json,md}}", file=sys.stderr)
    try:
        for name in parts:
            print(f"[gpu-check] {name} ...", file=sys.stderr)
            t0 = time.perf_counter()
            try:
                if name == "toy":
                    result = toy(device, work, shapes["toy"], args.toy_config)
                else:
                    kw = dict(shapes["bench"])
                    mk = kw.pop("model_kwargs", None)
                    model_kwargs = {**bench_gpu.QWEN2_0_5B, **mk} if mk else None
                    # On CUDA no generation path starts later than budget - TRAINING_RESERVE_S into the
                    # check: training (about a minute on an H100, a GUESS) must still fit the budget.
                    # The CPU smoke has no budget (CI machines vary; it measures nothing).
                    deadline = t_all + args.budget_s - TRAINING_RESERVE_S if device == "cuda" else None
                    result = bench_gpu.run(model_kwargs, device=device, dtype=torch.bfloat16,
                                           gen_deadline=deadline, **kw)
                data["sections"][name] = {"result": result}
                if name == "qwen2_0_5b":  # a rollout path we ship that fails is a failure, figures kept
                    bad = {k: v["error"] for k, v in result["generation"]["paths"].items() if "error" in v}
                    if bad:
                        data["sections"][name]["error"] = "generation path(s) failed: " + "; ".join(
                            f"{k}: {v}" for k, v in bad.items())
            except Exception:  # noqa: BLE001 - record, go on with the other part, fail at the end
                data["sections"][name] = {"error": traceback.format_exc()}
                print(f"[gpu-check] {name} FAILED:\n{traceback.format_exc()}", file=sys.stderr)
            finally:
                gc.collect()  # the part's models and optimizer states, before the next part measures memory
                if device == "cuda":
                    torch.cuda.empty_cache()
            data["sections"][name]["wall_s"] = time.perf_counter() - t0
            data["wall_s"] = time.perf_counter() - t_all
            write(data, args.out, stem)  # after every part: a run cut short keeps what it measured
    finally:
        shutil.rmtree(work, ignore_errors=True)
    failed = [k for k, v in data["sections"].items() if "error" in v]
    data["status"] = f"failed ({', '.join(failed)})" if failed else "ok"
    data["wall_s"] = time.perf_counter() - t_all
    md = write(data, args.out, stem)
    print(md.read_text())
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

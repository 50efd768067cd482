"""Held-out evaluation: k samples per prompt -> avg@k, pass@k, distinct correct answers, dist-n, length.

Used during training (start, every ``eval.every`` steps, final) and standalone::

    python -m lad_ref.llm.evaluate --run runs/toy-lad              # the run's latest checkpoint
    python -m lad_ref.llm.evaluate --run runs/toy-lad --checkpoint start --num-samples 64

or from Python (notebooks, studies): ``evaluate_run(run, "start", num_samples=64)``.

Metrics (all averaged over held-out prompts; k = ``eval.num_samples``):

* ``avg_at_k``: mean correctness of the k samples (avg@k, the paper's Avg@32 / Avg@16);
* ``pass_at_k``: unbiased pass@k, 1 - C(n-c, k)/C(n, k) with n = k samples (= "any correct");
  ``pass_at_<j>`` for each j in ``eval.pass_ks``, from the same n = k samples;
* ``distinct_correct``: number of distinct correct answers among the k samples
  (``task.answer_key``: the expression for the toy task, the normalised response for math/code);
  ``solution_coverage``: the same divided by the number of correct answers the prompt has,
  where the task knows it (toy task);
* ``dist_1`` .. ``dist_4``: distinct n-grams / total n-grams of the prompt's k responses
  (response token ids, EOS excluded), i.e. *within-prompt* diversity (across prompts
  responses differ trivially);
* ``response_length``: mean response length in tokens (EOS included); ``truncated_frac``;
* ``correct_answer_entropy``: entropy (nats) of the empirical distribution over the prompt's
  distinct correct answers (``lad_ref.metrics.correct_answer_entropy``), averaged over the
  prompts with at least one correct sample (``prompts_with_correct`` says how many);
* ``policy_entropy``: mean over sampled response tokens of -log pi(token), an unbiased estimate of
  the policy's per-token entropy under its own sampling distribution (from the generation log-probs,
  no extra forward pass);
* ``pass_at_k_curve``: the unbiased pass@j for every j = 1..k from the same n = k samples
  (``lad_ref.metrics.pass_at_k_curve``), a list of k numbers averaged over prompts.

The sampled responses come back per prompt (with ``num_correct``), so a study can compute
distribution-level metrics against another policy's samples (``correct_answer_kl``).

The sampling RNG is seeded from the run seed only, so every evaluation of a run uses the
same random numbers (common random numbers: start and final differ only by the policy). The
prompts are cut into chunks by ``eval.batch_size`` alone, so the seed a prompt is sampled with
depends on (run seed, prompt position, eval settings) and not on the objective: runs of different
methods with the same seed are evaluated with the same random numbers (the study's pairing).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from lad_ref.llm.seeding import Tag, sub_seed
from lad_ref.llm.tasks import task_rewards
from lad_ref.metrics import correct_answer_entropy, count_distinct_correct, dist_n, pass_at_k, pass_at_k_curve

HEADLINE = ("avg_at_k", "pass_at_k", "distinct_correct", "dist_3")


def eval_seed(seed: int) -> int:
    return sub_seed(seed, Tag.EVAL)


def score_responses(task, examples, batch, k: int, pass_ks=(), eos_ids=()) -> tuple[list[dict], list[dict]]:
    """Per-prompt metrics and samples of a RolloutBatch holding k responses per example (rows grouped by example)."""
    per_prompt = []
    samples = []
    eos = set(eos_ids)
    # one batched call: math and code tasks grade across every core
    rewards = task_rewards(task, [ex for ex in examples for _ in range(k)], batch.texts[: len(examples) * k])
    for i, ex in enumerate(examples):
        rows = range(i * k, (i + 1) * k)
        texts = [batch.texts[r] for r in rows]
        correct = [rewards[r] >= 1.0 for r in rows]
        keys = [task.answer_key(t) for t in texts]
        token_seqs = []
        for r in rows:
            ids = batch.response_ids[r][batch.response_mask[r].bool()].tolist()
            token_seqs.append([t for t in ids if t not in eos])
        c = sum(correct)
        distinct = count_distinct_correct(keys, correct)
        mask = batch.response_mask[list(rows)]
        row = {
            "_num_correct": c,
            "avg_at_k": c / k,
            "pass_at_k": pass_at_k(k, c, k),
            **{f"pass_at_{j}": pass_at_k(k, c, j) for j in pass_ks if j != k},
            "distinct_correct": float(distinct),
            "correct_answer_entropy": correct_answer_entropy(keys, correct),
            **{f"dist_{n}": dist_n(token_seqs, n) for n in (1, 2, 3, 4)},
            "response_length": float(mask.sum(-1).float().mean()),
            "truncated_frac": float(batch.truncated[list(rows)].float().mean()),
        }
        if batch.gen_log_probs is not None:
            # sums and counts, so the per-token mean is over all tokens of all prompts (not a mean of means)
            row["_neg_logp_sum"] = float(-(batch.gen_log_probs[list(rows)] * mask).sum())
            row["_tokens"] = float(mask.sum())
        n_sol = ex.meta.get("num_solutions") if ex.meta and "solution_coverage" in task.metrics else None
        if n_sol:
            row["solution_coverage"] = distinct / n_sol
        per_prompt.append(row)
        samples.append({"uid": ex.uid, "prompt": ex.prompt, "responses": texts, "correct": correct, "num_correct": c})
    return per_prompt, samples


def aggregate_prompts(per_prompt: list[dict], k: int) -> dict:
    """Means over prompts of :func:`score_responses`' rows, plus the pass@j curve for j = 1..k."""
    metrics = {}
    for key in per_prompt[0]:
        if key.startswith("_"):
            continue
        vals = [r[key] for r in per_prompt if key in r and r[key] == r[key]]  # r != r: NaN (no correct sample)
        metrics[key] = sum(vals) / len(vals) if vals else float("nan")
    metrics["prompts_with_correct"] = sum(1 for r in per_prompt if r["avg_at_k"] > 0)
    if "_tokens" in per_prompt[0]:
        # rounded: the generation logits differ in the last bits between the model in memory and its reloaded
        # checkpoint (reduction order), and a re-evaluation must reproduce the reported numbers
        h = sum(r["_neg_logp_sum"] for r in per_prompt) / max(1.0, sum(r["_tokens"] for r in per_prompt))
        metrics["policy_entropy"] = round(h, 5)
    counts = [r["_num_correct"] for r in per_prompt]
    metrics["pass_at_k_curve"] = pass_at_k_curve(k, counts).mean(0).tolist()
    metrics.update(num_prompts=len(per_prompt), k=k)
    return metrics


@torch.no_grad()
def evaluate_policy(model, rollout, task, examples, cfg, *, progress: bool = False) -> tuple[dict, list[dict]]:
    """Sample ``cfg.eval.num_samples`` responses per held-out example and score them."""
    e = cfg.eval
    k = e.num_samples
    max_new = e.max_new_tokens or cfg.rollout.max_new_tokens
    # Chunk by prompts so that each generate() call holds at most eval.batch_size sequences; the
    # seed of chunk c is fixed, so the result does not depend on what else the run did.
    per_chunk = max(1, e.batch_size // k)
    per_prompt, all_samples = [], []
    chunks = list(range(0, len(examples), per_chunk))
    for c, start in enumerate(tqdm(chunks, desc="eval", disable=not progress, leave=False)):
        exs = examples[start:start + per_chunk]
        batch = rollout.generate(
            model, [x.prompt for x in exs], k, max_new_tokens=max_new, temperature=e.temperature,
            top_p=e.top_p, top_k=e.top_k, seed=sub_seed(eval_seed(cfg.seed), c),
        )
        rows, s = score_responses(task, exs, batch, k, e.pass_ks, rollout.eos_ids)
        per_prompt += rows
        all_samples += s
    return aggregate_prompts(per_prompt, k), all_samples


# ======================================================================================
# CLI
# ======================================================================================


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m lad_ref.llm.evaluate",
        description="Evaluate a run's policy on its held-out prompts (avg@k, pass@k, distinct correct, dist-n).",
    )
    p.add_argument("--run", required=True, help="Run folder written by lad_ref.llm.train (reads its config.yaml).")
    p.add_argument(
        "--checkpoint", default="latest",
        help="'latest' (newest checkpoint, the default), 'start' (the policy RL started from), "
        "a checkpoint folder name such as step_000100, or a path to a model folder.",
    )
    p.add_argument("--num-samples", type=int, default=None, help="k: samples per prompt (default: the run's eval.num_samples).")
    p.add_argument("--max-prompts", type=int, default=None, help="Evaluate only the first N held-out prompts.")
    p.add_argument("--temperature", type=float, default=None, help="Sampling temperature (default: the run's).")
    p.add_argument("--output", default=None, help="Where to write the JSON (default: <run>/eval_<checkpoint>.json).")
    p.add_argument("--samples", action="store_true", help="Also write every sampled response to <output>.samples.jsonl.")
    p.add_argument("--device", default=None, help="cpu or cuda (default: the run's device setting).")
    p.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")
    return p


@dataclass
class EvalRequest:
    """What to evaluate, resolved and checked before any model is loaded (see :func:`prepare`)."""

    cfg: Any
    task: Any
    run: Path
    model_path: Any
    adapter_path: Any
    label: str
    device: Any
    examples: list


def prepare(run: str | Path, checkpoint: str = "latest", *, num_samples: int | None = None,
            temperature: float | None = None, device: str | None = None,
            max_prompts: int | None = None) -> EvalRequest:
    """Read ``run``'s config, apply the overrides and check everything; raises ConfigError / DataError."""
    from lad_ref.llm import checkpoint as ckpt
    from lad_ref.llm.config import ConfigError, from_dict, load_yaml, validate
    from lad_ref.llm.tasks import build_task

    run = Path(run)
    if not (run / "config.yaml").is_file():
        raise ConfigError(f"--run {str(run)!r} is not a run folder: it has no config.yaml.")
    ckpt.read_run_info(run)  # a corrupt run_info.json is named now
    cfg = validate(from_dict(load_yaml(run / "config.yaml")))
    if num_samples is not None:
        cfg.eval.num_samples = num_samples
        cfg.eval.pass_ks = [j for j in cfg.eval.pass_ks if j <= num_samples]
    if temperature is not None:
        cfg.eval.temperature = temperature
    if device is not None:
        cfg.device = device
    if max_prompts is not None and max_prompts < 1:
        raise ConfigError(f"--max-prompts {max_prompts} must be >= 1.")
    cfg = validate(cfg)  # --num-samples / --temperature / --device get the config file's checks
    task = build_task(cfg)
    model_path, adapter_path, label = ckpt.resolve_policy(run, checkpoint)
    examples = task.eval[:max_prompts] if max_prompts else task.eval
    return EvalRequest(cfg, task, run, model_path, adapter_path, label, ckpt.pick_device(cfg.device), examples)


def evaluate_request(req: EvalRequest, *, progress: bool = False) -> tuple[dict, list[dict]]:
    """Load the request's policy and evaluate it: (metrics, per-prompt samples)."""
    from lad_ref.llm.model import load_causal_lm, load_tokenizer, quiet_transformers
    from lad_ref.llm.rollout import build_rollout
    from lad_ref.threads import torch_threads

    quiet_transformers()
    with torch_threads(req.cfg.threads or None):
        tokenizer = load_tokenizer(req.model_path, req.cfg.model.trust_remote_code)
        model = load_causal_lm(req.model_path, req.cfg.model, req.device, trainable=False)
        if req.adapter_path is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, req.adapter_path).eval()
        rollout = build_rollout(req.cfg, tokenizer, model, str(req.model_path))
        rollout.sync_weights(model)  # vLLM loaded the base weights; push merged LoRA adapters (no-op for hf)
        metrics, samples = evaluate_policy(model, rollout, req.task, req.examples, req.cfg, progress=progress)
    return {"run": str(req.run), "checkpoint": req.label, **metrics}, samples


def evaluate_run(run: str | Path, checkpoint: str = "latest", *, num_samples: int | None = None,
                 temperature: float | None = None, device: str | None = None, max_prompts: int | None = None,
                 progress: bool = False) -> tuple[dict, list[dict]]:
    """Evaluate a run folder's policy (``checkpoint``: latest, start, step_000100 or a model path).

    Returns (metrics, samples): the JSON the CLI writes, and per held-out prompt its sampled
    responses with their correctness. The sampling random numbers depend on the run's seed only
    (``eval_seed``), so two runs of one seed are evaluated with the same random numbers.
    """
    req = prepare(run, checkpoint, num_samples=num_samples, temperature=temperature, device=device,
                  max_prompts=max_prompts)
    return evaluate_request(req, progress=progress)


def main(argv: list[str] | None = None) -> int:
    from lad_ref.llm.config import ConfigError
    from lad_ref.llm.tasks import DataError

    args = build_parser().parse_args(argv)
    try:
        req = prepare(args.run, args.checkpoint, num_samples=args.num_samples, temperature=args.temperature,
                      device=args.device, max_prompts=args.max_prompts)
        out = Path(args.output) if args.output else req.run / f"eval_{req.label}.json"
        if out.is_dir():
            raise ConfigError(f"--output {str(out)!r} is a folder; pass a file name such as {str(out / 'eval.json')!r}.")
        if not out.parent.is_dir():
            raise ConfigError(f"--output {str(out)!r}: the folder {str(out.parent)!r} does not exist.")
        if not os.access(out.parent, os.W_OK):
            raise ConfigError(f"--output {str(out)!r}: the folder {str(out.parent)!r} is not writable.")
        result, samples = evaluate_request(req, progress=not args.no_progress)  # damaged weights: a ConfigError
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from lad_ref.llm.files import write_json, write_jsonl

    write_json(out, result)
    if args.samples:
        write_jsonl(str(out) + ".samples.jsonl", samples)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

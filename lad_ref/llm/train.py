"""The compact LLM RL trainer: rollouts -> group advantages -> several epochs of a lad_ref objective.

    python -m lad_ref.llm.train --config llm/configs/toy.yaml --objective lad --divergence js --output-dir runs/toy-lad
    python -m lad_ref.llm.train --config llm/configs/toy.yaml --objective grpo --output-dir runs/toy-grpo
    python -m lad_ref.llm.train --resume runs/toy-lad            # continue from the last checkpoint

One RL step, top to bottom (see :func:`train`):

1. take the next ``prompts_per_step`` training prompts (a seeded permutation per data epoch);
2. sample G responses per prompt (``rollout.py``); score them with the task's verifier;
3. advantages within each prompt's group (``lad_ref.advantages.compute_advantages``);
4. pi_old = log-probs of the sampled tokens under the *current* weights (one no-grad pass);
   pi_ref too when a reference-KL term or FlowRL needs it;
5. ``optim.epochs`` passes over the batch in shuffled minibatches of ``mini_batch_size``,
   each accumulated over micro-batches, clipped, one AdamW step. From the second minibatch
   on pi_theta != pi_old, so r != 1 and LAD's weight r f'(u) acts (with one epoch and one
   minibatch LAD would reduce to a scaled policy gradient);
6. push the new weights to the rollout engine (vLLM only); log; evaluate / checkpoint every N.

The loss is ``lad_ref.losses.get_loss(objective.name)``: the very function objects the bandit
uses (tests/test_llm_train.py checks the identity). Micro-batch losses are normalised by the
*minibatch's* token (or sequence) count through ``aggregate``'s ``batch_num_tokens`` /
``global_batch_size`` (verl's global-batch normalisation), so gradient accumulation gives
exactly the gradient of the whole minibatch.

Every random draw is a pure function of (seed, step, ...) (``rollout.sub_seed``), so a run
is reproducible on CPU and ``--resume`` continues bit-for-bit. A non-finite loss or gradient
stops the run before the optimizer step, leaving the last good checkpoint intact, and the
process exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from lad_ref.advantages import compute_advantages
from lad_ref.llm import checkpoint as ckpt
from lad_ref.llm.config import (
    Config,
    ConfigError,
    from_dict,
    help_epilog,
    load_yaml,
    merge_overrides,
    parse_dotted_args,
    resolve,
    save_yaml,
    to_dict,
    validate,
)
from lad_ref.llm.evaluate import HEADLINE, evaluate_policy
from lad_ref.llm.model import (
    LogZHead,
    count_parameters,
    is_peft,
    load_causal_lm,
    load_tokenizer,
    quiet_transformers,
)
from lad_ref.llm.rollout import RolloutBatch, build_rollout, sequence_log_probs, sub_seed
from lad_ref.llm.sft import prepare_start_policy
from lad_ref.llm.tasks import DataError, build_task
from lad_ref.losses import aggregate, get_loss, kl_penalty
from lad_ref.threads import torch_threads

DATA_SEED_TAG, ROLLOUT_SEED_TAG, SHUFFLE_SEED_TAG, LOSS_SEED_TAG = 10, 11, 12, 13


class NonFiniteLossError(RuntimeError):
    """The loss or the gradient norm became NaN/inf; the run stops before the optimizer step."""


# ======================================================================================
# small pieces of the loop
# ======================================================================================


def prompts_for_step(examples: list, step: int, per_step: int, seed: int) -> list:
    """The prompts of RL step ``step`` (1-based): consecutive slices of a seeded permutation per data epoch.

    Position p of the prompt stream is element p % n of permutation p // n, so the data
    position is determined by the step alone: resuming needs no iterator state.
    """
    n = len(examples)
    out = []
    for p in range((step - 1) * per_step, step * per_step):
        epoch, i = divmod(p, n)
        g = torch.Generator().manual_seed(sub_seed(seed, DATA_SEED_TAG, epoch))
        out.append(examples[int(torch.randperm(n, generator=g)[i])])
    return out


def lr_lambda(cfg: Config, total_updates: int):
    """Linear warm-up, then constant / linear / cosine decay to ``min_lr_ratio`` of the peak."""
    o = cfg.optim

    def f(update: int) -> float:
        if update < o.warmup_steps:
            return (update + 1) / o.warmup_steps
        if o.schedule == "constant":
            return 1.0
        t = min(1.0, (update - o.warmup_steps) / max(1, total_updates - o.warmup_steps))
        shape = 1.0 - t if o.schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * t))
        return o.min_lr_ratio + (1.0 - o.min_lr_ratio) * shape

    return f


@torch.no_grad()
def batched_log_probs(model, batch: RolloutBatch, temperature: float, micro: int) -> torch.Tensor:
    """log pi(response tokens) for the whole batch, in micro-batches, no gradient."""
    parts = []
    for s in range(0, len(batch), micro):
        idx = torch.arange(s, min(s + micro, len(batch)))
        parts.append(sequence_log_probs(model, batch.select(idx), temperature)["log_prob"])
    return torch.cat(parts) * batch.response_mask


def reference_log_probs(model, ref_model, batch, temperature, micro) -> torch.Tensor:
    """pi_ref: the frozen start policy (a separate copy, or the LoRA base with adapters disabled)."""
    if ref_model is not None:
        return batched_log_probs(ref_model, batch, temperature, micro)
    with model.disable_adapter():
        return batched_log_probs(model, batch, temperature, micro)


def group_distinct_correct(texts, rewards, group_size: int, task) -> float:
    """Mean over prompts of the number of distinct correct answers among the prompt's G rollouts."""
    counts = []
    for g in range(0, len(texts), group_size):
        counts.append(len({task.answer_key(t) for t, r in zip(texts[g:g + group_size], rewards[g:g + group_size]) if r >= 1}))
    return sum(counts) / len(counts)


def mean_dicts(rows: list[dict]) -> dict:
    keys = {k for r in rows for k in r}
    return {k: sum(r[k] for r in rows if k in r) / sum(1 for r in rows if k in r) for k in sorted(keys)}


# ======================================================================================
# the update: epochs x minibatches x micro-batches
# ======================================================================================


def update_policy(cfg: Config, step: int, model, logz_head, optimizer, scheduler, params, batch: RolloutBatch,
                  old_log_prob, ref_log_prob, advantages, loss_fn, hparams) -> dict:
    o, obj = cfg.optim, cfg.objective
    temp = cfg.rollout.temperature
    need_entropy = obj.name == "entadv"
    need_hidden = obj.name == "flowrl"
    n = len(batch)
    stats = []
    log_ratios = []  # per minibatch: log r = log pi_theta - log pi_old of its valid tokens (brake engagement)
    for epoch in range(o.epochs):
        g = torch.Generator().manual_seed(sub_seed(cfg.seed, SHUFFLE_SEED_TAG, step, epoch))
        order = torch.randperm(n, generator=g) if o.shuffle else torch.arange(n)
        for mb, start in enumerate(range(0, n, o.mini_batch_size)):
            mini = order[start:start + o.mini_batch_size]
            mask_mini = batch.response_mask[mini]
            # verl-style global normalisers: each micro-batch loss is divided by the minibatch's
            # token / sequence count, so the accumulated gradient is the minibatch gradient.
            agg_kwargs = {"batch_num_tokens": float(mask_mini.sum()), "global_batch_size": float(len(mini))}
            optimizer.zero_grad(set_to_none=True)
            mb_stats = []
            mb_log_ratios = []
            for ms in range(0, len(mini), o.micro_batch_size):
                idx = mini[ms:ms + o.micro_batch_size]
                micro = batch.select(idx)
                out = sequence_log_probs(model, micro, temp, with_entropy=need_entropy, with_hidden=need_hidden)
                extra = {}
                if need_entropy:
                    extra["entropy"] = out["entropy"]
                if obj.name == "flowrl":
                    lp_len = micro.prompt_ids.shape[1]
                    extra["log_z"] = logz_head(out["hidden"][:, :lp_len], micro.prompt_mask)
                    extra["ref_log_prob"] = ref_log_prob[idx]
                if obj.name == "clip_cov":
                    extra["generator"] = torch.Generator().manual_seed(sub_seed(cfg.seed, LOSS_SEED_TAG, step, epoch, ms))
                loss, metrics = loss_fn(
                    old_log_prob=old_log_prob[idx],
                    log_prob=out["log_prob"],
                    advantages=advantages[idx],
                    response_mask=micro.response_mask,
                    loss_agg_mode=obj.loss_agg_mode,
                    agg_kwargs=agg_kwargs,
                    **hparams,
                    **extra,
                )
                if obj.kl_coef > 0:
                    kl = kl_penalty(out["log_prob"], ref_log_prob[idx])
                    loss = loss + obj.kl_coef * aggregate(kl, micro.response_mask, obj.loss_agg_mode, **agg_kwargs)
                    metrics["train/kl_ref"] = float((kl.detach() * micro.response_mask).sum() / micro.response_mask.sum())
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(
                        f"the {obj.name} loss became {loss.item()} at RL step {step} (epoch {epoch}, minibatch {mb})"
                    )
                loss.backward()
                mb_stats.append({"train/loss": loss.item(), **metrics})
                mb_log_ratios.append((out["log_prob"].detach() - old_log_prob[idx])[micro.response_mask.bool()])
            log_ratios.append(torch.cat(mb_log_ratios).float().cpu())
            max_norm = o.max_grad_norm if o.max_grad_norm > 0 else float("inf")
            grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
            if not torch.isfinite(grad_norm):
                raise NonFiniteLossError(f"the gradient norm became {grad_norm.item()} at RL step {step} (epoch {epoch})")
            optimizer.step()
            scheduler.step()
            row = mean_dicts(mb_stats)
            row["train/loss"] = sum(s["train/loss"] for s in mb_stats)  # micro losses are parts of one sum
            row["train/grad_norm"] = grad_norm.item()
            stats.append(row)
    out = mean_dicts(stats)
    out["train/lr"] = scheduler.get_last_lr()[0]
    out.update(brake_stats(log_ratios))
    return out


def brake_stats(log_ratios: list[torch.Tensor]) -> dict:
    """How far pi_theta moved from pi_old within one rollout batch: quantiles of log r over its tokens.

    ``log_ratios`` holds one 1-D tensor per minibatch (its valid tokens' log pi_theta - log pi_old,
    before that minibatch's optimizer step). ``brake/log_ratio_q05/q50/q95`` pool every minibatch of
    the step; ``brake/log_ratio_abs_max`` is the largest |log r|; ``brake/last_q05/q95`` are the last
    minibatch's (the furthest the policy gets from pi_old). LAD's weight r f'(u) changes sign once
    r passes e^{A/eta} (``lad/weight_flip_frac``); GRPO's clip acts once |log r| passes log(1 +/- eps)
    (``grpo/clipfrac``). With one minibatch and one epoch every log r is 0 and neither acts.
    """
    if not log_ratios:
        return {}
    pooled = torch.cat(log_ratios)
    q = torch.quantile(pooled, torch.tensor([0.05, 0.5, 0.95]))
    last = torch.quantile(log_ratios[-1], torch.tensor([0.05, 0.95]))
    return {
        "brake/log_ratio_q05": q[0].item(), "brake/log_ratio_q50": q[1].item(), "brake/log_ratio_q95": q[2].item(),
        "brake/log_ratio_abs_max": pooled.abs().max().item(),
        "brake/last_q05": last[0].item(), "brake/last_q95": last[1].item(),
    }


# ======================================================================================
# the run
# ======================================================================================


def train(cfg: Config, task, run: Path, *, resume: bool = False, stop_after: int | None = None,
          progress: bool | None = None) -> dict:
    """Run (or resume) RL in ``run``; returns results.json's content (or {"interrupted": step}).

    ``cfg.threads`` applies for the duration of the run only (the caller's setting is restored).
    """
    with torch_threads(cfg.threads or None):
        return _train(cfg, task, run, resume=resume, stop_after=stop_after, progress=progress)


def _train(cfg: Config, task, run: Path, *, resume: bool, stop_after: int | None, progress: bool | None) -> dict:
    progress = cfg.logging.progress_bar if progress is None else progress
    quiet_transformers()
    device = ckpt.pick_device(cfg.device)
    ckpt.seed_everything(cfg.seed)
    loss_fn = get_loss(cfg.objective.name)
    hparams = getattr(cfg.objective, cfg.objective.name)
    save_yaml(cfg, run / "config.yaml")

    # ---- start policy: SFT warm start (cached by config hash) or the given checkpoint ----
    start_path, start_info = prepare_start_policy(cfg, task, device, progress)
    run_info = {
        "start_policy": start_path, "start": start_info, "device": str(device), "torch": torch.__version__,
        "python": platform.python_version(), "objective": cfg.objective.name,
    }
    (run / "run_info.json").write_text(json.dumps(run_info, indent=2) + "\n")

    # ---- model, reference model, log Z head, optimizer, schedule ----
    last = ckpt.latest_checkpoint(run) if resume else None
    tokenizer = load_tokenizer(start_path, cfg.model.trust_remote_code)
    if last is not None and cfg.model.lora.enabled:
        from peft import PeftModel

        base = load_causal_lm(start_path, cfg.model, device, trainable=False)
        model = PeftModel.from_pretrained(base, str(last), is_trainable=True).train()
    else:
        model = load_causal_lm(last or start_path, cfg.model, device)
    need_ref = cfg.objective.kl_coef > 0 or cfg.objective.name == "flowrl"
    # With LoRA the reference is the base with adapters disabled: no second copy in memory.
    ref_model = load_causal_lm(start_path, cfg.model, device, trainable=False) if need_ref and not is_peft(model) else None
    logz_head = None
    if cfg.objective.name == "flowrl":
        with torch.random.fork_rng():
            torch.manual_seed(sub_seed(cfg.seed, LOSS_SEED_TAG))
            logz_head = LogZHead(model.config.hidden_size, cfg.objective.logz_head_layers).to(device)
        if last is not None:
            ckpt.load_logz_head(last, logz_head)
    params = [p for p in model.parameters() if p.requires_grad]
    if logz_head is not None:
        params += list(logz_head.parameters())
    optimizer = torch.optim.AdamW(
        params, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), eps=cfg.optim.eps, weight_decay=cfg.optim.weight_decay
    )
    batch_size = cfg.rollout.prompts_per_step * cfg.rollout.group_size
    total_updates = cfg.optim.steps * cfg.optim.epochs * (batch_size // cfg.optim.mini_batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, total_updates))
    start_step = 0
    if last is not None:
        state = ckpt.load_trainer_state(last)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        ckpt.set_rng_state(state["rng"])
        start_step = state["step"]
        assert state["data_position"] == start_step * cfg.rollout.prompts_per_step
        ckpt.truncate_metrics(run, start_step)
    elif resume:  # interrupted before the first checkpoint: keep only the start evaluation
        ckpt.truncate_metrics(run, 0)
    else:
        (run / "metrics.jsonl").write_text("")
    rollout = build_rollout(cfg, tokenizer, model, start_path)
    if last is not None:
        rollout.sync_weights(model)

    # ---- evaluation of the start policy (kept in start_eval.json so a resume reuses it) ----
    if resume and (run / "start_eval.json").exists() and any(r.get("step") == 0 for r in ckpt.read_metrics(run)):
        start_eval = json.loads((run / "start_eval.json").read_text())
    else:
        start_eval, start_samples = evaluate_policy(model if last is None else _load_start(cfg, start_path, device),
                                                    rollout, task, task.eval, cfg, progress=progress)
        (run / "start_eval.json").write_text(json.dumps(start_eval, indent=2) + "\n")
        with open(run / "start_samples.jsonl", "w") as fh:  # the study compares final answers with these
            fh.writelines(json.dumps(x) + "\n" for x in start_samples)
        ckpt.append_metrics(run, {"step": 0, **{f"eval/{k}": v for k, v in start_eval.items()}})
    if progress:
        print(f"[lad_ref] {cfg.objective.name}: {count_parameters(model)} parameters, start "
              + ", ".join(f"{k}={start_eval[k]:.3f}" for k in HEADLINE), file=sys.stderr)

    # ---- RL ----
    bar = tqdm(range(start_step + 1, cfg.optim.steps + 1), desc=f"rl/{cfg.objective.name}", disable=not progress,
               initial=start_step, total=cfg.optim.steps, dynamic_ncols=True)
    last_eval = start_eval
    last_saved = start_step
    G = cfg.rollout.group_size
    try:
        for step in bar:
            t0 = time.time()
            examples = prompts_for_step(task.train, step, cfg.rollout.prompts_per_step, cfg.seed)
            batch = rollout.generate(
                model, [e.prompt for e in examples], G, max_new_tokens=cfg.rollout.max_new_tokens,
                temperature=cfg.rollout.temperature, top_p=cfg.rollout.top_p, top_k=cfg.rollout.top_k,
                seed=sub_seed(cfg.seed, ROLLOUT_SEED_TAG, step),
            ).to(device)
            rewards = torch.tensor([task.reward(examples[i // G], t) for i, t in enumerate(batch.texts)])
            group_ids = torch.arange(len(examples)).repeat_interleave(G)
            advantages = compute_advantages(rewards, group_ids, cfg.objective.advantage_estimator).to(device)
            t_gen = time.time() - t0

            micro = cfg.optim.micro_batch_size
            t1 = time.time()
            old_log_prob = batched_log_probs(model, batch, cfg.rollout.temperature, micro)
            ref_log_prob = (
                reference_log_probs(model, ref_model, batch, cfg.rollout.temperature, micro) if need_ref else None
            )
            diff = ((old_log_prob - batch.gen_log_probs.to(device)).abs() * batch.response_mask).max().item()

            t_logprob = time.time() - t1
            t2 = time.time()
            stats = update_policy(cfg, step, model, logz_head, optimizer, scheduler, params, batch, old_log_prob,
                                  ref_log_prob, advantages, loss_fn, hparams)
            rollout.sync_weights(model)

            row = {
                "step": step,
                "train/reward_mean": rewards.mean().item(),
                "train/accuracy": (rewards >= 1).float().mean().item(),
                "train/distinct_correct": group_distinct_correct(batch.texts, rewards.tolist(), G, task),
                "train/response_length": batch.response_mask.sum(-1).float().mean().item(),
                "train/adv_abs_mean": advantages.abs().mean().item(),
                "rollout/logprob_max_abs_diff": diff,
                **stats,
                "time/rollout_s": round(t_gen, 3),
                "time/logprob_s": round(t_logprob, 3),
                "time/update_s": round(time.time() - t2, 3),
                "time/step_s": round(time.time() - t0, 3),
            }
            if cfg.eval.every and step % cfg.eval.every == 0 and step != cfg.optim.steps:
                last_eval, _ = evaluate_policy(model, rollout, task, task.eval, cfg)
                row.update({f"eval/{k}": v for k, v in last_eval.items()})
            if step % cfg.logging.log_every == 0 or "eval/avg_at_k" in row or step == cfg.optim.steps:
                ckpt.append_metrics(run, row)
            bar.set_postfix(reward=f"{row['train/reward_mean']:.2f}", acc=f"{row['train/accuracy']:.2f}",
                            eval_acc=f"{last_eval['avg_at_k']:.2f}")

            if step % cfg.checkpoint.every == 0 or step == cfg.optim.steps or step == stop_after:
                _save(run, step, model, tokenizer, optimizer, scheduler, logz_head, cfg)
                last_saved = step
            if stop_after is not None and step >= stop_after and step < cfg.optim.steps:
                bar.close()
                return {"interrupted": step}
    except NonFiniteLossError as e:
        bar.close()
        good = ckpt.latest_checkpoint(run)
        where = f"the last good checkpoint is {good}" if good else "no checkpoint had been written yet"
        raise NonFiniteLossError(
            f"{e}; the run stopped and {where} (last saved step {last_saved}); lower optim.lr or check the rewards, "
            f"then continue with --resume {run}."
        ) from None
    bar.close()

    # ---- final evaluation, results.json, plots ----
    final_eval, samples = evaluate_policy(model, rollout, task, task.eval, cfg, progress=progress)
    rows = ckpt.read_metrics(run)
    if rows and rows[-1].get("step") == cfg.optim.steps:
        rows[-1].update({f"eval/{k}": v for k, v in final_eval.items()})
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    results = {"start": start_eval, "final": final_eval}
    (run / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    with open(run / "final_samples.jsonl", "w") as fh:
        for s in samples:
            fh.write(json.dumps(s) + "\n")
    if cfg.logging.plots:
        from lad_ref.llm.plots import write_plots

        write_plots(run, title=f"{cfg.objective.name} seed {cfg.seed}")
    if progress:
        print("[lad_ref] start -> final: " + ", ".join(
            f"{k} {start_eval[k]:.3f} -> {final_eval[k]:.3f}" for k in HEADLINE), file=sys.stderr)
    return results


def _load_start(cfg: Config, start_path: str, device):
    """The start policy, for a resumed run whose start_eval.json went missing."""
    return load_causal_lm(start_path, cfg.model, device, trainable=False)


def _save(run, step, model, tokenizer, optimizer, scheduler, logz_head, cfg):
    state = {"step": step, "data_position": step * cfg.rollout.prompts_per_step, "config": to_dict(cfg)}
    ckpt.save_checkpoint(run, step, model, tokenizer, optimizer, scheduler, logz_head, state, cfg.checkpoint.keep_last)


# ======================================================================================
# CLI
# ======================================================================================

# Fields a resumed run may change: they do not alter what has been computed so far.
RESUMABLE_OVERRIDES = ("optim.steps", "logging.", "checkpoint.", "eval.every", "device", "threads", "sft.cache_dir")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m lad_ref.llm.train",
        description="Train a causal LM with a lad_ref objective (LAD, GRPO, EntAdv, KL-Cov, Clip-Cov, FlowRL).",
        epilog=help_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="YAML config file (e.g. llm/configs/toy.yaml); fields not set keep their defaults.")
    p.add_argument("--resume", metavar="DIR", help="Continue the run in DIR from its last checkpoint (uses DIR/config.yaml).")
    p.add_argument("--overwrite", action="store_true", help="Allow a non-empty --output-dir (nothing is deleted).")
    p.add_argument("--stop-after", type=int, metavar="N",
                   help="Stop after RL step N, checkpointed, as if interrupted (for testing --resume).")
    p.add_argument("--no-progress", action="store_true", help="Hide progress bars (same as --logging.progress_bar false).")
    p.add_argument("--print-config", action="store_true", help="Print the resolved config and exit.")
    return p


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, Config]:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    overrides = parse_dotted_args(rest)
    if args.no_progress:
        overrides["logging.progress_bar"] = False
    if args.resume:
        if args.config:
            raise ConfigError("--resume reads the run's own config.yaml; drop --config.")
        bad = [k for k in overrides if k != "output_dir" and not any(k == r or k.startswith(r) for r in RESUMABLE_OVERRIDES)]
        if bad:
            raise ConfigError(
                f"--{bad[0]} cannot be changed when resuming; valid overrides with --resume are "
                f"{', '.join(RESUMABLE_OVERRIDES)} (a trailing dot means any field of that section)."
            )
        run = Path(args.resume)
        if not (run / "config.yaml").is_file():
            raise ConfigError(f"--resume {str(run)!r} is not a run folder: it has no config.yaml.")
        data = merge_overrides(load_yaml(run / "config.yaml"), overrides)
        data["output_dir"] = str(run)
        return args, validate(from_dict(data))
    return args, resolve(args.config, overrides)


def main(argv: list[str] | None = None) -> int:
    try:
        args, cfg = parse(argv)
        if args.print_config:
            import yaml

            print(yaml.safe_dump(to_dict(cfg), sort_keys=False))
            return 0
        task = build_task(cfg)  # reads every data file: bad data fails here, before any training
        run = ckpt.prepare_run_dir(cfg.output_dir, resume=bool(args.resume), overwrite=args.overwrite)
        if cfg.rollout.backend == "vllm":
            ckpt.pick_device("cuda")  # fails early with a clear message on a CPU machine
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        train(cfg, task, run, resume=bool(args.resume), stop_after=args.stop_after)
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

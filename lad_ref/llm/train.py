"""The compact LLM RL trainer: rollouts -> group advantages -> several epochs of a lad_ref objective.

    python -m lad_ref.llm.train --config llm/configs/toy.yaml --objective lad --divergence js --output-dir runs/toy-lad
    python -m lad_ref.llm.train --config llm/configs/toy.yaml --objective grpo --output-dir runs/toy-grpo
    python -m lad_ref.llm.train --resume runs/toy-lad            # continue from the last checkpoint

The file reads top to bottom: small pieces, :func:`update_policy`, then :func:`setup` ->
:func:`rl_step` (every step) -> :func:`finish`, driven by :func:`train`. One RL step (:func:`rl_step`):

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
uses (tests/test_llm_train.py checks the identity). What the objective needs (entropy, pi_ref,
a log Z head, a seeded generator) and how it aggregates are read from its spec
(``lad_ref.losses.get_objective``), never from its name. Micro-batch losses are normalised by the
*minibatch's* token (or sequence) count through ``aggregate``'s ``batch_num_tokens`` /
``global_batch_size`` (verl's global-batch normalisation), so gradient accumulation gives
exactly the gradient of the whole minibatch.

Every random draw is a pure function of (seed, step, ...) (``rollout.sub_seed``), so a run
is reproducible on CPU and ``--resume`` continues bit-for-bit. A non-finite loss or gradient
stops the run before the optimizer step, leaving the last good checkpoint intact, and the
process exits with status 1. SIGTERM (a scheduler's notice before preemption) or Ctrl-C during
RL finishes the current step, checkpoints it, prints where and how to resume, and exits with
128 + the signal number; a second Ctrl-C stops at once. During set-up (SFT, the start
evaluation) either signal stops at once with one line saying what to rerun.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from lad_ref.advantages import compute_advantages
from lad_ref.llm import checkpoint as ckpt
from lad_ref.llm.backends import check_device
from lad_ref.llm.config import (
    Config,
    ConfigError,
    from_dict,
    help_epilog,
    load_plugins,
    load_yaml,
    merge_overrides,
    objective_hp,
    parse_dotted_args,
    parse_value,
    resolve,
    save_yaml,
    to_dict,
    validate,
)
from lad_ref.llm.evaluate import HEADLINE, evaluate_policy
from lad_ref.llm.files import read_json, write_json, write_jsonl
from lad_ref.llm.model import (
    TINY,
    LogZHead,
    count_parameters,
    is_peft,
    load_causal_lm,
    load_tokenizer,
    quiet_transformers,
)
from lad_ref.llm.rollout import RolloutBatch, build_rollout, sequence_log_probs
from lad_ref.llm.schedule import warmup_then_decay
from lad_ref.llm.seeding import Tag, seed_everything, set_rng_state, sub_seed
from lad_ref.llm.sft import prepare_start_policy
from lad_ref.llm.tasks import DataError, build_task, task_rewards
from lad_ref.llm.tracking import Tracker
from lad_ref.losses import aggregate, get_loss, get_objective, kl_penalty, loss_inputs
from lad_ref.threads import torch_threads


class NonFiniteLossError(RuntimeError):
    """The loss or the gradient norm became NaN/inf; the run stops before the optimizer step."""


class StopSignals:
    """Turn SIGTERM / SIGINT into a request to stop after the current RL step.

    The loop polls ``received`` once per step, so a step is never cut in half: the checkpoint
    written at the stop is exactly the state an uninterrupted run has after that step. A second
    SIGINT raises KeyboardInterrupt (the user insists). Handlers are installed only in the main
    thread (Python's rule) and the previous ones are restored on exit.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received: signal.Signals | None = None
        self._old: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum)
        print(f"\n[lad_ref] {self.received.name} received: finishing this RL step, then writing a checkpoint "
              "(Ctrl-C again to stop at once).", file=sys.stderr)

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

    def restore(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}


# ======================================================================================
# small pieces of the loop
# ======================================================================================


def tied_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """(N // G,) bool: True for a group whose G rewards are all equal (verl filter_groups' std == 0).

    With group-normalised advantages every response of a tied group has advantage exactly 0.
    """
    g = rewards.view(-1, group_size)
    return (g == g[:, :1]).all(-1)


def extra_prompts(examples: list, step: int, sampling_round: int, per_step: int, seed: int) -> list:
    """Dynamic sampling's further prompts of RL step ``step``, round ``sampling_round`` >= 1.

    ``per_step`` prompts drawn without replacement from a permutation seeded by (seed, step, round)
    alone, not from the main prompt stream: the stream's position stays step * prompts_per_step, so
    a resumed run needs no record of how many rounds earlier steps took (verl instead reads the
    next batches of its dataloader).
    """
    g = torch.Generator().manual_seed(sub_seed(seed, Tag.ROLLOUT, step, sampling_round, Tag.DATA))
    return [examples[int(i)] for i in torch.randperm(len(examples), generator=g)[:per_step]]


def concat_rows(parts: list[tuple[RolloutBatch, torch.Tensor]], pad_id: int) -> RolloutBatch:
    """Rows ``idx`` of each batch, stacked in order: prompts re-padded on the left, responses on the right."""
    sel = [b.select(idx) for b, idx in parts]
    lp = max(b.prompt_ids.shape[1] for b in sel)
    lr = max(b.response_ids.shape[1] for b in sel)

    def left(t, value):
        return torch.nn.functional.pad(t, (lp - t.shape[1], 0), value=value)

    def right(t, value):
        return torch.nn.functional.pad(t, (0, lr - t.shape[1]), value=value)

    gen = None if any(b.gen_log_probs is None for b in sel) else torch.cat([right(b.gen_log_probs, 0.0) for b in sel])
    return RolloutBatch(
        torch.cat([left(b.prompt_ids, pad_id) for b in sel]), torch.cat([left(b.prompt_mask, 0) for b in sel]),
        torch.cat([right(b.response_ids, pad_id) for b in sel]), torch.cat([right(b.response_mask, 0) for b in sel]),
        gen, [t for b in sel for t in b.texts], torch.cat([b.truncated for b in sel]),
    )


class DynamicSamplingError(RuntimeError):
    """Dynamic sampling drew ``rollout.max_sampling_rounds`` rounds without enough untied groups."""


def prompts_for_step(examples: list, step: int, per_step: int, seed: int) -> list:
    """The prompts of RL step ``step`` (1-based): consecutive slices of a seeded permutation per data epoch.

    Position p of the prompt stream is element p % n of permutation p // n, so the data
    position is determined by the step alone: resuming needs no iterator state.
    """
    n = len(examples)
    out = []
    for p in range((step - 1) * per_step, step * per_step):
        epoch, i = divmod(p, n)
        g = torch.Generator().manual_seed(sub_seed(seed, Tag.DATA, epoch))
        out.append(examples[int(torch.randperm(n, generator=g)[i])])
    return out


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


def loss_inputs_for(r: RunState, out: dict, micro: RolloutBatch, idx, ref_log_prob, seed_path: tuple) -> dict:
    """The extra inputs the objective's spec asks for, for one micro-batch (lad_ref.losses.loss_inputs).

    ``out`` is :func:`sequence_log_probs`' output for the micro-batch (entropy and hidden states
    present when the spec needs them); ``seed_path`` (step, epoch, micro-batch start) seeds the
    objective's generator.
    """
    return loss_inputs(r.spec, {
        "entropy": lambda: out["entropy"],
        "log_z": lambda: r.logz_head(out["hidden"][:, :micro.prompt_ids.shape[1]], micro.prompt_mask),
        "ref_log_prob": lambda: ref_log_prob[idx],
        "generator": lambda: torch.Generator().manual_seed(sub_seed(r.cfg.seed, Tag.LOSS, *seed_path)),
    }, "the compact trainer")


def update_policy(r: RunState, step: int, batch: RolloutBatch, old_log_prob, ref_log_prob, advantages,
                  tied: torch.Tensor | None = None) -> dict:
    """``optim.epochs`` passes of shuffled minibatches over the rollout batch; returns the mean metrics.

    ``r`` is the run's :class:`RunState`; this reads its cfg, spec, loss_fn, hp, model, logz_head,
    params, optimizer and scheduler only (a test may pass any object with those attributes).

    ``tied`` (N,) bool marks the rows of tied groups (all G rewards equal). With it,
    ``objective.tied_loss_weight`` != 1 multiplies those rows' objective loss through the loss's
    per-row ``weights`` (the rows stay in the aggregation's normaliser, so the other rows' step is
    unchanged; the reference-KL term is not weighted), and ``logging.tied_grad_share`` logs the
    gradient norms of the tied rows' and the other rows' loss summed over the step's K minibatches
    and their share (:func:`tied_grad_norms`; the regime bandit's definition). Every minibatch counts:
    the first one of a step has r = 1, where the f(r) term of a generator with f'(1) = 0 has no gradient.
    """
    cfg, spec = r.cfg, r.spec  # what the objective needs is read from its spec, never from its name
    o, obj = cfg.optim, cfg.objective
    temp = cfg.rollout.temperature
    need_entropy = "entropy" in spec.needs
    need_hidden = "log_z" in spec.needs
    agg_mode = spec.aggregation(obj.loss_agg_mode)  # FlowRL: its own mean over sequences
    n = len(batch)
    row_weights = None
    if tied is not None and obj.tied_loss_weight != 1.0:  # weight 1: no weights at all (bit-identical default)
        row_weights = torch.where(tied, torch.tensor(float(obj.tied_loss_weight)), torch.tensor(1.0)).to(
            advantages.device)
    stats = []
    share: dict = {}
    log_ratios = []  # per minibatch: log r = log pi_theta - log pi_old of its valid tokens (brake engagement)
    for epoch in range(o.epochs):
        g = torch.Generator().manual_seed(sub_seed(cfg.seed, Tag.SHUFFLE, step, epoch))
        order = torch.randperm(n, generator=g) if o.shuffle else torch.arange(n)
        for mb, start in enumerate(range(0, n, o.mini_batch_size)):
            mini = order[start:start + o.mini_batch_size]
            mask_mini = batch.response_mask[mini]
            # verl-style global normalisers: each micro-batch loss is divided by the minibatch's
            # token / sequence count, so the accumulated gradient is the minibatch gradient.
            agg_kwargs = {"batch_num_tokens": float(mask_mini.sum()), "global_batch_size": float(len(mini))}
            if tied is not None and cfg.logging.tied_grad_share:
                part = tied_grad_norms(r, step, batch, mini, old_log_prob, ref_log_prob, advantages, tied, row_weights,
                                       agg_mode, agg_kwargs)
                for key in ("train/grad_norm_tied", "train/grad_norm_untied"):
                    share[key] = share.get(key, 0.0) + part[key]
            r.optimizer.zero_grad(set_to_none=True)
            mb_stats = []
            mb_log_ratios = []
            for ms in range(0, len(mini), o.micro_batch_size):
                idx = mini[ms:ms + o.micro_batch_size]
                micro = batch.select(idx)
                out = sequence_log_probs(r.model, micro, temp, with_entropy=need_entropy, with_hidden=need_hidden)
                loss, metrics = r.loss_fn(
                    old_log_prob=old_log_prob[idx],
                    log_prob=out["log_prob"],
                    advantages=advantages[idx],
                    response_mask=micro.response_mask,
                    loss_agg_mode=agg_mode,
                    hp=r.hp,
                    agg_kwargs=agg_kwargs,
                    weights=None if row_weights is None else row_weights[idx],
                    **loss_inputs_for(r, out, micro, idx, ref_log_prob, (step, epoch, ms)),
                )
                if obj.kl_coef > 0:
                    kl = kl_penalty(out["log_prob"], ref_log_prob[idx])
                    loss = loss + obj.kl_coef * aggregate(kl, micro.response_mask, agg_mode, **agg_kwargs)
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
            grad_norm = torch.nn.utils.clip_grad_norm_(r.params, max_norm)
            if not torch.isfinite(grad_norm):
                raise NonFiniteLossError(f"the gradient norm became {grad_norm.item()} at RL step {step} (epoch {epoch})")
            r.optimizer.step()
            r.scheduler.step()
            row = mean_dicts(mb_stats)
            row["train/loss"] = sum(s["train/loss"] for s in mb_stats)  # micro losses are parts of one sum
            row["train/grad_norm"] = grad_norm.item()
            stats.append(row)
    out = mean_dicts(stats)
    out["train/lr"] = r.scheduler.get_last_lr()[0]
    out.update(brake_stats(log_ratios))
    if share:  # sums over the step's minibatches, then the share of the sums
        total = share["train/grad_norm_tied"] + share["train/grad_norm_untied"]
        if total > 0:
            share["train/grad_share_tied"] = share["train/grad_norm_tied"] / total
    out.update(share)
    return out


def tied_grad_norms(r: RunState, step: int, batch: RolloutBatch, mini, old_log_prob, ref_log_prob, advantages, tied,
                    row_weights, agg_mode, agg_kwargs) -> dict:
    """Gradient norms of the objective's loss on one minibatch, split into tied rows and the rest (the caller sums
    them over a step's minibatches).

    The minibatch loss L (as the update computes it, ``tied_loss_weight`` included, the reference-KL
    term excluded) is linear in the per-row weights, so L = L_tied + L_rest with L_tied the loss
    with the rest's weights set to 0 and vice versa (same normaliser). Two extra backward passes
    per micro-batch give g_tied = grad L_tied and g_rest = grad L_rest (before clipping); logged:

        train/grad_norm_tied = ||g_tied||,   train/grad_norm_untied = ||g_rest||,
        train/grad_share_tied = ||g_tied|| / (||g_tied|| + ||g_rest||)   (omitted when both are 0).

    Nothing here touches the optimizer, the parameters or the global random state (forked), so the
    run's numbers are those of the run without this logging.
    """
    cfg, spec, params = r.cfg, r.spec, r.params
    temp = cfg.rollout.temperature
    base = row_weights if row_weights is not None else torch.ones(len(batch), device=advantages.device)
    parts = {"tied": base * tied.to(base.dtype), "untied": base * (~tied).to(base.dtype)}
    sums = {k: [torch.zeros_like(p) for p in params] for k in parts}
    with torch.random.fork_rng(devices=[]):
        for ms in range(0, len(mini), cfg.optim.micro_batch_size):
            idx = mini[ms:ms + cfg.optim.micro_batch_size]
            micro = batch.select(idx)
            out = sequence_log_probs(r.model, micro, temp, with_entropy="entropy" in spec.needs,
                                     with_hidden="log_z" in spec.needs)
            for k, (name, w) in enumerate(parts.items()):
                # a fresh generator per part (each draws the same choices); log Z recomputed per backward
                extra = loss_inputs_for(r, out, micro, idx, ref_log_prob, (step, 0, ms))
                loss, _ = r.loss_fn(old_log_prob=old_log_prob[idx], log_prob=out["log_prob"], advantages=advantages[idx],
                                    response_mask=micro.response_mask, loss_agg_mode=agg_mode, hp=r.hp,
                                    agg_kwargs=agg_kwargs, weights=w[idx], compute_metrics=False, **extra)
                # the epoch's loss generator is not known here; clip_cov's random choice uses epoch 0's
                grads = torch.autograd.grad(loss, params, retain_graph=k == 0, allow_unused=True)
                for acc, g in zip(sums[name], grads):
                    if g is not None:
                        acc += g
    norms = {k: float(torch.sqrt(sum((g.double() ** 2).sum() for g in v))) for k, v in sums.items()}
    out = {"train/grad_norm_tied": norms["tied"], "train/grad_norm_untied": norms["untied"]}
    if norms["tied"] + norms["untied"] > 0:
        out["train/grad_share_tied"] = norms["tied"] / (norms["tied"] + norms["untied"])
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
    with torch_threads(cfg.threads or None), contextlib.ExitStack() as closing:
        return _train(cfg, task, run, resume=resume, stop_after=stop_after, progress=progress, closing=closing)


@dataclass
class RunState:
    """Everything the RL loop works with; built once by :func:`setup`."""

    cfg: Config
    task: Any
    dir: Path
    device: torch.device
    spec: Any  # lad_ref.losses.ObjectiveSpec
    loss_fn: Any
    hp: Any  # the objective's hyperparameter object (cfg.objective.<name>), passed whole to the loss
    model: Any
    tokenizer: Any
    ref_model: Any  # None: no reference needed, or LoRA's base with adapters disabled serves
    need_ref: bool
    logz_head: Any  # FlowRL's log Z head, else None
    params: list
    optimizer: torch.optim.Optimizer
    scheduler: Any
    rollout: Any
    tracker: Tracker
    start_step: int
    start_eval: dict


def setup(cfg: Config, task, run: Path, *, resume: bool, progress: bool, closing: contextlib.ExitStack) -> RunState:
    """Start policy, model, optimizer and schedule (restored from the last checkpoint on resume),
    rollout engine, tracker, and the start policy's evaluation."""
    quiet_transformers()
    device = ckpt.pick_device(cfg.device)
    seed_everything(cfg.seed)
    spec = get_objective(cfg.objective.name)
    save_yaml(cfg, run / "config.yaml")  # whole (temp file + rename)

    # ---- start policy: SFT warm start (cached by config hash, copied into the run) or the given checkpoint ----
    start_path, start_info = start_policy(cfg, task, run, device, progress, resume)
    run_info = {
        "start_policy": ckpt.stored_path(run, start_path), "start": start_info, "device": str(device), "torch": torch.__version__,
        "python": platform.python_version(), "objective": cfg.objective.name,
    }
    write_json(run / "run_info.json", run_info)

    # ---- model, reference model, log Z head, optimizer, schedule ----
    last = ckpt.latest_checkpoint(run, verify=True) if resume else None
    tokenizer = load_tokenizer(start_path, cfg.model.trust_remote_code)
    if last is not None and cfg.model.lora.enabled:
        from peft import PeftModel

        base = load_causal_lm(start_path, cfg.model, device, trainable=False)
        model = PeftModel.from_pretrained(base, str(last), is_trainable=True).train()
    else:
        model = load_causal_lm(last or start_path, cfg.model, device)
    need_ref = cfg.objective.kl_coef > 0 or "ref_log_prob" in spec.needs
    # With LoRA the reference is the base with adapters disabled: no second copy in memory.
    ref_model = load_causal_lm(start_path, cfg.model, device, trainable=False) if need_ref and not is_peft(model) else None
    logz_head = None
    if "log_z" in spec.needs:  # FlowRL's learned log Z(x): an MLP head on the prompt's hidden states
        with torch.random.fork_rng():
            torch.manual_seed(sub_seed(cfg.seed, Tag.LOSS))
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
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_then_decay(cfg.optim.warmup_steps, total_updates, cfg.optim.schedule, cfg.optim.min_lr_ratio)
    )
    start_step = 0
    if last is not None:
        state = ckpt.load_trainer_state(last)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        start_step = state["step"]
        assert state["data_position"] == start_step * cfg.rollout.prompts_per_step
        ckpt.truncate_metrics(run, start_step)
    elif resume:  # interrupted before the first checkpoint: keep only the start evaluation
        ckpt.truncate_metrics(run, 0)
    else:
        write_jsonl(run / "metrics.jsonl", [])
    rollout = build_rollout(cfg, tokenizer, model, start_path)
    if last is not None:
        rollout.sync_weights(model)
    tracker = closing.enter_context(Tracker(cfg.logging.report_to, run, project=cfg.logging.project,
                                            config=to_dict(cfg), resume_step=start_step if resume else None))

    # ---- evaluation of the start policy (kept in start_eval.json so a resume reuses it) ----
    if resume and (run / "start_eval.json").exists() and any(r.get("step") == 0 for r in ckpt.read_metrics(run)):
        start_eval = read_json(run / "start_eval.json", f"run {str(run)!r}")
    else:
        start_eval, start_samples = evaluate_policy(model if last is None else _load_start(cfg, start_path, device),
                                                    rollout, task, task.eval, cfg, progress=progress)
        write_json(run / "start_eval.json", start_eval)
        write_jsonl(run / "start_samples.jsonl", start_samples)  # the study compares final answers with these
        ckpt.append_metrics(run, {"step": 0, **{f"eval/{k}": v for k, v in start_eval.items()}})
        tracker.log({"step": 0, **{f"eval/{k}": v for k, v in start_eval.items()}})
    if progress:
        print(f"[lad_ref] {cfg.objective.name}: {count_parameters(model)} parameters, start "
              + ", ".join(f"{k}={start_eval[k]:.3f}" for k in HEADLINE), file=sys.stderr)
    return RunState(cfg, task, run, device, spec, get_loss(spec.name), objective_hp(cfg), model,
                    tokenizer, ref_model, need_ref, logz_head, params, optimizer, scheduler, rollout, tracker,
                    start_step, start_eval)


def rl_step(r: RunState, step: int) -> dict:
    """One RL step: rollouts -> rewards -> group advantages -> pi_old (and pi_ref) log-probs ->
    epochs of minibatch updates -> new weights to the rollout engine. Returns the metrics row."""
    cfg, G = r.cfg, r.cfg.rollout.group_size
    t0 = time.time()
    examples, batch, rewards, sampling = draw_rollouts(r, step)
    tied = tied_groups(rewards, G).repeat_interleave(G).to(r.device)
    group_ids = torch.arange(len(examples)).repeat_interleave(G)
    advantages = compute_advantages(rewards, group_ids, cfg.objective.advantage_estimator).to(r.device)
    t_gen = time.time() - t0

    micro = cfg.optim.micro_batch_size
    t1 = time.time()
    old_log_prob = batched_log_probs(r.model, batch, cfg.rollout.temperature, micro)
    ref_log_prob = (
        reference_log_probs(r.model, r.ref_model, batch, cfg.rollout.temperature, micro) if r.need_ref else None
    )
    diff = ((old_log_prob - batch.gen_log_probs.to(r.device)).abs() * batch.response_mask).max().item()
    t_logprob = time.time() - t1

    t2 = time.time()
    stats = update_policy(r, step, batch, old_log_prob, ref_log_prob, advantages, tied=tied)
    r.rollout.sync_weights(r.model)
    return {
        "step": step,
        "train/reward_mean": rewards.mean().item(),
        "train/accuracy": (rewards >= 1).float().mean().item(),
        "train/distinct_correct": group_distinct_correct(batch.texts, rewards.tolist(), G, r.task),
        "train/response_length": batch.response_mask.sum(-1).float().mean().item(),
        "train/adv_abs_mean": advantages.abs().mean().item(),
        **sampling,
        "rollout/logprob_max_abs_diff": diff,
        **stats,
        "time/rollout_s": round(t_gen, 3),
        "time/logprob_s": round(t_logprob, 3),
        "time/update_s": round(time.time() - t2, 3),
        "time/step_s": round(time.time() - t0, 3),
    }


def draw_rollouts(r: RunState, step: int) -> tuple[list, RolloutBatch, torch.Tensor, dict]:
    """The step's prompts, their G responses each, the rewards, and sampling metrics.

    Without ``rollout.dynamic_sampling``: the next ``prompts_per_step`` prompts of the stream.
    ``train/tied_groups`` is the fraction of the drawn groups whose G rewards are all equal.

    With it (verl ``algorithm.filter_groups`` / DAPO's dynamic sampling, metric = the reward): tied
    groups are dropped and further rounds of ``prompts_per_step`` prompts (:func:`extra_prompts`,
    rollout seed (seed, step, round)) are sampled until ``prompts_per_step`` untied groups are
    collected; the first that many, in the order drawn, form the batch. Everything is a function of
    (seed, step), so runs and resumes are deterministic. After ``rollout.max_sampling_rounds`` rounds
    without enough, the run stops with :class:`DynamicSamplingError` (as DAPO's trainer does past
    ``max_num_gen_batches``). ``train/tied_groups`` then counts every drawn group, and
    ``rollout/sampling_rounds`` the rounds.
    """
    cfg, G, per_step = r.cfg, r.cfg.rollout.group_size, r.cfg.rollout.prompts_per_step

    def sample(examples, seed):
        batch = r.rollout.generate(
            r.model, [e.prompt for e in examples], G, max_new_tokens=cfg.rollout.max_new_tokens,
            temperature=cfg.rollout.temperature, top_p=cfg.rollout.top_p, top_k=cfg.rollout.top_k, seed=seed,
        ).to(r.device)
        rewards = torch.tensor(task_rewards(r.task, [examples[i // G] for i in range(len(batch.texts))], batch.texts))
        return batch, rewards

    examples = prompts_for_step(r.task.train, step, per_step, cfg.seed)
    batch, rewards = sample(examples, sub_seed(cfg.seed, Tag.ROLLOUT, step))
    tied = tied_groups(rewards, G)
    if not cfg.rollout.dynamic_sampling:
        return examples, batch, rewards, {"train/tied_groups": tied.float().mean().item()}
    kept: list[tuple[list, RolloutBatch, torch.Tensor, torch.Tensor]] = []  # (examples, batch, rewards, groups)
    drawn = n_tied = collected = 0
    for rnd in range(cfg.rollout.max_sampling_rounds):
        if rnd > 0:
            examples = extra_prompts(r.task.train, step, rnd, per_step, cfg.seed)
            batch, rewards = sample(examples, sub_seed(cfg.seed, Tag.ROLLOUT, step, rnd))
            tied = tied_groups(rewards, G)
        drawn += len(tied)
        n_tied += int(tied.sum())
        groups = torch.nonzero(~tied).flatten()[: per_step - collected]
        if len(groups):
            kept.append((examples, batch, rewards, groups))
            collected += len(groups)
        if collected == per_step:
            break
    else:
        raise DynamicSamplingError(
            f"dynamic sampling drew rollout.max_sampling_rounds={cfg.rollout.max_sampling_rounds} rounds of "
            f"{per_step} prompts at RL step {step} and found only {collected} of the {per_step} groups whose rewards "
            "are not all equal; the tasks are too easy or too hard for the policy now: raise "
            "rollout.max_sampling_rounds, or set rollout.dynamic_sampling false."
        )
    pad_id = r.tokenizer.pad_token_id if r.tokenizer.pad_token_id is not None else 0
    rows = [(b, (g.unsqueeze(-1) * G + torch.arange(G)).flatten().to(b.response_ids.device)) for _, b, _, g in kept]
    batch = concat_rows(rows, pad_id)
    rewards = torch.cat([rw[(g.unsqueeze(-1) * G + torch.arange(G)).flatten()] for _, _, rw, g in kept])
    examples = [ex[int(i)] for ex, _, _, g in kept for i in g]
    return examples, batch, rewards, {"train/tied_groups": n_tied / drawn, "rollout/sampling_rounds": rnd + 1}


def finish(r: RunState, progress: bool) -> dict:
    """Final evaluation, results.json, the final samples, plots."""
    cfg, run = r.cfg, r.dir
    final_eval, samples = evaluate_policy(r.model, r.rollout, r.task, r.task.eval, cfg, progress=progress)
    rows = ckpt.read_metrics(run)
    if rows and rows[-1].get("step") == cfg.optim.steps:
        rows[-1].update({f"eval/{k}": v for k, v in final_eval.items()})
        write_jsonl(run / "metrics.jsonl", rows)  # whole: a kill here leaves the old rows, never none
    r.tracker.log({"step": cfg.optim.steps, **{f"eval/{k}": v for k, v in final_eval.items()}})
    results = {"start": r.start_eval, "final": final_eval}
    # samples before results: results.json is what marks the run finished (study.is_finished)
    write_jsonl(run / "final_samples.jsonl", samples)
    write_json(run / "results.json", results)
    if cfg.logging.plots:
        from lad_ref.llm.plots import write_plots

        write_plots(run, title=f"{cfg.objective.name} seed {cfg.seed}")
    if progress:
        print("[lad_ref] start -> final: " + ", ".join(
            f"{k} {r.start_eval[k]:.3f} -> {final_eval[k]:.3f}" for k in HEADLINE), file=sys.stderr)
    return results


def _train(cfg: Config, task, run: Path, *, resume: bool, stop_after: int | None, progress: bool | None,
           closing: contextlib.ExitStack) -> dict:
    """setup -> RL steps (log, evaluate, checkpoint, stop on a signal) -> finish."""
    progress = cfg.logging.progress_bar if progress is None else progress
    r = setup(cfg, task, run, resume=resume, progress=progress, closing=closing)
    bar = tqdm(range(r.start_step + 1, cfg.optim.steps + 1), desc=f"rl/{cfg.objective.name}", disable=not progress,
               initial=r.start_step, total=cfg.optim.steps, dynamic_ncols=True)
    last_eval, last_saved = r.start_eval, r.start_step
    stop = StopSignals()
    try:
        stop.install()
        for step in bar:
            row = rl_step(r, step)
            if cfg.eval.every and step % cfg.eval.every == 0 and step != cfg.optim.steps:
                last_eval, _ = evaluate_policy(r.model, r.rollout, task, task.eval, cfg)
                row.update({f"eval/{k}": v for k, v in last_eval.items()})
            if step % cfg.logging.log_every == 0 or "eval/avg_at_k" in row or step == cfg.optim.steps:
                ckpt.append_metrics(run, row)
                r.tracker.log(row)
            bar.set_postfix(reward=f"{row['train/reward_mean']:.2f}", acc=f"{row['train/accuracy']:.2f}",
                            eval_acc=f"{last_eval['avg_at_k']:.2f}")

            if step % cfg.checkpoint.every == 0 or step == cfg.optim.steps or step == stop_after:
                _save(r, step)
                last_saved = step
            if stop.received is not None and step < cfg.optim.steps:
                if last_saved != step:
                    _save(r, step)
                bar.close()
                print(f"[lad_ref] stopped by {stop.received.name} after RL step {step}/{cfg.optim.steps}; checkpoint "
                      f"{run / ckpt.CKPT_DIR / f'step_{step:06d}'}; continue with: python -m lad_ref.llm.train "
                      f"--resume {run}", file=sys.stderr)
                return {"interrupted": step, "signal": stop.received.name}
            if stop_after is not None and step >= stop_after and step < cfg.optim.steps:
                bar.close()
                return {"interrupted": step}
    except NonFiniteLossError as e:
        bar.close()
        good = ckpt.latest_checkpoint(run)
        where = f"the last good checkpoint is {good}" if good else "no checkpoint had been written yet"
        raise NonFiniteLossError(f"{e}; the run stopped before the optimizer step and {where}. {nan_advice(cfg, run)}") from None
    finally:
        stop.restore()
    bar.close()
    return finish(r, progress)


def nan_advice(cfg: Config, run: Path) -> str:
    """What a user can do after a NaN: --resume cannot change the settings that cause one."""
    hp = objective_hp(cfg)
    knobs = [f"a lower --optim.lr (now {cfg.optim.lr:g})"]
    if hasattr(hp, "eta"):  # exp(A/eta) grows fast as eta shrinks
        knobs.append(f"a larger --objective.{cfg.objective.name}.eta (now {hp.eta:g})")
    return (f"--resume cannot change these settings, so start a new run (another --output-dir, or --overwrite "
            f"{run}) with {' or '.join(knobs)}; if the rewards or data can be non-finite, fix them first.")


START_DIR = ckpt.START_DIR


def start_policy(cfg: Config, task, run: Path, device, progress: bool, resume: bool) -> tuple[str, dict]:
    """The policy RL starts from, as (path, info).

    A start made in the SFT cache (the SFT warm start, or the tiny model's initial weights) is
    linked (or copied) into ``DIR/start_policy``, so the run folder alone suffices to resume and
    to evaluate its start: an emptied cache can neither block it nor silently re-run SFT. A
    resumed run reads the start it recorded in run_info.json (``ckpt.start_policy_path``: its own
    ``start_policy/`` wherever the folder now is) and fails with the path if it is gone.
    """
    info = ckpt.read_run_info(run) if resume else None
    if info is not None:
        path = ckpt.start_policy_path(run, info)
        if path == run / START_DIR and not (path / "config.json").exists():
            raise ConfigError(f"the run's start policy {str(path)!r} (run_info.json) is missing; restore that folder "
                              "or start a new run.")
        return str(path), info["start"]
    path, info = prepare_start_policy(cfg, task, device, progress)
    if not (info.get("sft") or cfg.model.name_or_path == TINY):
        return path, info  # a user's model folder: referenced, not copied
    local = run / START_DIR
    shutil.rmtree(local, ignore_errors=True)
    shutil.copytree(path, local, copy_function=_link_or_copy)
    return str(local), {**info, "cache_path": path}


def _link_or_copy(src: str, dst: str) -> None:
    """Hard-link when the cache and the run share a file system (no extra disk), else copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _load_start(cfg: Config, start_path: str, device):
    """The start policy, for a resumed run whose start_eval.json went missing."""
    return load_causal_lm(start_path, cfg.model, device, trainable=False)


def _save(r: RunState, step: int) -> None:
    cfg = r.cfg
    state = {"step": step, "data_position": step * cfg.rollout.prompts_per_step, "config": to_dict(cfg)}
    ckpt.save_checkpoint(r.dir, step, r.model, r.tokenizer, r.optimizer, r.scheduler, r.logz_head, state,
                         cfg.checkpoint.keep_last)


# ======================================================================================
# CLI
# ======================================================================================

# Fields a resumed run may change: they do not alter what has been computed so far. Each change is
# applied and recorded in DIR/resume_log.jsonl (old -> new) and DIR/config.yaml holds the new value.
# optim.steps may only grow past the last checkpoint; it also stretches the learning-rate schedule
# of the remaining steps (it is computed from the total), which the log line says.
# Every other field is refused with the list of these.
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
    p.add_argument("--overwrite", action="store_true",
                   help="Start afresh in a non-empty --output-dir: its files move into DIR/overwritten/<time>/ "
                        "(nothing is deleted).")
    p.add_argument("--stop-after", type=int, metavar="N",
                   help="Stop after RL step N, checkpointed, as if interrupted (for testing --resume).")
    p.add_argument("--no-progress", action="store_true", help="Hide progress bars (same as --logging.progress_bar false).")
    p.add_argument("--print-config", action="store_true", help="Print the resolved config and exit.")
    return p


def load_cli_plugins(argv: list[str] | None) -> None:
    """Import the modules of ``--plugins`` before the parser is built, so that --help lists the flags of
    the tasks and backends they register (the config's own ``plugins`` are imported when it is read)."""
    argv = sys.argv[1:] if argv is None else argv
    for i, tok in enumerate(argv):
        if tok.startswith("--plugins="):
            value = tok.split("=", 1)[1]
        elif tok == "--plugins" and i + 1 < len(argv):
            value = argv[i + 1]
        else:
            continue
        value = parse_value(value)
        load_plugins([value] if isinstance(value, str) else value)


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, Config]:
    load_cli_plugins(argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    overrides = parse_dotted_args(rest)
    if args.no_progress:
        overrides["logging.progress_bar"] = False
    if args.stop_after is not None and args.stop_after < 1:
        raise ConfigError(f"--stop-after {args.stop_after} must be >= 1 (the RL step after which to stop).")
    if args.resume:
        if args.overwrite:
            raise ConfigError(f"--resume {args.resume!r} continues a run and --overwrite starts one afresh; pass only one.")
        if args.config:
            raise ConfigError("--resume reads the run's own config.yaml; drop --config.")
        bad = [k for k in overrides if k != "output_dir" and not _resumable(k)]
        if bad:
            raise ConfigError(
                f"--{bad[0]} cannot be changed when resuming; valid overrides with --resume are "
                f"{', '.join(RESUMABLE_OVERRIDES)} (a trailing dot means any field of that section)."
            )
        run = Path(args.resume)
        if not (run / "config.yaml").is_file():
            raise ConfigError(f"--resume {str(run)!r} is not a run folder: it has no config.yaml.")
        if "output_dir" in overrides and Path(str(overrides["output_dir"])).resolve() != run.resolve():
            raise ConfigError(
                f"--output-dir {overrides['output_dir']!r} differs from --resume {str(run)!r}; a run is resumed in its "
                "own folder (drop --output-dir, or copy the folder first and resume the copy)."
            )
        saved = load_yaml(run / "config.yaml")
        data = merge_overrides(copy.deepcopy(saved), overrides)
        data["output_dir"] = str(run)
        cfg = validate(from_dict(data))
        last = ckpt.latest_checkpoint(run)
        done = int(last.name.split("_")[1]) if last is not None else 0
        if cfg.optim.steps < done:
            raise ConfigError(
                f"--optim.steps {cfg.optim.steps} is below the run's last checkpoint (step {done}); a resumed run "
                f"only continues, so pass --optim.steps >= {done} or start a new run."
            )
        if args.stop_after is not None and args.stop_after <= done:
            raise ConfigError(f"--stop-after {args.stop_after} is not past the run's last checkpoint (step {done}); "
                              f"pass a step > {done}.")
        # The checkpoint's own config is what the run computed with: config.yaml (hand-edited or not)
        # may differ from it only where a resume override may, the same rule as on the command line.
        trained = ckpt.checkpoint_config(run)
        reference = trained[1] if trained is not None else saved
        before = _flatten(to_dict(validate(from_dict({**reference, "output_dir": str(run)}))))
        after = _flatten(to_dict(cfg))
        if trained is not None:
            edited = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k) and not _resumable(k)
                            and k != "output_dir")
            if edited:
                raise ConfigError(
                    f"{str(run / 'config.yaml')!r} differs from the config checkpoint {trained[0].name} was trained "
                    "with in " + ", ".join(f"{k} ({before.get(k)!r} -> {after.get(k)!r})" for k in edited)
                    + f"; a resume may change only {', '.join(RESUMABLE_OVERRIDES)}: restore those values or start a "
                    "new run."
                )
        args.resume_changes = {k: [before.get(k), v] for k, v in after.items() if before.get(k) != v}
        return args, cfg
    return args, resolve(args.config, overrides)


def _resumable(key: str) -> bool:
    return any(key == r or key.startswith(r) for r in RESUMABLE_OVERRIDES)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _record_resume(run: Path, changes: dict) -> None:
    row = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "changed": changes}
    if "optim.steps" in changes:
        row["note"] = "optim.steps changed: the learning-rate schedule of the remaining steps follows the new total"
    with open(run / "resume_log.jsonl", "a") as fh:
        fh.write(json.dumps(row) + "\n")
    if changes:
        print("[lad_ref] resumed with " + ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in changes.items())
              + f" (recorded in {run / 'resume_log.jsonl'})", file=sys.stderr)


def preflight(cfg: Config, task) -> None:
    """Checks that need the task or the model folder, made before the run folder exists (ConfigError).

    The model source must load (:func:`lad_ref.llm.model.check_model_source`); the SFT cache must be
    writable when the start is still to be made there; the longest prompt plus ``max_new_tokens``
    (rollout and eval) must fit the model's context (``max_position_embeddings``). Prompts are
    measured in tokens with the model's tokenizer when it is a local folder (the tiny preset's is
    one token per character).
    """
    from lad_ref.llm.model import check_model_source, model_context_length
    from lad_ref.llm.sft import check_cache_dir

    m = cfg.model
    check_model_source(m.name_or_path)
    check_cache_dir(cfg, task)
    ctx = model_context_length(m.name_or_path, m.tiny.max_position_embeddings)
    if ctx is None:
        return
    for key, new in (("rollout.max_new_tokens", cfg.rollout.max_new_tokens), ("eval.max_new_tokens", cfg.eval.max_new_tokens)):
        if new is not None and new >= ctx:
            raise ConfigError(f"{key}={new} does not fit the model's context of {ctx} positions "
                              "(max_position_embeddings); pass a smaller value.")
    prompts = [e.prompt for e in (*task.train, *task.eval)]
    if m.name_or_path == TINY:
        lengths = [len(p) for p in prompts]  # one token per character, no chat template
    else:
        from lad_ref.llm.rollout import PromptFormatter

        fmt = PromptFormatter(load_tokenizer(m.name_or_path, m.trust_remote_code), m.chat_template, m.system_prompt)
        lengths = [len(fmt(p)) for p in prompts]
    i = max(range(len(lengths)), key=lengths.__getitem__)
    new = max(cfg.rollout.max_new_tokens, cfg.eval.max_new_tokens or 0)
    if lengths[i] + new > ctx:
        raise ConfigError(
            f"prompt {(*task.train, *task.eval)[i].uid!r} is {lengths[i]} tokens long, and with max_new_tokens={new} "
            f"it exceeds the model's context of {ctx} positions; shorten the prompts or lower max_new_tokens."
        )


def _interrupt_during_setup(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    lock = None
    # SIGTERM during set-up (SFT, start evaluation) stops at once like Ctrl-C; the RL loop installs
    # its own handlers that finish the step and checkpoint it (StopSignals).
    old_term = signal.signal(signal.SIGTERM, _interrupt_during_setup) if threading.current_thread() is threading.main_thread() else None
    try:
        try:
            args, cfg = parse(argv)
            if args.print_config:
                import yaml

                print(yaml.safe_dump(to_dict(cfg), sort_keys=False))
                return 0
            ckpt.pick_device(cfg.device)  # a requested GPU that is not there fails now, not after SFT
            check_device(cfg.rollout.backend, cfg.device, torch.cuda.is_available())  # e.g. vllm on a CPU machine
            task = build_task(cfg)  # reads every data file: bad data fails here, before any training
            preflight(cfg, task)  # the model source, the SFT cache, prompt lengths: before the run folder exists
            run = ckpt.prepare_run_dir(cfg.output_dir, resume=bool(args.resume), overwrite=args.overwrite)
            lock = ckpt.RunLock(run).__enter__()  # before anything in the folder is moved or written
            if args.overwrite and not args.resume:
                ckpt.archive_previous_run(run)
            if args.resume:
                _record_resume(run, getattr(args, "resume_changes", {}))
        except (ConfigError, DataError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        try:
            result = train(cfg, task, run, resume=bool(args.resume), stop_after=args.stop_after)
        except NonFiniteLossError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        except ConfigError as e:  # found only once the run folder is read (e.g. its start policy is gone)
            print(f"error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as e:
            name = str(e) or "SIGINT"
            if ckpt.latest_checkpoint(run) is not None:
                hint = f"continue with: python -m lad_ref.llm.train --resume {run}"
            elif (run / "config.yaml").is_file():  # the folder is not empty any more: the same command is refused
                hint = (f"no RL checkpoint exists yet; continue with: python -m lad_ref.llm.train --resume {run} "
                        "(a finished SFT warm start is cached)")
            else:
                hint = "no RL checkpoint exists yet: rerun the same command"
            print(f"\n[lad_ref] stopped by {name} before the current step finished; {hint}", file=sys.stderr)
            return 128 + signal.Signals[name].value
        if "signal" in result:
            return 128 + signal.Signals[result["signal"]].value
        return 0
    finally:
        if lock is not None:
            lock.__exit__(None, None, None)
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


if __name__ == "__main__":
    sys.exit(main())

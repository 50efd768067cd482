"""Supervised warm start (SFT) on uniformly sampled valid solutions, cached by a config hash.

RL needs a start policy that is *diverse and partly correct*: diverse so that there is
something to keep (or lose) during RL, partly correct so that groups of G samples contain
both successes and failures and the advantages are not all zero. SFT on correct answers
drawn uniformly from all correct answers of each training prompt gives exactly that after
a short, deliberately unfinished training run (``sft.steps``): the model spreads its mass
over many answers but still makes errors.

Caching: the SFT checkpoint is a pure function of (model preset, task, SFT settings, seed),
so it is saved under ``<sft.cache_dir>/<hash>/`` where the hash covers exactly those inputs.
A grpo run and a lad run with the same seed therefore start from the *identical* policy
(bit for bit), and the second run skips SFT. The checkpoint is written to a temporary folder
and renamed into place, so two runs racing on the same hash never see a half-written one.
The run folder records the path and hash in ``run_info.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import random
import shutil
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from lad_ref.llm.config import Config, to_dict
from lad_ref.llm.model import TINY, load_causal_lm, load_tokenizer, materialise_tiny
from lad_ref.llm.rollout import (
    PromptFormatter,
    RolloutBatch,
    eos_token_ids,
    left_pad,
    sequence_log_probs,
)
from lad_ref.llm.schedule import warmup_then_decay
from lad_ref.llm.seeding import Tag, sub_seed
from lad_ref.llm.tasks import task_settings

SFT_FORMAT_VERSION = 2  # bump when the SFT procedure or the tiny tokenizer changes, to invalidate old caches


def default_cache_dir() -> Path:
    root = os.environ.get("LAD_REF_CACHE")
    return Path(root) / "sft" if root else Path.home() / ".cache" / "lad_ref" / "sft"


def sft_key(cfg: Config) -> str:
    """Hash of everything that determines the SFT checkpoint (and nothing else)."""
    c = to_dict(cfg)
    settings = task_settings(cfg)
    relevant = {
        "version": SFT_FORMAT_VERSION,
        "seed": cfg.seed,
        "model": {k: c["model"][k] for k in ("name_or_path", "tiny", "dtype", "chat_template", "system_prompt")},
        # the task and its own settings (data.<task>): for digit_sum the key it always had
        "data": {"task": cfg.data.task, cfg.data.task: None if settings is None else dataclasses.asdict(settings)},
        "sft": {k: v for k, v in c["sft"].items() if k not in ("cache_dir", "enabled")},
    }
    blob = json.dumps(relevant, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def initial_model_path(cfg: Config, scratch: Path) -> Path | str:
    """The checkpoint training starts from before SFT: the tiny preset (built into ``scratch``) or the given path."""
    if cfg.model.name_or_path == TINY:
        return materialise_tiny(cfg.model.tiny, scratch, seed=cfg.seed)
    return cfg.model.name_or_path


def sft_batch(task, examples, tokenizer, formatter, eos_id: int, rng: random.Random, n: int) -> RolloutBatch:
    """n (prompt, uniformly sampled correct answer + EOS) pairs as a RolloutBatch (answer = 'response')."""
    prompts, responses = [], []
    for _ in range(n):
        ex = rng.choice(examples)
        prompts.append(formatter(ex.prompt))
        responses.append(tokenizer(task.sample_solution(ex, rng), add_special_tokens=False)["input_ids"] + [eos_id])
    prompt_ids, prompt_mask = left_pad(prompts, tokenizer.pad_token_id)
    width = max(len(r) for r in responses)
    response_ids = torch.full((n, width), tokenizer.pad_token_id, dtype=torch.long)
    response_mask = torch.zeros((n, width), dtype=torch.long)
    for i, r in enumerate(responses):
        response_ids[i, : len(r)] = torch.tensor(r)
        response_mask[i, : len(r)] = 1
    return RolloutBatch(prompt_ids, prompt_mask, response_ids, response_mask, None, [], torch.zeros(n, dtype=torch.bool))


def run_sft(cfg: Config, task, start_path, out_dir: Path, device: torch.device, progress: bool = True) -> dict:
    """Train ``start_path`` on sampled solutions for ``cfg.sft.steps`` steps; save to ``out_dir``."""
    s = cfg.sft
    tokenizer = load_tokenizer(start_path, cfg.model.trust_remote_code)
    model = load_causal_lm(start_path, cfg.model, device)
    formatter = PromptFormatter(tokenizer, cfg.model.chat_template, cfg.model.system_prompt)
    eos_id = eos_token_ids(tokenizer, model)[0] if tokenizer.eos_token_id is None else tokenizer.eos_token_id
    rng = random.Random(sub_seed(cfg.seed, Tag.SFT))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)

    # linear warm-up, cosine decay to 10% of the peak
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_then_decay(s.warmup_steps, s.steps, "cosine", 0.1))
    torch.manual_seed(sub_seed(cfg.seed, Tag.SFT, 1))
    t0 = time.time()
    bar = tqdm(range(s.steps), desc="sft", disable=not progress, dynamic_ncols=True)
    loss_ema = None
    for step in bar:
        batch = sft_batch(task, task.train, tokenizer, formatter, eos_id, rng, s.batch_size).to(device)
        lp = sequence_log_probs(model, batch, temperature=1.0)["log_prob"]
        m = batch.response_mask.float()
        loss = -(lp * m).sum() / m.sum()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"SFT loss became {loss.item()} at step {step}; lower sft.lr.")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        loss_ema = loss.item() if loss_ema is None else 0.95 * loss_ema + 0.05 * loss.item()
        if step % 10 == 0:
            bar.set_postfix(loss=f"{loss_ema:.3f}")
    bar.close()
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    info = {"steps": s.steps, "final_loss_ema": loss_ema, "seconds": round(time.time() - t0, 1)}
    (out_dir / "sft_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def prepare_start_policy(cfg: Config, task, device: torch.device, progress: bool = True) -> tuple[str, dict]:
    """Path of the policy RL starts from: the cached SFT checkpoint (made if missing) or the model itself.

    Returns (path, info) with info = {"sft": bool, "key": hash, "cached": bool, ...}.
    """
    use_sft = cfg.sft.enabled and cfg.sft.steps > 0 and task.can_sample_solutions
    if not use_sft:
        if cfg.model.name_or_path == TINY:
            cache = Path(cfg.sft.cache_dir) if cfg.sft.cache_dir else default_cache_dir()
            folder = cache / f"tiny-init-{sft_key(cfg)}"
            if not (folder / "config.json").exists():
                tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
                with _removed_on_failure(tmp):
                    materialise_tiny(cfg.model.tiny, tmp, seed=cfg.seed)
                    _publish(tmp, folder)
            return str(folder), {"sft": False, "path": str(folder)}
        return cfg.model.name_or_path, {"sft": False, "path": cfg.model.name_or_path}
    cache = Path(cfg.sft.cache_dir) if cfg.sft.cache_dir else default_cache_dir()
    key = sft_key(cfg)
    folder = cache / key
    if (folder / "sft_info.json").exists():
        info = json.loads((folder / "sft_info.json").read_text())
        return str(folder), {"sft": True, "key": key, "path": str(folder), "cached": True, **info}
    tmp = cache / f"{key}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)  # our own leftover from a crashed attempt (same pid), never a run folder
    with _removed_on_failure(tmp):  # Ctrl-C / SIGTERM / an error: no half-made folder stays in the cache
        tmp.mkdir(parents=True)
        start = initial_model_path(cfg, tmp / "init")
        info = run_sft(cfg, task, start, tmp, device, progress)
        shutil.rmtree(tmp / "init", ignore_errors=True)
        _publish(tmp, folder)
    return str(folder), {"sft": True, "key": key, "path": str(folder), "cached": False, **info}


@contextlib.contextmanager
def _removed_on_failure(tmp: Path):
    try:
        yield
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def cache_target(cfg: Config, task) -> Path | None:
    """The cache folder the start policy of ``cfg`` is (or will be) in, or None when none is made there."""
    cache = Path(cfg.sft.cache_dir) if cfg.sft.cache_dir else default_cache_dir()
    if cfg.sft.enabled and cfg.sft.steps > 0 and task.can_sample_solutions:
        return cache / sft_key(cfg)
    if cfg.model.name_or_path == TINY:
        return cache / f"tiny-init-{sft_key(cfg)}"
    return None


def check_cache_dir(cfg: Config, task) -> None:
    """Refuse an SFT cache folder that cannot be written when the start still has to be made there (ConfigError)."""
    from lad_ref.config_io import ConfigError

    target = cache_target(cfg, task)
    if target is None or (target / "config.json").exists():
        return
    existing = target.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"sft.cache_dir {str(target.parent)!r} cannot be written ({str(existing)!r} is not a writable "
                          "folder); pass --sft.cache_dir with a folder you can write to.")


def _publish(tmp: Path, folder: Path) -> None:
    """Atomically move a finished checkpoint into place; if another run got there first, keep theirs."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(tmp, folder)
    except OSError:  # the target exists (a concurrent run with the same hash finished first)
        shutil.rmtree(tmp, ignore_errors=True)

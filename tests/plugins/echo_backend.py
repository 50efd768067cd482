"""A rollout backend registered from outside lad_ref (no edit to lad_ref): ``rollout.backend: echo``.

It samples with plain forward passes over the whole sequence (no KV cache, no ``generate``), one
token at a time, from softmax(logits / temperature), with its own seeded generator, and records
the log-probs of the sampled tokens (pi_old). Settings ``rollout.echo``: ``chunk_size`` rows per
forward pass. The shared base class (lad_ref.llm.backends.Rollout) turns the sampled tokens into a
masked RolloutBatch.

Used by tests/test_plugins_tasks_backends.py as ``plugins: [echo_backend]`` (this folder on sys.path).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from lad_ref.config_io import ConfigError
from lad_ref.llm.backends import BackendInputs, Rollout, register_backend
from lad_ref.llm.rollout import RolloutBatch, left_pad

CALLS: list[int] = []  # rows sampled per generate() call: how the tests see that this backend ran


@dataclass
class EchoSettings:
    """Token-by-token sampling with full forward passes (tests/plugins/echo_backend.py)."""

    chunk_size: int = field(default=16, metadata={"help": "Rows per forward pass."})


def check(s: EchoSettings) -> None:
    if s.chunk_size < 1:
        raise ConfigError(f"rollout.echo.chunk_size={s.chunk_size!r} must be >= 1.")


class EchoRollout(Rollout):
    def __init__(self, tokenizer, formatter, eos_ids, batch_size: int, chunk_size: int):
        super().__init__(tokenizer, formatter, eos_ids, batch_size)
        self.chunk_size = chunk_size

    @torch.no_grad()
    def generate(self, model, prompts, num_samples, *, max_new_tokens, temperature=1.0, top_p=1.0, top_k=0,
                 seed=0) -> RolloutBatch:
        if top_p < 1.0 or top_k > 0:
            raise ValueError("the echo backend samples from the whole tempered distribution; use top_p 1, top_k 0.")
        CALLS.append(len(prompts) * num_samples)
        device = next(model.parameters()).device
        rows = [ids for p in prompts for ids in [self.formatter(p)] * num_samples]
        gen = torch.Generator().manual_seed(seed % 2**63)
        eos = torch.tensor(self.eos_ids, device=device)
        was_training = model.training
        model.eval()
        parts = []
        try:
            for start in range(0, len(rows), self.chunk_size):
                prompt_ids, prompt_mask = left_pad(rows[start:start + self.chunk_size], self.pad_id)
                ids, mask = prompt_ids.to(device), prompt_mask.to(device)
                done = torch.zeros(ids.shape[0], dtype=torch.bool, device=device)
                tokens, log_probs = [], []
                for _ in range(max_new_tokens):
                    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
                    logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids,
                                   use_cache=False).logits[:, -1].float()
                    logp = F.log_softmax(logits / temperature, -1)
                    tok = torch.multinomial(logp.exp().cpu(), 1, generator=gen).squeeze(-1).to(device)
                    tokens.append(tok)
                    log_probs.append(logp.gather(-1, tok[:, None]).squeeze(-1))
                    done |= torch.isin(tok, eos)
                    ids = torch.cat([ids, tok[:, None]], 1)
                    mask = torch.cat([mask, torch.ones_like(tok[:, None])], 1)
                    if done.all():
                        break
                parts.append((prompt_ids, prompt_mask, torch.stack(tokens, 1).cpu(), torch.stack(log_probs, 1).cpu()))
        finally:
            model.train(was_training)
        return self._assemble(parts)


@register_backend("echo", settings=EchoSettings, check_settings=check)
def build(inputs: BackendInputs) -> EchoRollout:
    return EchoRollout(inputs.tokenizer, inputs.formatter, inputs.eos_ids, inputs.cfg.rollout.batch_size,
                       inputs.settings.chunk_size)

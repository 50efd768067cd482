"""Rollouts: sample G responses per prompt and record their log-probs (pi_old); recompute log-probs.

The behaviour policy pi_old
---------------------------
Responses are sampled from softmax(logits / T) with T = ``rollout.temperature``. Both the
log-probs recorded at generation and the ones the trainer recomputes are taken from that
same tempered distribution, log_softmax(logits / T), so the ratio r = pi_theta / pi_old
compares like with like. Top-k / top-p truncation (off in every shipped config) is *not*
reflected in pi_old, as in verl and TRL: with truncation on, pi_old is the tempered
distribution before truncation.

The trainer uses :func:`sequence_log_probs` (a full forward pass over prompt + response) as
pi_old, recomputed before the first update; generation-time log-probs are kept to check the
two agree (metric ``rollout/logprob_max_abs_diff``; test ``test_llm_rollout``). On CPU in
float32 they agree to ~1e-6; in bf16, or with vLLM's kernels, they do not, which is why the
recomputed values are the ones used.

Backends
--------
The engines that sample are registered rollout backends (``rollout.backend``), one file per family in
:mod:`lad_ref.llm.backends`: ``hf``, ``hf-static``, ``hf-continuous`` (:mod:`lad_ref.llm.backends.hf`)
and ``vllm`` (:mod:`lad_ref.llm.backends.vllm`). This module holds what they share: the batch
container, prompt formatting, padding and masks, and the trainer's log-prob recomputation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

Tensor = torch.Tensor
_LOGSOFTMAX_ELEMENTS = 2**28  # float32 elements per log-softmax chunk (1 GiB)


# ======================================================================================
# batch container and prompt formatting
# ======================================================================================


@dataclass
class RolloutBatch:
    """N sampled responses. Prompts are left-padded, responses right-padded.

    prompt_ids, prompt_mask:     (N, Lp)
    response_ids, response_mask: (N, Lr); the mask covers the response up to and including EOS
    gen_log_probs:               (N, Lr) log pi_old of each sampled token at generation time (0 on padding)
    texts:                       decoded responses without special tokens
    truncated:                   (N,) True where the response hit max_new_tokens without EOS
    """

    prompt_ids: Tensor
    prompt_mask: Tensor
    response_ids: Tensor
    response_mask: Tensor
    gen_log_probs: Tensor | None
    texts: list[str]
    truncated: Tensor

    def __len__(self) -> int:
        return self.response_ids.shape[0]

    def select(self, idx: Tensor) -> RolloutBatch:
        """Rows ``idx`` (a minibatch)."""
        il = idx.tolist()
        return RolloutBatch(
            self.prompt_ids[idx], self.prompt_mask[idx], self.response_ids[idx], self.response_mask[idx],
            None if self.gen_log_probs is None else self.gen_log_probs[idx], [self.texts[i] for i in il],
            self.truncated[idx],
        )

    def to(self, device) -> RolloutBatch:
        g = self.gen_log_probs
        return RolloutBatch(
            self.prompt_ids.to(device), self.prompt_mask.to(device), self.response_ids.to(device),
            self.response_mask.to(device), None if g is None else g.to(device), self.texts, self.truncated.to(device),
        )


class PromptFormatter:
    """Raw task prompt -> model input text: the chat template when the model has one (or is told to)."""

    def __init__(self, tokenizer, use_chat_template: bool | None, system_prompt: str | None):
        has = getattr(tokenizer, "chat_template", None) is not None
        if use_chat_template and not has:
            raise ValueError("model.chat_template=true but the tokenizer has no chat template; set it to false or null.")
        self.tokenizer = tokenizer
        self.use_chat = has if use_chat_template is None else use_chat_template
        self.system_prompt = system_prompt

    def __call__(self, prompt: str) -> list[int]:
        if not self.use_chat:
            return self.tokenizer(prompt, add_special_tokens=True)["input_ids"]
        messages = [{"role": "user", "content": prompt}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        # The template already contains any BOS token.
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]


def eos_token_ids(tokenizer, model) -> list[int]:
    """Every token that ends a response: the tokenizer's EOS and the model's generation-config EOS ids."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(gen_eos, int):
        ids.add(gen_eos)
    elif gen_eos:
        ids.update(int(i) for i in gen_eos)
    if not ids:
        raise ValueError("the tokenizer has no EOS token, so responses could never end; set tokenizer.eos_token.")
    return sorted(ids)


def left_pad(seqs: list[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """(N, L) ids and mask, left-padded (generation appends on the right)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s):] = 1
    return ids, mask


def response_mask_from_ids(response_ids: Tensor, eos_ids: list[int]) -> tuple[Tensor, Tensor]:
    """Mask of valid response tokens (up to and including the first EOS) and the truncation flags."""
    is_eos = torch.isin(response_ids, torch.tensor(eos_ids, device=response_ids.device))
    # eos_before[t] = an EOS occurred strictly before position t
    eos_before = (is_eos.long().cumsum(-1) - is_eos.long()) > 0
    mask = (~eos_before).long()
    return mask, ~is_eos.any(-1)


# ======================================================================================
# log-prob recomputation (the one forward pass the trainer uses)
# ======================================================================================


def forward_inputs(batch: RolloutBatch) -> tuple[Tensor, Tensor, Tensor]:
    """input_ids, attention_mask, position_ids of prompt + response, positions as generate() assigns them."""
    input_ids = torch.cat([batch.prompt_ids, batch.response_ids], dim=1)
    attention_mask = torch.cat([batch.prompt_mask, batch.response_mask.long()], dim=1)
    # generate() numbers positions from the first real (non-pad) prompt token; do the same so that
    # left-padded prompts get identical rotary positions in both passes.
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    return input_ids, attention_mask, position_ids


def token_log_probs(
    logits: Tensor,
    ids: Tensor,
    temperature: float = 1.0,
    *,
    with_entropy: bool = False,
    max_elements: int = _LOGSOFTMAX_ELEMENTS,
) -> dict[str, Tensor]:
    """log softmax(logits / temperature) at ``ids``: (n, L, V) logits and (n, L) ids -> {"log_prob"} (n, L),
    float32, and optionally {"entropy"} (n, L) of the same tempered distribution.

    The float32 log-softmax runs a few rows at a time: for a 150k-token vocabulary and 4k-token
    responses a whole micro-batch in float32 would need tens of GB at once; ``max_elements`` bounds
    the float32 elements per chunk (at least one row). Differentiable.
    """
    rows = max(1, max_elements // max(1, logits.shape[1] * logits.shape[2]))
    log_probs, entropies = [], []
    for i in range(0, logits.shape[0], rows):
        logp_all = F.log_softmax(logits[i:i + rows].float() / temperature, dim=-1)
        log_probs.append(logp_all.gather(-1, ids[i:i + rows].unsqueeze(-1)).squeeze(-1))
        if with_entropy:
            entropies.append(-(logp_all.exp() * logp_all).sum(-1))
    result = {"log_prob": torch.cat(log_probs)}
    if with_entropy:
        result["entropy"] = torch.cat(entropies)
    return result


def sequence_log_probs(
    model,
    batch: RolloutBatch,
    temperature: float,
    *,
    with_entropy: bool = False,
    with_hidden: bool = False,
) -> dict[str, Tensor]:
    """Per-token log pi(response token) under softmax(logits / temperature), (n, Lr), float32.

    Returns {"log_prob"} and optionally {"entropy"} (n, Lr) (full-vocabulary entropy of the
    same tempered distribution, for EntAdv) and {"hidden"} (n, Lp + Lr, h) last-layer hidden
    states (for FlowRL's log Z head). Gradients flow unless the caller wraps it in no_grad.
    """
    input_ids, attention_mask, position_ids = forward_inputs(batch)
    lr = batch.response_ids.shape[1]
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=False,
        output_hidden_states=with_hidden,
        logits_to_keep=lr + 1,  # only the positions that predict response tokens (saves vocab-size memory)
    )
    logits = out.logits[:, :-1]  # position t predicts response token t
    result = token_log_probs(logits, batch.response_ids, temperature, with_entropy=with_entropy)
    if with_hidden:
        result["hidden"] = out.hidden_states[-1]
    return result


# ======================================================================================
# the configured backend
# ======================================================================================


def build_rollout(cfg, tokenizer, model, model_path: str):
    """The configured rollout engine for ``model`` (whose weights live at ``model_path``, for engines that
    load their own copy): ``rollout.backend`` looked up in :mod:`lad_ref.llm.backends`' registry."""
    from lad_ref.llm.backends import build_rollout as build

    return build(cfg, tokenizer, model, model_path)


# The backend classes lived here; still importable from here (looked up on first use: the backends
# import this module).
_MOVED = {"HF_BACKENDS": "hf", "HFRollout": "hf", "VLLMRollout": "vllm", "VLLMSettings": "vllm"}


def __getattr__(name: str):
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(f"lad_ref.llm.backends.{_MOVED[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

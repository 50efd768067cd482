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
* :class:`HFRollout`: ``model.generate`` (KV cache, batched, left-padded prompts); the
  sampling RNG is seeded per call from ``seed`` so a run is reproducible on CPU. Three ways
  to run it, all transformers' own (``rollout.backend``; no vLLM needed):

  - ``hf``: plain ``generate`` with the default dynamic KV cache (the default everywhere);
  - ``hf-static``: ``generate(cache_implementation="static")``: a preallocated KV cache, and on
    CUDA transformers then compiles the decoding step with ``torch.compile`` by itself (its
    auto-compile rule; on CPU it runs uncompiled). Same RNG draws in the same order as ``hf``,
    so for the same seed it gives the same samples wherever the logits agree bitwise (CPU
    float32: checked in tests/test_gpu_check.py); compiled kernels round differently, which
    can flip a near-tie draw now and then;
  - ``hf-continuous``: ``model.generate_batch`` (transformers' continuous batching with a paged
    KV cache; tested with transformers 5.10, 5.17 and 5.24). It draws tokens for a packed batch whose composition
    changes as requests finish, so it gives samples from the same distribution but **not**
    the same samples as ``hf`` for a seed; its recorded log-probs (tempered) agree with the
    trainer's recomputation (tested).

  Which is fastest on a GPU is measured by ``benchmarks/gpu_check.py`` (docs/gpu.md). Until
  a measurement says otherwise the default stays ``hf``.
* :class:`VLLMRollout`: a colocated vLLM engine in the training process (TRL's "colocate" mode),
  weights pushed after every optimizer update. Real code, exercised only on GPU machines
  with vLLM installed; tests skip it elsewhere.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lad_ref.llm.seeding import sub_seed

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
# HF generate backend
# ======================================================================================


# rollout.backend -> HFRollout's KV-cache mode (see the module docstring).
HF_BACKENDS = {"hf": "dynamic", "hf-static": "static", "hf-continuous": "continuous"}


class HFRollout:
    """Batched sampling with ``model.generate`` (KV cache), G samples per prompt, seeded per call.

    ``cache``: ``dynamic`` (plain generate), ``static`` (preallocated cache, compiled decoding on
    CUDA) or ``continuous`` (``generate_batch``, paged cache); see the module docstring.
    """

    def __init__(self, tokenizer, formatter: PromptFormatter, eos_ids: list[int], batch_size: int,
                 cache: str = "dynamic"):
        if cache not in HF_BACKENDS.values():
            raise ValueError(f"HFRollout cache={cache!r} is not known; valid choices are "
                             f"{', '.join(HF_BACKENDS.values())}.")
        self.tokenizer = tokenizer
        self.formatter = formatter
        self.eos_ids = eos_ids
        self.batch_size = batch_size
        self.pad_id = tokenizer.pad_token_id
        self.cache = cache

    def sync_weights(self, model) -> None:
        """Nothing to do: generate() runs on the training model itself."""

    def generation_config(self, max_new_tokens: int, temperature: float, top_p: float, top_k: int):
        from transformers import GenerationConfig

        # Every sampling knob is set explicitly: generate() fills unset (None) fields from the
        # checkpoint's generation_config.json, which for hub models often enables top_k=20 or a
        # repetition penalty; those would silently change the sampling distribution.
        return GenerationConfig(
            do_sample=True,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            min_p=0.0,
            typical_p=1.0,
            repetition_penalty=1.0,
            no_repeat_ngram_size=0,
            max_new_tokens=max_new_tokens,
            eos_token_id=self.eos_ids,
            pad_token_id=self.pad_id,
            bos_token_id=None,
            use_cache=True,
            # static: a preallocated cache of prompt + max_new_tokens, which is what lets
            # transformers compile the decoding step on CUDA. None = the default dynamic cache.
            cache_implementation="static" if self.cache == "static" else None,
            output_logits=True,
            return_dict_in_generate=True,
        )

    @torch.no_grad()
    def generate(
        self,
        model,
        prompts: list[str],
        num_samples: int,
        *,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        seed: int = 0,
    ) -> RolloutBatch:
        """``num_samples`` responses for each prompt, rows grouped by prompt (prompt i -> rows i*G..i*G+G-1)."""
        device = next(model.parameters()).device
        gen_cfg = self.generation_config(max_new_tokens, temperature, top_p, top_k)
        encoded = [self.formatter(p) for p in prompts]
        rows = [ids for ids in encoded for _ in range(num_samples)]
        if self.cache == "continuous":
            return self._generate_continuous(model, rows, gen_cfg, seed, device)
        was_training = model.training
        # eval() only changes dropout (none in the tiny preset; LoRA dropout defaults to 0), so the
        # generation distribution is the training-mode one; gradient checkpointing would disable the cache.
        model.eval()
        parts = []
        try:
            for c, start in enumerate(range(0, len(rows), self.batch_size)):
                chunk = rows[start:start + self.batch_size]
                prompt_ids, prompt_mask = left_pad(chunk, self.pad_id)
                with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                    torch.manual_seed(sub_seed(seed, c))
                    out = model.generate(
                        input_ids=prompt_ids.to(device),
                        attention_mask=prompt_mask.to(device),
                        generation_config=gen_cfg,
                    )
                response_ids = out.sequences[:, prompt_ids.shape[1]:]
                logits = torch.stack(out.logits, dim=1).float() / temperature  # raw logits, tempered here
                gen_lp = F.log_softmax(logits, -1).gather(-1, response_ids.unsqueeze(-1)).squeeze(-1)
                parts.append((prompt_ids, prompt_mask, response_ids.cpu(), gen_lp.cpu()))
        finally:
            model.train(was_training)
        return self._assemble(parts)

    def _generate_continuous(self, model, rows: list[list[int]], gen_cfg, seed: int, device) -> RolloutBatch:
        """All rows through ``model.generate_batch`` (continuous batching, paged KV cache).

        transformers schedules the requests itself (no ``batch_size`` chunks) and returns, per
        request, the sampled tokens and their log-probs after the temperature warper (the
        tempered log pi_old, as the ``hf`` path records). Its sampler is seeded from ``seed``
        through ``ContinuousBatchingConfig.seed``; the global RNG is restored afterwards.
        """
        try:
            from transformers import ContinuousBatchingConfig
        except ImportError:
            try:
                from transformers.generation.configuration_utils import ContinuousBatchingConfig
            except ImportError:
                import transformers

                raise RuntimeError(
                    f"rollout.backend='hf-continuous' needs transformers' ContinuousBatchingConfig (tested with "
                    f"5.10-5.24; installed {transformers.__version__}); valid choices here are: hf, hf-static."
                ) from None
        cb_gen_cfg = copy.deepcopy(gen_cfg)
        cb_gen_cfg.output_logits, cb_gen_cfg.return_dict_in_generate = False, False  # it returns its own outputs
        cb_gen_cfg.min_p = None  # 0 is a no-op, but CB would warn that it may not support the warper
        if device.type == "cuda":
            # A KV-cache share of 30% of the free memory: the trainer's weights, gradients and optimizer
            # state live beside it (transformers' default takes 80-90%).
            sizing = {"max_memory_percent": 0.3}
        else:
            # On a CPU transformers sizes the cache from the machine's *total RAM*; give it exactly
            # what these requests need instead (one extra block per request for partial blocks).
            block = 32
            longest = max(len(r) for r in rows) + gen_cfg.max_new_tokens
            sizing = {"block_size": block, "num_blocks": len(rows) * (-(-longest // block) + 1),
                      "max_batch_tokens": max(256, sum(len(r) for r in rows))}
        cb_cfg = ContinuousBatchingConfig(return_logprobs=True, seed=seed % 2**31, **sizing)
        was_training = model.training
        model.eval()
        try:
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                out = model.generate_batch(rows, generation_config=cb_gen_cfg, continuous_batching_config=cb_cfg,
                                           progress_bar=False, warmup=False)
        finally:
            model.train(was_training)
        results = list(out.values())  # generate_batch returns them in the order of the inputs
        if len(results) != len(rows) or any(r.error for r in results):
            errors = sorted({str(r.error) for r in results if r.error})
            raise RuntimeError(f"continuous batching returned {len(results)} of {len(rows)} responses"
                               + (f" ({'; '.join(errors)})" if errors else "") + ".")
        prompt_ids, prompt_mask = left_pad(rows, self.pad_id)
        width = max(1, max(len(r.generated_tokens) for r in results))
        response_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        gen_lp = torch.zeros((len(rows), width))
        for i, r in enumerate(results):
            n = len(r.generated_tokens)
            response_ids[i, :n] = torch.tensor(r.generated_tokens, dtype=torch.long)
            gen_lp[i, :n] = torch.tensor(r.logprobs[:n], dtype=torch.float32)
        return self._assemble([(prompt_ids, prompt_mask, response_ids, gen_lp)])

    def _assemble(self, parts) -> RolloutBatch:
        lp_width = max(p[0].shape[1] for p in parts)
        lr_width = max(p[2].shape[1] for p in parts)
        pids, pmask, rids, glp = [], [], [], []
        for prompt_ids, prompt_mask, response_ids, gen_lp in parts:
            pad_l = lp_width - prompt_ids.shape[1]
            pad_r = lr_width - response_ids.shape[1]
            pids.append(F.pad(prompt_ids, (pad_l, 0), value=self.pad_id))
            pmask.append(F.pad(prompt_mask, (pad_l, 0), value=0))
            rids.append(F.pad(response_ids, (0, pad_r), value=self.pad_id))
            glp.append(F.pad(gen_lp, (0, pad_r), value=0.0))
        response_ids = torch.cat(rids)
        response_mask, truncated = response_mask_from_ids(response_ids, self.eos_ids)
        response_ids = torch.where(response_mask.bool(), response_ids, torch.full_like(response_ids, self.pad_id))
        gen_lp = torch.cat(glp) * response_mask
        texts = self.tokenizer.batch_decode(response_ids, skip_special_tokens=True)
        return RolloutBatch(torch.cat(pids), torch.cat(pmask), response_ids, response_mask, gen_lp, texts, truncated)


# ======================================================================================
# vLLM backend (GPU only)
# ======================================================================================


class VLLMRollout(HFRollout):
    """A colocated vLLM engine in the training process; weights are pushed after every update.

    Exercised only on GPU machines with vLLM installed (``pip install vllm``); the tests skip
    it elsewhere. Follows TRL's colocate mode: an in-process engine
    (``distributed_executor_backend="external_launcher"``), ``load_weights`` on the engine's
    model after each optimizer step (LoRA adapters merged for the push, then unmerged), prefix
    cache reset. vLLM's own log-probs are tempered ("processed_logprobs") and kept as
    ``gen_log_probs`` for the agreement check; the trainer recomputes pi_old with its own
    forward pass, as verl does, because vLLM's kernels differ numerically from the trainer's.
    """

    def __init__(self, tokenizer, formatter: PromptFormatter, eos_ids: list[int], batch_size: int,
                 model_path: str, dtype: str, gpu_memory_utilization: float, max_model_len: int | None,
                 seed: int, trust_remote_code: bool = False):
        super().__init__(tokenizer, formatter, eos_ids, batch_size)
        try:
            from vllm import LLM
        except ImportError:
            raise RuntimeError("rollout.backend='vllm' needs vLLM (pip install vllm); valid choices without it are: hf.") from None
        if not torch.cuda.is_available():
            raise RuntimeError("rollout.backend='vllm' needs a CUDA GPU; valid choice on this machine is: hf.")
        # A single-process "distributed" setup so that the engine runs inside this process.
        os.environ.setdefault("RANK", "0")
        os.environ.setdefault("LOCAL_RANK", "0")
        os.environ.setdefault("WORLD_SIZE", "1")
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
        self.llm = LLM(
            model=str(model_path),
            tokenizer=str(model_path),
            dtype=dtype if dtype != "auto" else "bfloat16",
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            distributed_executor_backend="external_launcher",
            seed=seed,
            logprobs_mode="processed_logprobs",  # log-probs after temperature, like pi_old
            trust_remote_code=trust_remote_code,
            enable_prefix_caching=True,
        )

    def _engine_model(self):
        return self.llm.llm_engine.model_executor.driver_worker.model_runner.model

    @torch.no_grad()
    def sync_weights(self, model) -> None:
        """Push the training weights into the engine (merge LoRA first, then unmerge)."""
        from lad_ref.llm.model import is_peft

        engine_model = self._engine_model()
        if is_peft(model):
            model.merge_adapter()
            try:
                for name, p in model.named_parameters():
                    name = name.removeprefix("base_model.model.").replace(".base_layer", "")
                    if model.prefix in name or "original_module" in name:
                        continue
                    engine_model.load_weights([(name.replace("modules_to_save.default.", ""), p.data)])
            finally:
                model.unmerge_adapter()
        else:
            for name, p in model.named_parameters():
                engine_model.load_weights([(name.replace("_checkpoint_wrapped_module.", ""), p.data)])
        self.llm.reset_prefix_cache()

    @torch.no_grad()
    def generate(self, model, prompts, num_samples, *, max_new_tokens, temperature=1.0, top_p=1.0, top_k=0, seed=0):
        from vllm import SamplingParams

        encoded = [self.formatter(p) for p in prompts]
        params = SamplingParams(
            n=num_samples, temperature=temperature, top_p=top_p, top_k=top_k if top_k > 0 else -1,
            max_tokens=max_new_tokens, logprobs=0, seed=seed, stop_token_ids=self.eos_ids,
        )
        outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in encoded], sampling_params=params, use_tqdm=False)
        rows, resp, lps = [], [], []
        for ids, out in zip(encoded, outputs):
            for o in out.outputs:
                r = list(o.token_ids)
                lp = [next(iter(d.values())).logprob for d in (o.logprobs or [])] or [0.0] * len(r)
                # A response stopped by a stop token must end with it, so that the mask includes the
                # EOS and the policy learns to stop; append it where the engine left it out (its
                # log-prob is then unknown and recorded as 0: only the agreement check reads it).
                if o.finish_reason == "stop" and isinstance(o.stop_reason, int) and (not r or r[-1] != o.stop_reason):
                    r.append(o.stop_reason)
                    lp.append(0.0)
                rows.append(ids)
                resp.append(r)
                lps.append(lp)
        prompt_ids, prompt_mask = left_pad(rows, self.pad_id)
        width = max(1, max(len(r) for r in resp))
        response_ids = torch.full((len(resp), width), self.pad_id, dtype=torch.long)
        gen_lp = torch.zeros((len(resp), width))
        for i, (r, lp) in enumerate(zip(resp, lps)):
            response_ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
            gen_lp[i, :len(lp)] = torch.tensor(lp)
        return self._assemble([(prompt_ids, prompt_mask, response_ids, gen_lp)])


def build_rollout(cfg, tokenizer, model, model_path: str):
    """The configured rollout engine for ``model`` (whose weights live at ``model_path`` for vLLM)."""
    formatter = PromptFormatter(tokenizer, cfg.model.chat_template, cfg.model.system_prompt)
    eos = eos_token_ids(tokenizer, model)
    if cfg.rollout.backend == "vllm":
        return VLLMRollout(
            tokenizer, formatter, eos, cfg.rollout.batch_size, model_path, cfg.model.dtype,
            cfg.rollout.vllm_gpu_memory_utilization, cfg.rollout.vllm_max_model_len, cfg.seed,
            cfg.model.trust_remote_code,
        )
    return HFRollout(tokenizer, formatter, eos, cfg.rollout.batch_size, HF_BACKENDS[cfg.rollout.backend])

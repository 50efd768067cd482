"""The transformers backends ``hf``, ``hf-static`` and ``hf-continuous`` (:class:`HFRollout`).

``model.generate`` (KV cache, batched, left-padded prompts); the
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
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from lad_ref.llm.backends import BackendInputs, Rollout, register_backend
from lad_ref.llm.rollout import PromptFormatter, RolloutBatch, left_pad
from lad_ref.llm.seeding import sub_seed

# rollout.backend -> HFRollout's KV-cache mode (see the module docstring).
HF_BACKENDS = {"hf": "dynamic", "hf-static": "static", "hf-continuous": "continuous"}


class HFRollout(Rollout):
    """Batched sampling with ``model.generate`` (KV cache), G samples per prompt, seeded per call.

    ``cache``: ``dynamic`` (plain generate), ``static`` (preallocated cache, compiled decoding on
    CUDA) or ``continuous`` (``generate_batch``, paged cache); see the module docstring.
    """

    def __init__(self, tokenizer, formatter: PromptFormatter, eos_ids: list[int], batch_size: int,
                 cache: str = "dynamic"):
        if cache not in HF_BACKENDS.values():
            raise ValueError(f"HFRollout cache={cache!r} is not known; valid choices are "
                             f"{', '.join(HF_BACKENDS.values())}.")
        super().__init__(tokenizer, formatter, eos_ids, batch_size)
        self.cache = cache

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
        tokens = [list(r.generated_tokens) for r in results]
        return self._assemble([self._pack(rows, tokens, [r.logprobs[:len(t)] for r, t in zip(results, tokens)])])


def _factory(cache: str):
    def build(inputs: BackendInputs) -> HFRollout:
        return HFRollout(inputs.tokenizer, inputs.formatter, inputs.eos_ids, inputs.cfg.rollout.batch_size, cache)

    return build


for _name, _cache in HF_BACKENDS.items():
    register_backend(_name)(_factory(_cache))

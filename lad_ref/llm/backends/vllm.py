"""The ``vllm`` backend (:class:`VLLMRollout`; settings ``rollout.vllm``, :class:`VLLMSettings`).

a colocated vLLM engine in the training process (TRL's "colocate" mode),
  weights pushed after every optimizer update. Real code, exercised only on GPU machines
  with vLLM installed; tests skip it elsewhere.

vLLM is imported when the engine is built, so this module (and the registration) works without it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from lad_ref.config_io import ConfigError
from lad_ref.llm.backends import BackendInputs, Rollout, register_backend
from lad_ref.llm.rollout import PromptFormatter


@dataclass
class VLLMSettings:
    """The colocated vLLM engine (lad_ref.llm.backends.vllm)."""

    gpu_memory_utilization: float = field(default=0.35, metadata={"help": "GPU memory share of the engine."})
    max_model_len: int | None = field(default=None, metadata={"help": "Context length (null = the model's)."})


def check_settings(s: VLLMSettings) -> None:
    if not 0.0 < s.gpu_memory_utilization <= 1.0:
        raise ConfigError(f"rollout.vllm.gpu_memory_utilization={s.gpu_memory_utilization!r} must be in (0, 1].")
    if s.max_model_len is not None and s.max_model_len <= 0:
        raise ConfigError(f"rollout.vllm.max_model_len={s.max_model_len!r} must be > 0 (or null: the model's).")




class VLLMRollout(Rollout):
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
        return self._assemble([self._pack(rows, resp, lps)])


@register_backend("vllm", settings=VLLMSettings, needs_cuda=True, check_settings=check_settings)
def build(inputs: BackendInputs) -> VLLMRollout:
    cfg, s = inputs.cfg, inputs.settings
    return VLLMRollout(
        inputs.tokenizer, inputs.formatter, inputs.eos_ids, cfg.rollout.batch_size, inputs.model_path,
        cfg.model.dtype, s.gpu_memory_utilization, s.max_model_len, cfg.seed, cfg.model.trust_remote_code,
    )

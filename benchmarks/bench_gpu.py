"""GPU: generation and training tokens/s and peak memory of a randomly initialised ~0.5B-parameter
Qwen2 model in bf16 (HF backend), with LAD(js) and GRPO losses interleaved in the training step.

Runs only where CUDA is available (``python -m benchmarks gpu``); elsewhere the section records
why it was skipped. The model is built from a config (Qwen2.5-0.5B's shape), never downloaded.
The training step is the trainer's: forward with ``logits_to_keep`` over the response,
``token_log_probs`` (chunked float32 log-softmax), the loss from ``lad_ref.losses``, backward,
AdamW. The tests run the same code on a CPU with a tiny shape.
"""

from __future__ import annotations

import time

import torch

from benchmarks.common import interleaved, summarise
from lad_ref.llm.rollout import token_log_probs
from lad_ref.losses import get_loss

# Qwen2.5-0.5B's architecture (494M parameters with tied embeddings), random weights.
QWEN2_0_5B = {
    "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
    "num_key_value_heads": 2, "vocab_size": 151_936, "max_position_embeddings": 32_768,
    "tie_word_embeddings": True, "rope_theta": 1_000_000.0,
}


def build_model(model_kwargs: dict, device: str, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, Qwen2Config

    torch.manual_seed(0)
    cfg = Qwen2Config(**model_kwargs)
    return AutoModelForCausalLM.from_config(cfg, dtype=dtype).to(device)


def count_parameters(model_kwargs: dict) -> int:
    """Parameters of the model, counted on the meta device (no memory is allocated)."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(Qwen2Config(**model_kwargs))
    return sum(p.numel() for p in model.parameters())


def _peak_reset(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def _gib(v: float | None) -> str:
    return f"{v:.1f} GiB" if v is not None else "n/a"


def run(
    model_kwargs: dict | None = None,
    device: str | None = None,
    dtype: torch.dtype = torch.bfloat16,
    gen_batch: int = 64,
    prompt_len: int = 128,
    new_tokens: int = 256,
    train_batch: int = 8,
    seq_len: int = 1024,
    response_len: int = 768,
    repeats: int = 5,
) -> dict:
    if device is None:
        if not torch.cuda.is_available():
            return {"skipped": "no CUDA device on this machine"}
        device = "cuda"
    model_kwargs = model_kwargs or QWEN2_0_5B
    model = build_model(model_kwargs, device, dtype)
    n_params = sum(p.numel() for p in model.parameters())
    vocab = model_kwargs["vocab_size"]
    g = torch.Generator().manual_seed(0)

    # ---- generation: sampled, no early stop, KV cache ----
    prompts = torch.randint(0, vocab, (gen_batch, prompt_len), generator=g).to(device)
    model.eval()
    gen_times = []
    _peak_reset(device)
    for i in range(repeats + 1):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=True,
                                 max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=0,
                                 eos_token_id=None, use_cache=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i > 0:  # the first call warms up kernels and the allocator
            gen_times.append(time.perf_counter() - t0)
    assert out.shape == (gen_batch, prompt_len + new_tokens)
    gen_peak = _peak_gib(device)

    # ---- training: forward over prompt + response, log-probs of the response, loss, backward, AdamW ----
    model.train()
    if device.startswith("cuda"):  # as the trainer does on GPU (model.gradient_checkpointing)
        model.gradient_checkpointing_enable()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    ids = torch.randint(0, vocab, (train_batch, seq_len), generator=g).to(device)
    response = ids[:, -response_len:]
    with torch.no_grad():
        logits = model(input_ids=ids, logits_to_keep=response_len + 1).logits[:, :-1]
        old = token_log_probs(logits, response)["log_prob"]
        del logits
    adv = torch.randn(train_batch, 1, generator=g).to(device)
    mask = torch.ones(train_batch, response_len, dtype=torch.bool, device=device)

    def step(name: str, **kw):
        def fn():
            opt.zero_grad(set_to_none=True)
            logits = model(input_ids=ids, logits_to_keep=response_len + 1).logits[:, :-1]
            lp = token_log_probs(logits, response)["log_prob"]
            loss, _ = get_loss(name)(old, lp, adv, mask, "token-mean", **kw)
            loss.backward()
            opt.step()

        return fn

    _peak_reset(device)
    train = interleaved({"grpo": step("grpo"), "lad(js)": step("lad", divergence="js")}, repeats=repeats, warmup=1)
    train_peak = _peak_gib(device)

    gen = summarise(gen_times)
    tokens_per_step = train_batch * seq_len
    res = {
        "device": torch.cuda.get_device_name(0) if device.startswith("cuda") else device,
        "dtype": str(dtype).replace("torch.", ""),
        "parameters": n_params,
        "generation": {"batch": gen_batch, "prompt_len": prompt_len, "new_tokens": new_tokens, "time": gen,
                       "tokens_per_s": gen_batch * new_tokens / gen["median_s"], "peak_gib": gen_peak},
        "training": {"batch": train_batch, "seq_len": seq_len, "response_len": response_len, "time": train,
                     "tokens_per_s": {k: tokens_per_step / v["median_s"] for k, v in train.items()},
                     "lad_over_grpo": train["lad(js)"]["median_s"] / train["grpo"]["median_s"],
                     "peak_gib": train_peak, "gradient_checkpointing": device.startswith("cuda")},
    }
    tr = res["training"]
    res["markdown"] = "\n".join([
        f"| {res['device']}, Qwen2 {n_params / 1e6:.0f}M random init, {res['dtype']} | tokens/s | peak memory |",
        "|---|---|---|",
        f"| generation, {gen_batch} x ({prompt_len} prompt + {new_tokens} new) | "
        f"{res['generation']['tokens_per_s']:,.0f} | {_gib(gen_peak)} |",
        f"| training step GRPO, {train_batch} x {seq_len} ({response_len} response) | "
        f"{tr['tokens_per_s']['grpo']:,.0f} | {_gib(train_peak)} |",
        f"| training step LAD(js), same | {tr['tokens_per_s']['lad(js)']:,.0f} | |",
        f"\nLAD / GRPO training step time on the GPU: {tr['lad_over_grpo']:.2f}.",
    ])
    return res

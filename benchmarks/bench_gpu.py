"""GPU: generation and training tokens/s, peak memory and an MFU estimate of a randomly initialised
~0.5B-parameter Qwen2 model in bf16, through the compact trainer's own code.

* generation: ``lad_ref.llm.rollout.HFRollout`` with each of transformers' generation paths
  (``hf`` plain generate, ``hf-static`` static KV cache + torch.compile on CUDA, ``hf-continuous``
  continuous batching): tokens/s, the first call's time (compilation, CUDA-graph capture) and
  whether each path gives the same samples as ``hf`` for the same seed;
* training: the trainer's step (forward with ``logits_to_keep`` over the response,
  ``token_log_probs`` = chunked float32 log-softmax, the loss from ``lad_ref.losses``, backward,
  AdamW), GRPO and LAD(js) interleaved, full fine-tuning with gradient checkpointing on CUDA, then
  the same with LoRA adapters (``lad_ref.llm.model.add_lora``, peft).

Runs only where CUDA is available (``python -m benchmarks gpu``; ``python -m benchmarks.gpu_check``
adds a bf16 toy training run); elsewhere the section records why it was skipped. The model is
built from a config (Qwen2.5-0.5B's shape), never downloaded; its tokenizer is a synthetic
word-level one over the same vocabulary (ids only matter here). The tests run the same code on a
CPU with a tiny shape.

MFU (model FLOPs utilisation) = model FLOPs of the step / step time / the device's peak dense
bf16 FLOP/s (:data:`PEAK_BF16_FLOPS`, from the vendors' data sheets; an unknown device gets no
MFU). Model FLOPs follow PaLM (Chowdhury et al. 2022, app. B): per trained token 6 x (non-embedding
parameters) + 6 x (vocabulary x hidden) for the tokens whose logits are computed + 12 x layers x
hidden x sequence length for attention; the re-computed forward of gradient checkpointing is not
counted (that is what makes it *model* FLOPs). For generation: 2 x non-embedding parameters + 2 x
vocabulary x hidden per generated token (the attention term is left out; decoding is bound by
memory bandwidth, so its MFU is low by nature).
"""

from __future__ import annotations

import time

import torch

from benchmarks.common import interleaved
from lad_ref.llm.rollout import HF_BACKENDS, HFRollout, PromptFormatter, token_log_probs
from lad_ref.losses import LadHparams, get_loss

# Qwen2.5-0.5B's architecture (494M parameters with tied embeddings), random weights.
QWEN2_0_5B = {
    "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
    "num_key_value_heads": 2, "vocab_size": 151_936, "max_position_embeddings": 32_768,
    "tie_word_embeddings": True, "rope_theta": 1_000_000.0,
}

# Peak dense (no sparsity) bf16 tensor-core FLOP/s from NVIDIA's data sheets, matched against
# torch.cuda.get_device_name() in this order (the first entry whose words all occur wins).
PEAK_BF16_FLOPS: list[tuple[tuple[str, ...], float]] = [
    (("H100", "PCIe"), 756e12),
    (("H100", "NVL"), 835e12),
    (("GH200",), 989e12),
    (("H200",), 989e12),
    (("H100",), 989e12),       # H100 SXM ("NVIDIA H100 80GB HBM3")
    (("A100",), 312e12),
]


def peak_bf16_flops(device_name: str) -> float | None:
    """The device's peak dense bf16 FLOP/s, or None where the name is not in the table."""
    for words, flops in PEAK_BF16_FLOPS:
        if all(w.lower() in device_name.lower() for w in words):
            return flops
    return None


def build_model(model_kwargs: dict, device: str, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, Qwen2Config

    torch.manual_seed(0)
    cfg = Qwen2Config(**model_kwargs)
    return AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation="sdpa").to(device)


def count_parameters(model_kwargs: dict) -> int:
    """Parameters of the model, counted on the meta device (no memory is allocated)."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(Qwen2Config(**model_kwargs))
    return sum(p.numel() for p in model.parameters())


def synthetic_tokenizer(vocab_size: int):
    """A word-level fast tokenizer over ``vocab_size`` tokens "t0".."t{V-1}" (t0 = pad, t1 = EOS).

    The random model needs ids, not text; this lets the trainer's rollout code (prompt
    formatting, decoding) run unchanged on a model whose vocabulary matches Qwen2's size.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(vocab={f"t{i}": i for i in range(vocab_size)}, unk_token="t2"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins tokens with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="t0", eos_token="t1", unk_token="t2",
                                   padding_side="left")


def model_flops_per_token(model_kwargs: dict, n_params: int, seq_len: int = 0, train: bool = True) -> dict:
    """PaLM-style model FLOPs (see the module docstring), split so that callers can weight the
    LM-head part by the share of tokens whose logits are computed: {"body": per token, "head": per token
    with logits}."""
    h, v, n_layers = model_kwargs["hidden_size"], model_kwargs["vocab_size"], model_kwargs["num_hidden_layers"]
    embedding = v * h  # tied with the LM head: the lookup costs nothing, the head matmul is counted in "head"
    mult = 6 if train else 2
    body = mult * (n_params - embedding) + (12 * n_layers * h * seq_len if train else 0)
    return {"body": body, "head": mult * v * h}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak_reset(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def _gib(v: float | None) -> str:
    return f"{v:.1f} GiB" if v is not None else "n/a"


def _pct(v: float | None) -> str:
    return f"{100 * v:.1f}%" if v is not None else "unknown"


def generation(model, tokenizer, paths: list[str], device: str, gen_batch: int, prompt_len: int,
               new_tokens: int, repeats: int, seed: int = 0, deadline: float | None = None) -> dict:
    """Time ``HFRollout.generate`` with each cache mode on the same prompts and seed.

    Per path: first_call_s (includes torch.compile / CUDA-graph capture where the path has them),
    the steady-state time over ``repeats`` interleaved calls, generated tokens/s, peak memory, and
    ``same_samples_as_hf``: the share of rows whose sampled tokens equal the ``hf`` path's for the
    same seed (1.0 = identical samples). Paths that fail record their error and are left out of the
    comparison; a path not started before ``deadline`` (a ``time.perf_counter()`` value) is skipped
    and says so, so that a slow compilation cannot push the whole check past its time limit.
    """
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, tokenizer.vocab_size, (gen_batch, prompt_len), generator=g)
    prompts = [" ".join(f"t{i}" for i in row) for row in ids.tolist()]
    eos = [tokenizer.eos_token_id]
    rollouts = {p: HFRollout(tokenizer, PromptFormatter(tokenizer, False, None), eos, gen_batch, HF_BACKENDS[p])
                for p in paths}
    out, first, fns = {}, {}, {}
    for p, ro in rollouts.items():
        def call(ro=ro):
            return ro.generate(model, prompts, 1, max_new_tokens=new_tokens, temperature=1.0, seed=seed)

        if deadline is not None and time.perf_counter() > deadline:
            out[p] = {"skipped": "not started: the check's time budget was spent"}
            continue
        try:
            _peak_reset(device)
            t0 = time.perf_counter()
            batch = call()
            _sync(device)
            out[p] = {"first_call_s": time.perf_counter() - t0, "peak_gib": _peak_gib(device),
                      "tokens": int(batch.response_mask.sum())}
            first[p] = batch
            fns[p] = call
        except Exception as e:  # noqa: BLE001 - one path failing must not hide the others' figures
            out[p] = {"error": f"{type(e).__name__}: {e}"}
    if fns:
        times = interleaved(fns, repeats=repeats, warmup=0)
        for p, t in times.items():
            out[p]["time"] = t
            out[p]["tokens_per_s"] = out[p]["tokens"] / t["median_s"]
    ref = first.get("hf")
    for p, batch in first.items():
        if ref is not None:
            w = min(ref.response_ids.shape[1], batch.response_ids.shape[1])
            same = (ref.response_ids[:, :w] == batch.response_ids[:, :w]).all(-1) & (
                ref.response_mask.sum(-1) == batch.response_mask.sum(-1))
            out[p]["same_samples_as_hf"] = same.float().mean().item()
    ok = {p: v for p, v in out.items() if "tokens_per_s" in v}
    res = {"batch": gen_batch, "prompt_len": prompt_len, "new_tokens": new_tokens, "paths": out}
    if ok:
        fastest = max(ok, key=lambda p: ok[p]["tokens_per_s"])
        eligible = [p for p in ok if ok[p].get("same_samples_as_hf") == 1.0]
        res["fastest"] = fastest
        res["fastest_same_samples"] = max(eligible, key=lambda p: ok[p]["tokens_per_s"]) if eligible else None
        if "hf" in ok:
            res["speedup_over_hf"] = {p: ok[p]["tokens_per_s"] / ok["hf"]["tokens_per_s"] for p in ok}
    return res


def training(model, vocab: int, device: str, train_batch: int, seq_len: int, response_len: int, repeats: int,
             lr: float = 1e-6) -> dict:
    """The trainer's step, GRPO and LAD(js) interleaved, on whatever parameters of ``model`` train."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab, (train_batch, seq_len), generator=g).to(device)
    response = ids[:, -response_len:]
    with torch.no_grad():
        logits = model(input_ids=ids, logits_to_keep=response_len + 1).logits[:, :-1]
        old = token_log_probs(logits, response)["log_prob"]
        del logits
    adv = torch.randn(train_batch, 1, generator=g).to(device)
    mask = torch.ones(train_batch, response_len, dtype=torch.bool, device=device)
    losses: dict[str, list[float]] = {"grpo": [], "lad(js)": []}

    def step(name: str, label: str, hp=None):
        def fn():
            opt.zero_grad(set_to_none=True)
            logits = model(input_ids=ids, logits_to_keep=response_len + 1).logits[:, :-1]
            lp = token_log_probs(logits, response)["log_prob"]
            loss, _ = get_loss(name)(old, lp, adv, mask, "token-mean", hp=hp)
            loss.backward()
            opt.step()
            losses[label].append(loss.item())

        return fn

    _peak_reset(device)
    lad_js = LadHparams(divergence="js")
    times = interleaved({"grpo": step("grpo", "grpo"), "lad(js)": step("lad", "lad(js)", lad_js)},
                        repeats=repeats, warmup=1)
    bad = {k: v for k, v in losses.items() if not all(map(torch.isfinite, torch.tensor(v)))}
    if bad:
        raise FloatingPointError(f"non-finite training loss: {bad}")
    tokens = train_batch * seq_len
    return {"batch": train_batch, "seq_len": seq_len, "response_len": response_len, "time": times,
            "trainable_parameters": sum(p.numel() for p in params),
            "tokens_per_s": {k: tokens / v["median_s"] for k, v in times.items()},
            "lad_over_grpo": times["lad(js)"]["median_s"] / times["grpo"]["median_s"],
            "peak_gib": _peak_gib(device)}


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
    gen_repeats: int = 2,
    gen_paths: tuple[str, ...] = ("hf", "hf-static", "hf-continuous"),
    lora: bool = True,
    gen_deadline: float | None = None,
) -> dict:
    """Every figure of the section; ``device=None`` = CUDA if present, else a "skipped" record.

    ``gen_deadline``: a ``time.perf_counter()`` value after which no further generation path starts.
    """
    if device is None:
        if not torch.cuda.is_available():
            return {"skipped": "no CUDA device on this machine"}
        device = "cuda"
    model_kwargs = model_kwargs or QWEN2_0_5B
    cuda = device.startswith("cuda")
    name = torch.cuda.get_device_name(0) if cuda else device
    peak = peak_bf16_flops(name) if cuda and dtype == torch.bfloat16 else None
    model = build_model(model_kwargs, device, dtype)
    n_params = sum(p.numel() for p in model.parameters())
    vocab = model_kwargs["vocab_size"]
    tokenizer = synthetic_tokenizer(vocab)

    # ---- generation: each HF path, sampled, KV cache ----
    model.eval()
    gen = generation(model, tokenizer, list(gen_paths), device, gen_batch, prompt_len, new_tokens, gen_repeats,
                     deadline=gen_deadline)
    gen_flops = model_flops_per_token(model_kwargs, n_params, train=False)
    for v in gen["paths"].values():
        if "tokens_per_s" in v:
            v["mfu"] = (gen_flops["body"] + gen_flops["head"]) * v["tokens_per_s"] / peak if peak else None

    # ---- training: full fine-tuning (gradient checkpointing on CUDA, as the GPU configs set it) ----
    if cuda:  # the call load_causal_lm makes for model.gradient_checkpointing
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    full = training(model, vocab, device, train_batch, seq_len, response_len, repeats)
    full["gradient_checkpointing"] = cuda
    tr_flops = model_flops_per_token(model_kwargs, n_params, seq_len=seq_len)
    step_flops = train_batch * (seq_len * tr_flops["body"] + (response_len + 1) * tr_flops["head"])
    full["model_flops_per_step"] = step_flops
    full["mfu"] = {k: step_flops / v["median_s"] / peak if peak else None for k, v in full["time"].items()}

    # ---- training: LoRA adapters on the frozen base (peft), the trainer's add_lora ----
    lora_res = None
    if lora:
        from lad_ref.llm.config import LoraSettings, ModelConfig
        from lad_ref.llm.model import add_lora

        model = add_lora(model, ModelConfig(gradient_checkpointing=cuda, lora=LoraSettings(enabled=True)))
        lora_res = training(model, vocab, device, train_batch, seq_len, response_len, repeats, lr=1e-5)
        # The frozen base still runs forward and backward-through-activations (~2/3 of full FT's
        # FLOPs plus the adapters'); MFU is quoted on full FT's model FLOPs, the usual convention.
        lora_res["mfu_of_full_ft_flops"] = {k: step_flops / v["median_s"] / peak if peak else None
                                            for k, v in lora_res["time"].items()}

    res = {
        "device": name, "dtype": str(dtype).replace("torch.", ""), "parameters": n_params,
        "peak_bf16_flops": peak, "generation": gen, "training": full, "lora": lora_res,
    }
    res["markdown"] = markdown(res)
    return res


def markdown(res: dict) -> str:
    gen, tr, lo = res["generation"], res["training"], res["lora"]
    lines = [
        f"{res['device']}, Qwen2 {res['parameters'] / 1e6:.3g}M random init, {res['dtype']}; "
        f"peak bf16 {res['peak_bf16_flops'] / 1e12:.0f} TFLOP/s" if res["peak_bf16_flops"] else
        f"{res['device']}, Qwen2 {res['parameters'] / 1e6:.3g}M random init, {res['dtype']}; peak bf16 unknown",
        "",
        f"| generation, {gen['batch']} x ({gen['prompt_len']} prompt + {gen['new_tokens']} new) | tokens/s "
        "| vs hf | first call | same samples as hf | MFU | peak memory |",
        "|---|---|---|---|---|---|---|",
    ]
    for p, v in gen["paths"].items():
        if "error" in v or "skipped" in v:
            why = f"failed: {v['error'][:120]}" if "error" in v else f"skipped: {v['skipped']}"
            lines.append(f"| `{p}` | {why} | | | | | |")
            continue
        same = v.get("same_samples_as_hf")
        lines.append(
            f"| `{p}` | {v['tokens_per_s']:,.0f} | {gen.get('speedup_over_hf', {}).get(p, float('nan')):.2f}x "
            f"| {v['first_call_s']:.1f} s | {'n/a' if same is None else f'{100 * same:.0f}% of rows'} "
            f"| {_pct(v.get('mfu'))} | {_gib(v['peak_gib'])} |")
    if gen.get("fastest"):
        lines.append(f"\nFastest generation path: `{gen['fastest']}`; fastest with the same samples as `hf`: "
                     f"`{gen['fastest_same_samples']}`.")
    lines += [
        "",
        f"| training step, {tr['batch']} x {tr['seq_len']} ({tr['response_len']} response) | tokens/s | MFU "
        "| peak memory |",
        "|---|---|---|---|",
    ]
    ck = ", gradient checkpointing" if tr["gradient_checkpointing"] else ""
    for k in ("grpo", "lad(js)"):
        lines.append(f"| full fine-tuning{ck}, {k.upper() if k == 'grpo' else 'LAD(js)'} | "
                     f"{tr['tokens_per_s'][k]:,.0f} | {_pct(tr['mfu'][k])} | {_gib(tr['peak_gib'])} |")
    if lo:
        for k in ("grpo", "lad(js)"):
            lines.append(f"| LoRA r=16 ({lo['trainable_parameters'] / 1e6:.1f}M trainable), "
                         f"{k.upper() if k == 'grpo' else 'LAD(js)'} | {lo['tokens_per_s'][k]:,.0f} "
                         f"| {_pct(lo['mfu_of_full_ft_flops'][k])} (of full-FT FLOPs) | {_gib(lo['peak_gib'])} |")
    lines.append(f"\nLAD / GRPO training step time: {tr['lad_over_grpo']:.2f} (full fine-tuning)"
                 + (f", {lo['lad_over_grpo']:.2f} (LoRA)." if lo else "."))
    return "\n".join(lines)

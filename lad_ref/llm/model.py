"""Policy models: the ``tiny`` CPU preset, loading any causal LM, bf16 / gradient checkpointing / LoRA.

Every policy, the tiny one included, is loaded through ``AutoModelForCausalLM.from_pretrained``
and ``AutoTokenizer.from_pretrained`` on a folder: the tiny preset is first *built* from a
config (random weights, character-level tokenizer) and saved with ``save_pretrained``, so the
code path that trains it is the one that trains Qwen2.5-7B.

The tiny preset
---------------
A Qwen2 (or Llama) decoder with ~0.8M parameters: hidden 128, 4 layers, 4 query heads /
2 key-value heads, MLP 384, tied embeddings, no dropout (so train-mode log-probs equal
eval-mode ones and pi_old can be recomputed exactly). Its tokenizer maps every printable
ASCII character to one token (a ``tokenizers`` byte-level BPE without merges), plus
``<pad>``, ``<eos>`` and ``<unk>``: 100 tokens. It has no chat template; prompts are fed raw.
"""

from __future__ import annotations

import re
import string
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from lad_ref.llm.config import ModelConfig, TinyModelConfig

TINY = "tiny"
PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
# Printable ASCII without the three exotic whitespace characters; "\n" and " " are kept.
TINY_CHARS: tuple[str, ...] = tuple(c for c in string.printable if c not in "\r\x0b\x0c")


# --------------------------------------------------------------------------------------
# the tiny preset
# --------------------------------------------------------------------------------------


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable-character table (byte-level BPE writes " " as "Ġ", "\\n" as "Ċ")."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = keep[:], 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(keep, chars)}


def build_char_tokenizer():
    """A character-level fast tokenizer (one token per ASCII character) built with ``tokenizers``.

    It is a byte-level BPE with *no merges*: every character stays its own token. Byte-level
    rather than a plain word-level vocabulary because transformers 5's ``AutoTokenizer`` loads a
    qwen2-type folder as ``Qwen2Tokenizer``, which rebuilds a byte-level pipeline around the
    saved vocabulary; with byte-level symbols ("Ġ" for a space) that pipeline tokenizes exactly
    like this one, so the folder loads the same way through ``AutoTokenizer`` (our loader, TRL,
    any user) as a real Qwen2 checkpoint does.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_char = _bytes_to_unicode()
    symbols = [byte_char[ord(c)] for c in TINY_CHARS]
    vocab = {tok: i for i, tok in enumerate((PAD, EOS, UNK, *symbols))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK, padding_side="left"
    )


def build_tiny_model(cfg: TinyModelConfig, vocab_size: int, pad_id: int, eos_id: int, seed: int):
    """A randomly initialised ~1M-parameter Qwen2 or Llama causal LM (no dropout anywhere)."""
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    common = dict(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True,
        attention_dropout=0.0,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        bos_token_id=None,
    )
    if cfg.architecture == "qwen2":
        config = Qwen2Config(**common)
    elif cfg.architecture == "llama":
        config = LlamaConfig(**common)
    else:  # validated in config.py; kept for direct callers
        raise ValueError(f"unknown tiny architecture {cfg.architecture!r}; valid choices are qwen2, llama.")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return AutoModelForCausalLM.from_config(config)


def materialise_tiny(cfg: TinyModelConfig, folder: Path, seed: int) -> Path:
    """Build the tiny model + tokenizer and ``save_pretrained`` them into ``folder`` (safetensors)."""
    tokenizer = build_char_tokenizer()
    model = build_tiny_model(cfg, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id, seed)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    (folder / "tiny_preset.txt").write_text(f"built by lad_ref.llm.model from {asdict(cfg)} with seed {seed}\n")
    return folder


# --------------------------------------------------------------------------------------
# loading any causal LM
# --------------------------------------------------------------------------------------

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` = bfloat16 on a GPU that supports it, float32 otherwise (the CPU tests need fp32)."""
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return _DTYPES[name]


def quiet_transformers() -> None:
    """Hide transformers' per-load progress bars ("Loading weights"), which would drown the run's own bars."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def load_tokenizer(path: str | Path, trust_remote_code: bool = False):
    """The tokenizer of a checkpoint, left-padded (generation appends on the right) with a pad token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:  # e.g. Llama: reuse EOS for padding; padded positions are masked anyway
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def check_finite_weights(model, path) -> None:
    """Refuse weights holding NaN or inf (a damaged file) at load time, naming the tensor and the folder."""
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            from lad_ref.config_io import ConfigError

            raise ConfigError(f"the weights in {str(path)!r} are damaged: {name} holds NaN or inf values; "
                              "restore that folder (or use an earlier checkpoint).")


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def check_model_source(name: str) -> None:
    """Refuse a ``model.name_or_path`` that cannot load, before any run folder exists (ConfigError).

    Valid: ``tiny``; a folder holding a model (``config.json``); or a hub id (``org/name``), which
    with ``HF_HUB_OFFLINE=1`` must already be in the local cache.
    """
    import os

    from lad_ref.config_io import ConfigError

    if name == TINY:
        return
    if not name or not name.strip():
        raise ConfigError("model.name_or_path is empty; pass 'tiny', a model folder, or a hub id such as Qwen/Qwen2.5-0.5B.")
    p = Path(name).expanduser()
    if p.exists():
        if not p.is_dir():
            raise ConfigError(f"model.name_or_path {name!r} is a file; pass the model's folder (the one holding config.json).")
        if not (p / "config.json").is_file():
            raise ConfigError(f"model.name_or_path {name!r} is a folder but not a model: it has no config.json.")
        return
    if not _HUB_ID.match(name) or name.startswith((".", "~")):
        raise ConfigError(f"model.name_or_path {name!r} does not exist; pass 'tiny', an existing model folder, "
                          "or a hub id such as Qwen/Qwen2.5-0.5B.")
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(name, "config.json"), str):
            raise ConfigError(f"model.name_or_path {name!r} is neither a local folder nor a hub model in the local cache, "
                              "and HF_HUB_OFFLINE is set; pass an existing model folder.")


def model_context_length(name: str, tiny_max_positions: int) -> int | None:
    """The longest prompt + response the model can take (max_position_embeddings), or None if unknown."""
    if name == TINY:
        return tiny_max_positions
    p = Path(name).expanduser() / "config.json"
    if not p.is_file():
        return None
    import json

    try:
        return json.loads(p.read_text()).get("max_position_embeddings")
    except (OSError, ValueError):
        return None


def tiny_unknown_chars(text: str) -> list[str]:
    """The characters of ``text`` the tiny preset's tokenizer cannot represent (it would drop them)."""
    return sorted(set(text) - set(TINY_CHARS))


def load_causal_lm(path: str | Path, cfg: ModelConfig, device: torch.device, *, trainable: bool = True):
    """``AutoModelForCausalLM.from_pretrained(path)`` in the configured dtype, on ``device``.

    ``trainable``: apply gradient checkpointing and (if enabled) LoRA; a frozen reference
    model skips both.
    """
    from transformers import AutoModelForCausalLM

    kwargs = dict(dtype=resolve_dtype(cfg.dtype, device), trust_remote_code=cfg.trust_remote_code)
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs).to(device)
    check_finite_weights(model, path)
    if not trainable:
        model.eval()
        model.requires_grad_(False)
        return model
    if cfg.gradient_checkpointing:
        # use_reentrant=False works with frozen inputs (LoRA) and with torch.compile.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False  # the cache is only wanted in generate(), which re-enables it
    if cfg.lora.enabled:
        model = add_lora(model, cfg)
    model.train()
    return model


def add_lora(model, cfg: ModelConfig):
    """Wrap ``model`` with peft LoRA adapters: only the adapters train (for models too big for full fine-tuning).

    peft keeps the adapters in float32 (``autocast_adapter_dtype``) while the frozen base stays in
    bf16. The reference policy of a LoRA run is the base model with the adapters disabled, so
    no second copy of the weights is needed.
    """
    from peft import LoraConfig, get_peft_model

    lcfg = LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=list(cfg.lora.target_modules),
        task_type="CAUSAL_LM",
    )
    if cfg.gradient_checkpointing:
        model.enable_input_require_grads()  # checkpointed blocks need an input that requires grad
    return get_peft_model(model, lcfg)


def is_peft(model) -> bool:
    return hasattr(model, "peft_config")


def count_parameters(model, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# --------------------------------------------------------------------------------------
# FlowRL's log Z head
# --------------------------------------------------------------------------------------


class LogZHead(nn.Module):
    """FlowRL's learned log-partition log Z(x) (docs/research/baselines.md §1.7, verl-recipe ``ProjZModule``).

        log Z(x) = MLP( mean over prompt tokens of the last-layer hidden states )

    (L-1) x [Linear(h, h) -> GELU -> LayerNorm] -> Linear(h, 1). The recipe's Dropout(0.1) is
    left out so that the CPU run stays deterministic and train/eval forward passes agree. As in
    the recipe the hidden states are not detached: the trajectory-balance gradient also reaches
    the trunk. The head lives in float32 whatever the policy dtype.
    """

    def __init__(self, hidden_size: int, num_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(num_layers - 1):
            layers += [nn.Linear(hidden_size, hidden_size), nn.GELU(), nn.LayerNorm(hidden_size)]
        layers.append(nn.Linear(hidden_size, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, hidden: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
        """hidden (B, L, h), prompt_mask (B, L) -> log Z (B,)."""
        m = prompt_mask.to(torch.float32).unsqueeze(-1)
        pooled = (hidden.float() * m).sum(1) / m.sum(1).clamp(min=1.0)
        return self.net(pooled).squeeze(-1)

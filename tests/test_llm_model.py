"""The tiny preset: character tokenizer, ~1M-parameter Qwen2/Llama, save_pretrained round trip, LoRA, log Z head."""

from __future__ import annotations

import pytest
import torch

from lad_ref.llm.config import LoraSettings, ModelConfig, TinyModelConfig
from lad_ref.llm.model import (
    LogZHead,
    build_char_tokenizer,
    count_parameters,
    load_causal_lm,
    load_tokenizer,
    materialise_tiny,
)


def test_char_tokenizer_round_trip():
    tok = build_char_tokenizer()
    text = "17!58= 9+6+2\n\\boxed{x}"
    ids = tok(text)["input_ids"]
    assert len(ids) == len(text)  # one token per character
    assert tok.decode(ids) == text
    assert tok.decode(ids + [tok.eos_token_id, tok.pad_token_id], skip_special_tokens=True) == text
    assert len(tok) == 100 and tok.pad_token_id != tok.eos_token_id


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_tiny_preset_loads_through_from_pretrained(tmp_path, arch):
    cfg = TinyModelConfig(architecture=arch)
    folder = materialise_tiny(cfg, tmp_path / arch, seed=0)
    assert (folder / "model.safetensors").exists() and (folder / "tokenizer.json").exists()
    model = load_causal_lm(folder, ModelConfig(tiny=cfg), torch.device("cpu"))
    tok = load_tokenizer(folder)
    assert model.config.model_type == arch
    assert 0.5e6 < count_parameters(model) < 1.5e6  # "about 1M parameters"
    assert all(getattr(model.config, k, 0.0) in (0.0, None) for k in ("attention_dropout", "hidden_dropout"))
    text = "a b  c\n12!34="
    assert tok.decode(tok(text)["input_ids"]) == text  # the character tokenizer survives the round trip
    assert tok(text)["input_ids"] == build_char_tokenizer()(text)["input_ids"]  # AutoTokenizer = the built one
    ids = torch.tensor([tok("12!34=")["input_ids"]])
    again = load_causal_lm(folder, ModelConfig(tiny=cfg), torch.device("cpu"))
    with torch.no_grad():
        assert torch.equal(model(ids).logits, again(ids).logits)
    # the same seed builds the same weights
    other = materialise_tiny(cfg, tmp_path / f"{arch}2", seed=0)
    assert (other / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()


def test_lora_trains_only_adapters(tmp_path):
    folder = materialise_tiny(TinyModelConfig(), tmp_path / "m", seed=0)
    cfg = ModelConfig(lora=LoraSettings(enabled=True, r=4, alpha=8), gradient_checkpointing=True)
    model = load_causal_lm(folder, cfg, torch.device("cpu"))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert count_parameters(model, trainable_only=True) < 0.2 * count_parameters(model)
    ids = torch.tensor([[5, 6, 7, 8]])
    model(input_ids=ids, labels=ids).loss.backward()  # gradient checkpointing + LoRA backprop works
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    with model.disable_adapter(), torch.no_grad():  # the LoRA run's reference policy
        model(input_ids=ids)


def test_logz_head_shapes_and_masking():
    head = LogZHead(16, num_layers=3)
    h = torch.randn(4, 5, 16)
    mask = torch.tensor([[0, 0, 1, 1, 1]] * 4)
    out = head(h, mask)
    assert out.shape == (4,)
    h2 = h.clone()
    h2[:, :2] = 100.0  # padded positions do not matter
    assert torch.allclose(head(h2, mask), out)

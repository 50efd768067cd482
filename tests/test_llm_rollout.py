"""Rollouts: pi_old recorded at generation equals the trainer's recomputation; masks; seeding; vLLM (GPU only)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from lad_ref.llm.config import ModelConfig, TinyModelConfig
from lad_ref.llm.model import load_causal_lm, load_tokenizer, materialise_tiny
from lad_ref.llm.rollout import (
    HFRollout,
    PromptFormatter,
    response_mask_from_ids,
    sequence_log_probs,
    token_log_probs,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = materialise_tiny(TinyModelConfig(), tmp_path_factory.mktemp("tiny"), seed=0)
    model = load_causal_lm(folder, ModelConfig(), torch.device("cpu"))
    tok = load_tokenizer(folder)
    rollout = HFRollout(tok, PromptFormatter(tok, None, None), [tok.eos_token_id], batch_size=64)
    return model, tok, rollout


PROMPTS = ["5!1=", "17!58=", "23!19=", "Q: what is 2+2? A:"]  # different lengths -> left padding


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_generation_log_probs_match_recomputation(tiny, temperature):
    model, _, rollout = tiny
    batch = rollout.generate(model, PROMPTS, 8, max_new_tokens=12, temperature=temperature, seed=1)
    assert batch.response_ids.shape[0] == 32
    with torch.no_grad():
        lp = sequence_log_probs(model, batch, temperature)["log_prob"] * batch.response_mask
    diff = (lp - batch.gen_log_probs).abs().max().item()
    assert diff < 1e-4, diff
    # the model is still in train mode (no dropout): the recomputation is the training forward pass
    assert model.training


def test_recomputed_log_probs_carry_gradients_and_entropy(tiny):
    model, _, rollout = tiny
    batch = rollout.generate(model, PROMPTS[:2], 4, max_new_tokens=6, seed=2)
    out = sequence_log_probs(model, batch, 1.0, with_entropy=True, with_hidden=True)
    assert out["log_prob"].requires_grad
    assert out["entropy"].shape == batch.response_ids.shape and bool((out["entropy"] >= 0).all())
    assert out["hidden"].shape[:2] == (8, batch.prompt_ids.shape[1] + batch.response_ids.shape[1])
    # an untrained model over a 100-token vocabulary is close to uniform
    assert out["entropy"].max().item() <= torch.log(torch.tensor(100.0)).item() + 1e-4


@pytest.mark.parametrize("max_elements", [1, 3 * 50, 10**9])  # one row per chunk, a few rows, one chunk
def test_chunked_token_log_probs_equal_one_log_softmax(max_elements):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 3, 50, generator=g, dtype=torch.float64).float().requires_grad_(True)
    ids = torch.randint(0, 50, (7, 3), generator=g)
    out = token_log_probs(logits, ids, 0.7, with_entropy=True, max_elements=max_elements)
    full = torch.log_softmax(logits / 0.7, -1)
    torch.testing.assert_close(out["log_prob"], full.gather(-1, ids.unsqueeze(-1)).squeeze(-1))
    torch.testing.assert_close(out["entropy"], -(full.exp() * full).sum(-1))
    # the chunks keep the graph: gradient of the sum of log-probs = onehot - softmax, per row
    out["log_prob"].sum().backward()
    expected = (torch.nn.functional.one_hot(ids, 50) - full.exp()) / 0.7
    torch.testing.assert_close(logits.grad, expected.detach())


def test_sampling_is_seeded(tiny):
    model, _, rollout = tiny
    a = rollout.generate(model, PROMPTS, 4, max_new_tokens=8, seed=7)
    b = rollout.generate(model, PROMPTS, 4, max_new_tokens=8, seed=7)
    c = rollout.generate(model, PROMPTS, 4, max_new_tokens=8, seed=8)
    assert a.texts == b.texts and torch.equal(a.response_ids, b.response_ids)
    assert a.texts != c.texts
    torch.manual_seed(0)
    x = torch.rand(1)
    rollout.generate(model, PROMPTS, 2, max_new_tokens=4, seed=9)
    torch.manual_seed(0)
    assert torch.equal(torch.rand(1), x)  # generation does not disturb the global RNG stream


def test_response_mask_stops_after_eos():
    ids = torch.tensor([[5, 6, 1, 0, 0], [5, 5, 5, 5, 5], [1, 0, 0, 0, 0]])
    mask, truncated = response_mask_from_ids(ids, [1])
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]
    assert truncated.tolist() == [False, True, False]


def test_batch_rows_are_grouped_by_prompt(tiny):
    model, tok, rollout = tiny
    batch = rollout.generate(model, ["1!2=", "a much longer prompt="], 3, max_new_tokens=4, seed=3)
    first = tok.decode(batch.prompt_ids[0][batch.prompt_mask[0].bool()])
    last = tok.decode(batch.prompt_ids[5][batch.prompt_mask[5].bool()])
    assert first == "1!2=" and last == "a much longer prompt="


@pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None or not torch.cuda.is_available(),
    reason="the vLLM backend needs vLLM and a CUDA GPU",
)
def test_vllm_backend_matches_trainer_log_probs(tmp_path):  # pragma: no cover - GPU machines only
    from lad_ref.llm.rollout import VLLMRollout

    folder = materialise_tiny(TinyModelConfig(), tmp_path / "tiny", seed=0)
    model = load_causal_lm(folder, ModelConfig(dtype="float32"), torch.device("cuda"))
    tok = load_tokenizer(folder)
    rollout = VLLMRollout(tok, PromptFormatter(tok, None, None), [tok.eos_token_id], 64, str(folder), "float32",
                          0.2, 256, seed=0)
    rollout.sync_weights(model)
    batch = rollout.generate(model, PROMPTS, 4, max_new_tokens=8, seed=0).to("cuda")
    with torch.no_grad():
        lp = sequence_log_probs(model, batch, 1.0)["log_prob"] * batch.response_mask
    assert (lp - batch.gen_log_probs).abs().max().item() < 1e-2

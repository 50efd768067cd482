"""``make gpu-check`` (benchmarks/gpu_check.py) and the HF rollout paths it compares.

The GPU check itself runs here with tiny shapes on the CPU (what CI runs, so the command cannot
rot between the rare GPU sessions); the rollout paths are checked for the property the issue's
rule needs: ``hf-static`` draws the same samples as plain ``generate`` for a seed, and
``hf-continuous`` records the log-probs of the distribution it samples from.
"""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import bench_gpu, gpu_check
from lad_ref.llm.config import ModelConfig, TinyModelConfig
from lad_ref.llm.model import load_causal_lm, load_tokenizer, materialise_tiny
from lad_ref.llm.rollout import HF_BACKENDS, HFRollout, PromptFormatter, sequence_log_probs

PROMPTS = ["5!1=", "17!58=", "23!19=", "Q: what is 2+2? A:"]  # different lengths -> left padding


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = materialise_tiny(TinyModelConfig(), tmp_path_factory.mktemp("tiny"), seed=0)
    model = load_causal_lm(folder, ModelConfig(), torch.device("cpu"))
    return model, load_tokenizer(folder)


def rollout(tok, cache: str) -> HFRollout:
    return HFRollout(tok, PromptFormatter(tok, None, None), [tok.eos_token_id], batch_size=64, cache=cache)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_static_cache_gives_the_same_samples_as_plain_generate(tiny, temperature):
    model, tok = tiny
    a = rollout(tok, "dynamic").generate(model, PROMPTS, 8, max_new_tokens=12, temperature=temperature, seed=5)
    b = rollout(tok, "static").generate(model, PROMPTS, 8, max_new_tokens=12, temperature=temperature, seed=5)
    assert torch.equal(a.response_ids, b.response_ids) and a.texts == b.texts
    assert torch.equal(a.response_mask, b.response_mask)
    torch.testing.assert_close(a.gen_log_probs, b.gen_log_probs, atol=1e-5, rtol=0)
    c = rollout(tok, "static").generate(model, PROMPTS, 8, max_new_tokens=12, temperature=temperature, seed=6)
    assert not torch.equal(a.response_ids, c.response_ids)  # the seed matters, so equality above means something


def test_continuous_batching_records_the_log_probs_of_its_own_samples(tiny):
    model, tok = tiny
    cb = rollout(tok, "continuous")
    batch = cb.generate(model, PROMPTS, 4, max_new_tokens=12, temperature=0.7, seed=1)
    assert batch.response_ids.shape[0] == 16
    # rows stay grouped by prompt, as the trainer's group advantages assume
    for i in (0, 5, 15):
        row = batch.prompt_ids[i][batch.prompt_mask[i].bool()]
        assert tok.decode(row) == PROMPTS[i // 4]
    with torch.no_grad():
        lp = sequence_log_probs(model, batch, 0.7)["log_prob"] * batch.response_mask
    assert (lp - batch.gen_log_probs).abs().max().item() < 1e-4  # tempered pi_old, as the hf path records
    assert model.training  # generation leaves the training model in train mode
    again = cb.generate(model, PROMPTS, 4, max_new_tokens=12, temperature=0.7, seed=1)
    assert torch.equal(batch.response_ids, again.response_ids)  # seeded


def test_unknown_cache_mode_names_the_choices(tiny):
    _, tok = tiny
    with pytest.raises(ValueError, match="valid choices are dynamic, static, continuous"):
        rollout(tok, "paged")
    assert set(HF_BACKENDS) == {"hf", "hf-static", "hf-continuous"}


def test_generation_paths_past_the_deadline_are_skipped_not_failed():
    kw = {**bench_gpu.QWEN2_0_5B, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
          "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 50}
    model = bench_gpu.build_model(kw, "cpu", torch.float32)
    tok = bench_gpu.synthetic_tokenizer(50)
    res = bench_gpu.generation(model, tok, ["hf", "hf-static"], "cpu", 2, 3, 4, repeats=1, deadline=0.0)
    assert all(set(v) == {"skipped"} for v in res["paths"].values()) and "fastest" not in res
    ran = bench_gpu.generation(model, tok, ["hf"], "cpu", 2, 3, 4, repeats=1, deadline=None)
    assert 0 < ran["paths"]["hf"]["tokens"] <= 2 * 4 and ran["fastest"] == "hf"  # EOS (t1) may end a row early


def test_peak_flops_table_matches_device_names_most_specific_first():
    assert bench_gpu.peak_bf16_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert bench_gpu.peak_bf16_flops("NVIDIA H100 PCIe") == 756e12
    assert bench_gpu.peak_bf16_flops("NVIDIA H200") == 989e12
    assert bench_gpu.peak_bf16_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert bench_gpu.peak_bf16_flops("Tesla T4") is None  # unknown: no MFU rather than a wrong one


def test_model_flops_are_six_n_plus_attention_for_a_tied_model():
    kw = bench_gpu.QWEN2_0_5B
    n = bench_gpu.count_parameters(kw)
    f = bench_gpu.model_flops_per_token(kw, n, seq_len=1024)
    attention = 12 * kw["num_hidden_layers"] * kw["hidden_size"] * 1024
    assert f["body"] + f["head"] == 6 * n + attention  # every logit computed: 6N (tied embedding = LM head)
    g = bench_gpu.model_flops_per_token(kw, n, train=False)
    assert g["body"] + g["head"] == 2 * n


@pytest.mark.slow
def test_gpu_check_cpu_smoke_exits_0_and_writes_json_and_table(tmp_path):
    assert gpu_check.main(["--device", "cpu", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "gpu-cpu-smoke.json").read_text())
    md = (tmp_path / "gpu-cpu-smoke.md").read_text()
    env = data["environment"]
    assert data["status"] == "ok" and set(data["sections"]) == {"toy", "qwen2_0_5b"}
    assert f"torch {env['torch']}" in md and f"transformers {env['transformers']}" in md
    toy = data["sections"]["toy"]["result"]
    assert toy["dtype"] == "bfloat16" and toy["gradient_checkpointing"]
    assert {k: v["steps"] for k, v in toy["runs"].items()} == {"lad": 2, "grpo": 2}
    bench = data["sections"]["qwen2_0_5b"]["result"]
    assert set(bench["generation"]["paths"]) == {"hf", "hf-static", "hf-continuous"}
    assert all(v["tokens_per_s"] > 0 for v in bench["generation"]["paths"].values())
    assert bench["generation"]["paths"]["hf-static"]["same_samples_as_hf"] == 1.0
    assert bench["lora"]["trainable_parameters"] < bench["training"]["trainable_parameters"]
    assert "| `hf-static` |" in md and "LAD / GRPO training step time" in md


def test_committed_gpu_check_results_render():
    for path in sorted(gpu_check.RESULTS_DIR.glob("gpu-*.json")):  # none until a GPU session commits one
        data = json.loads(path.read_text())
        md = gpu_check.markdown(data)
        assert md.startswith("# gpu-check: ") and f"transformers {data['environment']['transformers']}" in md


def test_a_failing_part_is_recorded_and_makes_the_exit_status_1(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rollout: {backend: nonsense}\n")
    assert gpu_check.main(["--device", "cpu", "--only", "toy", "--toy-config", str(bad), "--out", str(tmp_path)]) == 1
    data = json.loads((tmp_path / "gpu-cpu-smoke.json").read_text())
    assert data["status"] == "failed (toy)" and "nonsense" in data["sections"]["toy"]["error"]
    assert "FAILED" in (tmp_path / "gpu-cpu-smoke.md").read_text()

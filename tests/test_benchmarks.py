"""benchmarks/: the timing helpers and the sections that are cheap enough to run in a test.

No timing is asserted (speed is measured by ``python -m benchmarks``, never pass/fail); these tests
check that the code measures what it says (interleaving, warm-up, shapes) and that the GPU section
runs end to end, on a CPU with a tiny model.
"""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import bench_gpu, bench_loss
from benchmarks.__main__ import table
from benchmarks.common import RESULTS_DIR, interleaved


def test_interleaved_reverses_the_order_every_round_and_drops_warmup():
    calls = []
    fns = {name: (lambda n=name: calls.append(n)) for name in "abc"}
    out = interleaved(fns, repeats=3, warmup=1, number=2)
    assert calls == ["a", "a", "b", "b", "c", "c", "c", "c", "b", "b", "a", "a"] * 2
    assert {k: v["n"] for k, v in out.items()} == {"a": 3, "b": 3, "c": 3}
    assert all(v["min_s"] <= v["median_s"] <= v["max_s"] for v in out.values())


def test_vocab_step_times_both_losses_through_the_chunked_log_softmax():
    res = bench_loss.vocab_step(vocab=1000, b=2, t=8, hidden=16, repeats=2)
    assert set(res["timings"]) == {"grpo", "lad(js)"} and res["lad_over_grpo"] > 0


def test_gpu_preset_is_half_a_billion_parameters():
    assert 4.5e8 < bench_gpu.count_parameters(bench_gpu.QWEN2_0_5B) < 5.5e8


def test_gpu_section_runs_end_to_end_on_cpu_with_a_tiny_model():
    tiny = {**bench_gpu.QWEN2_0_5B, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300, "max_position_embeddings": 64}
    res = bench_gpu.run(tiny, device="cpu", dtype=torch.float32, gen_batch=2, prompt_len=4, new_tokens=5,
                        train_batch=2, seq_len=12, response_len=6, repeats=1, gen_repeats=1,
                        gen_paths=("hf", "hf-static"))
    gen = res["generation"]["paths"]
    assert all(v["tokens_per_s"] > 0 and v["peak_gib"] is None for v in gen.values())
    assert gen["hf"]["same_samples_as_hf"] == 1.0 and res["generation"]["fastest"] in gen
    assert set(res["training"]["tokens_per_s"]) == {"grpo", "lad(js)"}
    assert set(res["lora"]["tokens_per_s"]) == {"grpo", "lad(js)"}
    assert res["training"]["mfu"] == {"grpo": None, "lad(js)": None}  # no peak FLOP/s for a CPU: no MFU
    assert "generation, 2 x (4 prompt + 5 new)" in res["markdown"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_gpu_section_says_why_it_is_skipped_without_cuda():
    assert bench_gpu.run() == {"skipped": "no CUDA device on this machine"}


def test_committed_results_render_every_section():
    # gpu-<device>.json come from benchmarks/gpu_check.py and have their own renderer (test_gpu_check);
    # rewards-<machine>.json from benchmarks/bench_rewards.py, which writes its .md beside it
    files = sorted(p for p in RESULTS_DIR.glob("*.json") if not p.name.startswith(("gpu-", "rewards-")))
    for path in RESULTS_DIR.glob("rewards-*.json"):
        assert path.with_suffix(".md").is_file(), f"{path.name} has no rendered .md beside it"
    assert files, "no committed benchmark results"
    for path in files:
        data = json.loads(path.read_text())
        md = table(data)
        assert md.startswith("Machine: ")
        for section, header in (("bandit", "| bandit |"), ("loss", "| loss fwd+bwd"), ("trainer", "| trainer step"),
                                ("trl", "| lad_ref compact trainer step")):
            if section in data:
                assert header in md, f"{path.name}: the {section} section is missing from the table"

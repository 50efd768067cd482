"""N processes give the update one process gives: LadGRPOTrainer's loss under torch.distributed (gloo, CPU).

For 2 and 3 ranks, every ``loss_type`` normalisation of the TRL adapter (``loss_agg_mode="auto"``: dapo,
bnpo, grpo, dr_grpo; and the explicit lad_ref modes), for LAD and GRPO, with unequal valid-token counts
per rank, fully masked rows, a fully masked micro-batch and gradient accumulation > 1:

* each rank builds a real ``LadGRPOTrainer`` (its ``Accelerator`` joins the gloo group from the launcher
  environment), wraps the model with ``accelerator.prepare_model`` (DDP: gradients averaged over ranks)
  and runs one accumulation window of micro-batches through the trainer's own ``compute_loss`` and
  ``accelerator.backward``, with ``num_items_in_batch`` computed as TRL computes it (a gather of the
  generation batch's valid-token counts);
* the reference is ONE process that runs the same micro-batches with gradient accumulation
  ``P * G`` (and ``steps_per_generation`` ``P * S``), i.e. the same global batch per optimizer step;
* the test asserts ||g_P - g_1|| / ||g_1|| < 1e-5, and that a local per-rank normaliser (the window's
  token count of this rank instead of the global one for dapo; this micro-batch's non-empty rows instead
  of all rows for grpo / dr_grpo), switched on inside this file's trainer subclass, breaks that equality.

bnpo and the explicit modes are per micro-batch by TRL's definition (no rank-global count enters), so
they equal a one-process run over the same micro-batches, not a one-process run with larger micro-batches.

Marked slow (three spawned groups: 1, 2 and 3 ranks); run with ``pytest tests/test_distributed_trl.py``.
"""

from __future__ import annotations

import contextlib
import math
import tempfile

import pytest
import torch

trl = pytest.importorskip("trl", reason="needs the [trl] extra (trl==1.16.0)")
if trl.__version__ != "1.16.0":
    pytest.skip(f"the TRL adapter is pinned to trl==1.16.0, found {trl.__version__}", allow_module_level=True)
pytest.importorskip("datasets", reason="needs the [trl] extra (trl==1.16.0)")

from dist_utils import flat_grad, rel_diff, run_ranks  # noqa: E402

pytestmark = [pytest.mark.trl, pytest.mark.slow]  # ~2 min unloaded (3 spawns), 5.6 min on a loaded 2-core box

B = 2  # rows per micro-batch (per_device_train_batch_size)
LP, T = 3, 6  # prompt and completion length
WORLDS = (2, 3)
TOL = 1e-5  # float32 model, different summation order
BROKEN = 1e-2  # a local normaliser moves the gradient by at least this much here

# (name, LadGRPOConfig overrides, G = gradient_accumulation_steps, S = steps_per_generation)
CASES = [
    *[
        (f"{obj}-{lt}", {"objective": obj, "loss_type": lt}, 2, 2)
        for obj in ("lad", "grpo")
        for lt in ("dapo", "bnpo", "grpo", "dr_grpo")
    ],
    *[
        (f"lad-{m}", {"objective": "lad", "loss_agg_mode": m}, 2, 2)
        for m in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm", "token-sum")
    ],
    ("lad-dapo-G3", {"objective": "lad", "loss_type": "dapo", "divergence": "hd", "eta": 0.5}, 3, 3),
    ("lad-dapo-S4", {"objective": "lad", "loss_type": "dapo"}, 2, 4),  # two optimizer steps per generation
    ("lad-grpo-beta", {"objective": "lad", "loss_type": "grpo", "beta": 0.04}, 2, 2),
    ("lad-dapo-seq", {"objective": "lad", "loss_type": "dapo", "level": "sequence", "divergence": "tv"}, 2, 2),
]
#: cases whose adapter normaliser spans ranks (num_items_in_batch / num_processes, or all B rows)
GLOBAL_NORMALISER = {n for n, o, _, _ in CASES if o.get("loss_type") in ("dapo", "grpo", "dr_grpo")}


# ----------------------------------------------------------------------------------------------------
# the global batch (identical in every process) and its split over ranks / micro-batches
# ----------------------------------------------------------------------------------------------------


def global_batch(world: int, S: int, vocab: int, seed: int = 0) -> dict:
    """One generation batch over all ranks: rows (world * S * B); block (p, s) = rank p's micro-batch s.

    Valid-token counts differ by rank (rank 0 long completions, others short), some rows are fully
    masked, and with 3 ranks rank 2's second micro-batch is fully masked.
    """
    g = torch.Generator().manual_seed(seed + 97 * world + S)
    rows = world * S * B
    prompt_ids = torch.randint(3, vocab, (rows, LP), generator=g)
    completion_ids = torch.randint(3, vocab, (rows, T), generator=g)
    lengths = torch.empty(rows, dtype=torch.long)
    for r in range(rows):
        p = r // (S * B)
        hi = T if p == 0 else 3
        lengths[r] = int(torch.randint(1, hi + 1, (1,), generator=g))
    lengths[1] = 0  # a fully masked row on rank 0
    lengths[S * B + 2 if S * B + 2 < rows else rows - 1] = 0  # and one on rank 1
    if world == 3:
        lengths[2 * S * B + B:2 * S * B + 2 * B] = 0  # rank 2, micro-batch 1: nothing valid
    completion_mask = (torch.arange(T)[None, :] < lengths[:, None]).long()
    completion_ids = torch.where(completion_mask.bool(), completion_ids, torch.zeros_like(completion_ids))
    return {
        "prompt_ids": prompt_ids,
        "prompt_mask": torch.ones(rows, LP, dtype=torch.long),
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "advantages": torch.randn(rows, generator=g),
        "noise": 0.3 * torch.randn(rows, T, generator=g),
        "ref_noise": 0.2 * torch.randn(rows, T, generator=g),
    }


def block(batch: dict, world: int, S: int, p: int, s: int) -> slice:
    start = (p * S + s) * B
    return slice(start, start + B)


# ----------------------------------------------------------------------------------------------------
# the rank worker
# ----------------------------------------------------------------------------------------------------


def _trainer_class():
    from lad_ref.integrations.trl import LadGRPOTrainer

    class SwitchableTrainer(LadGRPOTrainer):
        """The adapter, or (``local_normaliser = True``) the adapter with its rank-global normaliser
        replaced by a per-rank one: dapo's token count of this rank's window, or the non-empty rows of
        this micro-batch for grpo / dr_grpo (lad_ref's default without ``global_batch_size``)."""

        local_normaliser = False
        local_window_tokens: float = 1.0

        def aggregation(self, inputs, mode, batch_size):
            agg, kwargs, divisor = super().aggregation(inputs, mode, batch_size)
            if self.local_normaliser:
                kwargs = dict(kwargs)
                if "batch_num_tokens" in kwargs:
                    kwargs["batch_num_tokens"] = torch.tensor(max(self.local_window_tokens, 1.0))
                kwargs.pop("global_batch_size", None)
            return agg, kwargs, divisor

    return SwitchableTrainer


def trl_worker(rank: int, world: int, model_path: str, jobs: list) -> dict:
    """Run every job ``(case, P, variants)`` on this rank; return {(case, P, local): flat gradient}.

    ``world`` is the number of ranks running now, ``P`` the rank count whose global batch is used: the
    reference (world 1) runs the P-rank batch with gradient accumulation P * G. ``variants`` lists the
    values of ``local_normaliser`` to run (the adapter, and where it has a rank-global count, the local one).
    """
    from datasets import Dataset

    from lad_ref.integrations.trl import LadGRPOConfig

    trainer_cls = _trainer_class()
    dataset = Dataset.from_dict({"prompt": ["ab", "cd", "ef", "gh"] * 3})
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, P, variants in jobs:
            _, overrides, G, S = next(c for c in CASES if c[0] == name)
            accum, spg = G * P // world, S * P // world
            args = LadGRPOConfig(
                output_dir=tmp,
                per_device_train_batch_size=B,
                gradient_accumulation_steps=accum,
                steps_per_generation=spg,
                num_generations=2,
                max_completion_length=T,
                num_iterations=2,
                use_cpu=True,
                bf16=False,  # GRPOConfig's default bf16=True autocasts on CPU too: rounding, not normalisation
                report_to="none",
                save_strategy="no",
                seed=0,
                **overrides,
            )
            trainer = trainer_cls(model=model_path, reward_funcs=lambda completions, **kw: [0.0] * len(completions),
                                  args=args, train_dataset=dataset)
            acc = trainer.accelerator
            assert acc.num_processes == world
            trainer.model.train()
            trainer.current_gradient_accumulation_steps = accum
            batch = global_batch(P, S, trainer.model.config.vocab_size)
            ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
            attn = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
            with torch.no_grad():  # pi_old = pi_theta * e^noise: r != 1 where LAD's weight acts
                logps, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, ids, attn, T)
            batch["old_per_token_logps"] = logps + batch["noise"]
            batch["ref_per_token_logps"] = logps + batch["ref_noise"]
            # this process's micro-batches: the reference owns every block, rank p owns blocks (p, *)
            owned = [(p, s) for p in range(P) for s in range(S)] if world == 1 else [(rank, s) for s in range(S)]
            # reference order: window w = blocks (p, s) with s in [wG, (w+1)G), rank by rank
            owned.sort(key=lambda ps: (ps[1] // G, ps[0], ps[1]))
            keys = ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "advantages",
                    "old_per_token_logps", "ref_per_token_logps")
            micro = [{k: batch[k][block(batch, P, S, p, s)] for k in keys} for p, s in owned]
            # TRL: num_items_in_batch = gather(valid tokens of this process's generation batch).sum()
            local_tokens = sum(m["completion_mask"].sum() for m in micro)
            num_items = acc.gather(local_tokens.reshape(1)).sum()
            window = micro[:accum]  # the first optimizer step's micro-batches
            trainer.local_window_tokens = float(sum(m["completion_mask"].sum() for m in window))
            model = acc.prepare_model(trainer.model)  # DDP over the gloo group when world > 1
            for local in variants:
                trainer.local_normaliser = local
                model.zero_grad(set_to_none=True)
                for i, inputs in enumerate(window):
                    inputs = {**inputs, "num_items_in_batch": num_items}
                    # as the HF Trainer accumulates: no all-reduce until the window's last micro-batch
                    sync = acc.no_sync(model) if i < len(window) - 1 else contextlib.nullcontext()
                    with sync:
                        loss = trainer.compute_loss(model, inputs)
                        acc.backward(loss)
                out[(name, P, local)] = flat_grad(trainer.model.parameters())
            acc.free_memory()
            del trainer, model
    return out


# ----------------------------------------------------------------------------------------------------
# the runs: one spawn per world size, shared by the tests
# ----------------------------------------------------------------------------------------------------


def _jobs(P: int) -> list:
    return [(n, P, (False, True) if n in GLOBAL_NORMALISER else (False,)) for n, *_ in CASES]


@pytest.fixture(scope="module")
def grads(tmp_path_factory):
    from lad_ref.llm.config import TinyModelConfig
    from lad_ref.llm.model import materialise_tiny

    cfg = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64,
                          max_position_embeddings=32)
    path = str(materialise_tiny(cfg, tmp_path_factory.mktemp("tiny") / "model", seed=0))
    ref_jobs = [(n, P, (False,)) for P in WORLDS for n, *_ in CASES]
    results = {1: run_ranks(trl_worker, 1, path, ref_jobs)}
    for P in WORLDS:
        results[P] = run_ranks(trl_worker, P, path, _jobs(P))
    return results


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("case", [c[0] for c in CASES])
def test_ranks_give_the_one_process_gradient(grads, case, world):
    ref = grads[1][0][(case, world, False)]
    per_rank = [r[(case, world, False)] for r in grads[world]]
    assert ref.norm() > 0 and all(torch.isfinite(g).all() for g in per_rank)
    for g in per_rank[1:]:  # DDP left every rank with the same averaged gradient
        torch.testing.assert_close(g, per_rank[0], rtol=0, atol=0)
    diff = rel_diff(per_rank[0], ref)
    print(f"TRL {case} P={world}: rel grad diff {diff:.2e}")
    assert diff < TOL, f"{case}, {world} ranks: ||g_P - g_1|| / ||g_1|| = {diff:.3g}"


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("case", sorted(GLOBAL_NORMALISER))
def test_a_local_normaliser_is_caught(grads, case, world):
    """The equality above is not vacuous: a per-rank normaliser gives a different gradient."""
    ref = grads[1][0][(case, world, False)]
    broken = grads[world][0][(case, world, True)]
    diff = rel_diff(broken, ref)
    print(f"TRL {case} P={world}: LOCAL normaliser rel grad diff {diff:.2e}")
    assert diff > BROKEN and math.isfinite(diff)


# ----------------------------------------------------------------------------------------------------
# end to end: the TRL recipe under `accelerate launch --num_processes 2` on CPU (gloo)
# ----------------------------------------------------------------------------------------------------


def test_recipe_runs_under_accelerate_with_two_processes(tmp_path):
    """train_lad.py with the math recipe's YAML, a tiny local model and CPU overrides: finishes, logs the
    LAD metrics once per step (not once per rank), and writes checkpoints holding both ranks' RNG states."""
    import json
    import os
    import random
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from transformers import AutoTokenizer

    from lad_ref.llm.config import TinyModelConfig
    from lad_ref.llm.model import materialise_tiny

    root = Path(__file__).resolve().parents[1]
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable))
    if accelerate is None:
        pytest.skip("the accelerate CLI is not installed next to this Python")
    cfg = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64,
                          max_position_embeddings=96)
    model = materialise_tiny(cfg, tmp_path / "model", seed=0)
    tok = AutoTokenizer.from_pretrained(model)  # the recipe sends chat prompts: give the tiny model a template
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}={% endif %}"
    tok.save_pretrained(model)
    rng = random.Random(0)
    data = tmp_path / "math.jsonl"
    data.write_text("".join(
        json.dumps({"prompt": f"{a}+{b}", "answer": str(a + b)}) + "\n"
        for a, b in ((rng.randint(1, 20), rng.randint(1, 20)) for _ in range(64))
    ))
    out = tmp_path / "out"
    cmd = [
        accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no",
        str(root / "llm/recipes/trl/train_lad.py"), "--config", str(root / "llm/recipes/trl/qwen2.5-7b_dapo-math.yaml"),
        "--model_name_or_path", str(model), "--train_files", str(data), "--answer_field", "answer",
        "--use_vllm", "false", "--bf16", "false", "--use_cpu", "true", "--gradient_checkpointing", "false",
        "--model_init_kwargs", '{"dtype": "float32"}',
        "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "2", "--steps_per_generation", "4",
        "--num_generations", "4", "--max_completion_length", "8", "--max_steps", "4", "--save_steps", "2",
        "--warmup_steps", "0", "--learning_rate", "1e-3", "--output_dir", str(out),
    ]
    env = {**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    metric_lines = [ln for ln in proc.stdout.splitlines() + proc.stderr.splitlines() if "'lad/ratio_mean'" in ln]
    assert len(metric_lines) == 4, metric_lines  # one line per optimizer step, from the main process only
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    steps = [h for h in state["log_history"] if "lad/weight_flip_frac" in h]
    assert [h["step"] for h in steps] == [1, 2, 3, 4]
    for ck in ("checkpoint-2", "checkpoint-4"):
        assert {"model.safetensors", "rng_state_0.pth", "rng_state_1.pth"} <= {p.name for p in (out / ck).iterdir()}
    assert (out / "final" / "model.safetensors").is_file()

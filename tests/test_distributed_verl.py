"""N data-parallel ranks give the single-rank update: the ``lad`` policy loss inside verl 0.9.1's own ``ppo_loss``.

verl 0.9.1's actor (the engine path: ``verl/workers/engine/fsdp/transformer_impl.py::forward_backward_batch``
and ``verl/workers/utils/losses.py::ppo_loss``) normalises every micro-batch loss by its mini-batch over
all dp ranks and lets FSDP average the gradients:

* ``batch_num_tokens`` = all_reduce(SUM) over dp of the rank's mini-batch ``loss_mask.sum()``;
* ``dp_size`` = the data-parallel world size; ``global_batch_size`` = ``ppo_mini_batch_size * rollout.n``
  (rows of the mini-batch over all ranks, fully masked ones included); ``loss_scale_factor`` = the actor's;
* ``ppo_loss`` writes these into ``config.global_batch_info`` and calls the registered policy loss;
  each micro-batch's loss is back-propagated as is (no division by the micro-batch count) and the
  gradients are averaged over ranks before the optimizer step.

Here each rank (torch.multiprocessing, gloo, CPU) runs verl's real ``ppo_loss`` on its shard of one global
mini-batch, with uneven micro-batches, unequal valid-token counts and fully masked rows, then all-reduces
the gradients of a small shared log-linear policy (mean over ranks, as FSDP). The single-rank reference runs
the whole mini-batch in one process (``dp_size = 1``). Asserted for every aggregation mode, for ``lad``
(token- and sequence-level) and verl's own ``vanilla`` loss: ||g_P - g_1|| / ||g_1|| < 1e-6,
and that the adapter with ``global_batch_info`` ignored (a local aggregation, switched inside the worker)
gives a different gradient.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("verl.trainer.ppo.core_algos", reason="needs the [verl] extra (verl==0.9.1)")

from dist_utils import flat_grad, init_gloo, rel_diff, run_ranks  # noqa: E402

pytestmark = pytest.mark.verl

MODES = ("token-mean", "token-sum", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")
LOSSES = {  # name -> policy_loss config kwargs
    "lad-js": {"loss_mode": "lad", "divergence": "js", "eta": 1.0},
    "lad-hd-seq": {"loss_mode": "lad", "divergence": "hd", "eta": 0.5, "level": "sequence"},
    "vanilla": {"loss_mode": "vanilla"},
}
WORLDS = (2, 3)
ROWS_PER_RANK, LP, T, D, V = 4, 2, 6, 5, 7
# uneven micro-batches inside each rank (verl's dynamic batch size packs by tokens, not rows)
MICRO = {0: (3, 1), 1: (1, 3), 2: (2, 2)}
TOL, BROKEN = 1e-6, 1e-3  # float64 data, but lad_ref's losses compute in float32 (x3 then /3: ~6e-8)


def global_minibatch(world: int, seed: int = 0) -> dict:
    """One mini-batch of world * ROWS_PER_RANK rows; rank p holds rows [p*R, (p+1)*R).

    Rank 0's responses are long, the others' short; rows 1 and R + 2 are fully masked.
    """
    g = torch.Generator().manual_seed(seed + world)
    rows = world * ROWS_PER_RANK
    lengths = torch.tensor([
        int(torch.randint(3 if r < ROWS_PER_RANK else 1, (T if r < ROWS_PER_RANK else 2) + 1, (1,), generator=g))
        for r in range(rows)
    ])
    lengths[1] = 0
    lengths[ROWS_PER_RANK + 2] = 0
    mask = (torch.arange(T)[None] < lengths[:, None]).to(torch.float64)
    return {
        "features": torch.randn(rows, T, D, generator=g, dtype=torch.float64),
        "tokens": torch.randint(0, V, (rows, T), generator=g),
        "response_mask": mask,
        "advantages": torch.randn(rows, 1, generator=g, dtype=torch.float64).expand(rows, T).contiguous(),
        "old_noise": 0.3 * torch.randn(rows, T, generator=g, dtype=torch.float64),
        "weight0": 0.3 * torch.randn(D, V, generator=torch.Generator().manual_seed(123), dtype=torch.float64),
    }


def _verl_data(rows: slice, batch: dict, log_prob: torch.Tensor, info: dict):
    """verl's micro-batch TensorDict (padded prompts/responses + attention mask) and the model output
    (log-probs flattened over every valid prompt+response token, left-shifted as the engine returns them)."""
    from tensordict import TensorDict
    from verl.utils import tensordict_utils as tu

    mask = batch["response_mask"][rows]
    n = mask.shape[0]
    attention = torch.cat([torch.ones(n, LP), mask], 1).long()
    seq_lens = attention.sum(1)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), seq_lens.cumsum(0)])
    idx_rows, idx_pos, flat_pos = [], [], []
    for i in range(n):
        for j in range(int(mask[i].sum())):
            idx_rows.append(i)
            idx_pos.append(j)
            flat_pos.append(int(offsets[i]) + LP - 1 + j)  # the output at position t scores token t + 1
    flat = torch.zeros(int(offsets[-1]), dtype=log_prob.dtype)
    flat = flat.index_put((torch.tensor(flat_pos, dtype=torch.long),),
                          log_prob[torch.tensor(idx_rows, dtype=torch.long), torch.tensor(idx_pos, dtype=torch.long)])
    data = TensorDict(
        {
            "prompts": torch.ones(n, LP, dtype=torch.long),
            "responses": batch["tokens"][rows],
            "attention_mask": attention,
            "response_mask": mask,
            "old_log_probs": batch["old_log_prob"][rows],
            "advantages": batch["advantages"][rows],
        },
        batch_size=[n],
    )
    tu.assign_non_tensor(data, **info)
    return data, {"log_probs": flat}


def verl_worker(rank: int, world: int, jobs: list) -> dict:
    """For each job ``(loss, mode, P, local)``: this rank's gradient after verl's reduction.

    ``world`` = 1 runs the whole P-rank mini-batch in one process (the reference). ``local`` = True
    makes the adapter ignore ``global_batch_info`` (lad_ref.integrations.verl._AGG_KEYS emptied here).
    """
    import torch.distributed as dist
    from verl.workers.config import ActorConfig, PolicyLossConfig
    from verl.workers.utils.losses import ppo_loss

    import lad_ref.integrations.verl as lad_verl

    init_gloo()
    agg_keys = lad_verl._AGG_KEYS
    out = {}
    for loss_name, mode, P, local, scale in jobs:
        batch = global_minibatch(P)
        w = batch["weight0"].clone().requires_grad_(True)

        def log_probs(rows, batch=batch, w=w):  # a log-linear policy shared by all rows: log softmax(x_t W)[y_t]
            logits = batch["features"][rows] @ w
            return torch.log_softmax(logits, -1).gather(-1, batch["tokens"][rows].unsqueeze(-1)).squeeze(-1)

        with torch.no_grad():
            batch["old_log_prob"] = log_probs(slice(None)) + batch["old_noise"]
        kw = dict(LOSSES[loss_name])
        pl = (lad_verl.LadPolicyLossConfig(**{k: v for k, v in kw.items() if k != "loss_mode"})
              if kw["loss_mode"] == "lad" else PolicyLossConfig(**kw))
        cfg = ActorConfig(strategy="fsdp", rollout_n=1, ppo_micro_batch_size_per_gpu=1, policy_loss=pl,
                          loss_agg_mode=mode, loss_scale_factor=scale)
        mine = range(P) if world == 1 else [rank]
        shards = []  # (row slice) of this process's micro-batches
        for p in mine:
            start = p * ROWS_PER_RANK
            for size in MICRO[p]:
                shards.append(slice(start, start + size))
                start += size
        # forward_backward_batch: global token count of the mini-batch; ray_trainer: global_batch_size
        tokens = torch.tensor(sum(float(batch["response_mask"][s].sum()) for s in shards))
        if world > 1:
            dist.all_reduce(tokens, op=dist.ReduceOp.SUM)
        info = {"dp_size": world, "batch_num_tokens": tokens.item(), "global_batch_size": P * ROWS_PER_RANK}
        lad_verl._AGG_KEYS = () if local else agg_keys
        try:
            for s in shards:
                data, output = _verl_data(s, batch, log_probs(s), info)
                loss, _ = ppo_loss(cfg, output, data)
                loss.backward()
        finally:
            lad_verl._AGG_KEYS = agg_keys
        if world > 1:  # FSDP's gradient reduction: the mean over data-parallel ranks
            dist.all_reduce(w.grad, op=dist.ReduceOp.SUM)
            w.grad /= world
        out[(loss_name, mode, P, local, scale)] = flat_grad([w])
    return out


def _jobs(P, world):
    jobs = []
    for loss_name in LOSSES:
        for mode in MODES:
            for scale in ((None, 4) if mode == "seq-mean-token-sum-norm" else (None,)):
                locals_ = (False, True) if world > 1 and loss_name != "vanilla" else (False,)
                jobs += [(loss_name, mode, P, loc, scale) for loc in locals_]
    return jobs


@pytest.fixture(scope="module")
def grads():
    ref = verl_worker(0, 1, [j for P in WORLDS for j in _jobs(P, 1)])  # one process, no process group
    return {"ref": ref, **{P: run_ranks(verl_worker, P, _jobs(P, P)) for P in WORLDS}}


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("loss_name", list(LOSSES))
def test_dp_ranks_give_the_single_rank_gradient(grads, loss_name, mode, world):
    scales = (None, 4) if mode == "seq-mean-token-sum-norm" else (None,)
    for scale in scales:
        key = (loss_name, mode, world, False, scale)
        ref = grads["ref"][key]
        per_rank = [r[key] for r in grads[world]]
        assert ref.norm() > 0
        for g in per_rank[1:]:
            torch.testing.assert_close(g, per_rank[0], rtol=0, atol=0)
        diff = rel_diff(per_rank[0], ref)
        print(f"verl {loss_name} {mode} C={scale} P={world}: rel grad diff {diff:.2e}")
        assert diff < TOL


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("loss_name", ["lad-js", "lad-hd-seq"])
def test_ignoring_global_batch_info_is_caught(grads, loss_name, mode, world):
    key = (loss_name, mode, world, True, None)
    diff = rel_diff(grads[world][0][key], grads["ref"][key[:3] + (False, None)])
    print(f"verl {loss_name} {mode} P={world}: LOCAL aggregation rel grad diff {diff:.2e}")
    assert diff > BROKEN

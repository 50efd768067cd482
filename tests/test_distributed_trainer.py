"""The compact trainer's gradient accumulation: micro-batches within a minibatch give the minibatch gradient.

``lad_ref.llm.train.update_policy`` divides every micro-batch loss by the minibatch's token / sequence
count (verl's ``global_batch_info`` with dp_size 1), so summing micro-batch gradients must give the
gradient of one pass over the whole minibatch, for every aggregation mode and objective, whatever the
micro-batch size. Measured on real rollouts of the tiny model (unequal response lengths) with
pi_old != pi_theta (r != 1, where LAD's weight differs from GRPO's), and a reference that breaks the
normaliser (each micro-batch normalised by itself) to show that the comparison can fail.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import lad_ref.losses as losses
from lad_ref.llm import train as train_mod
from lad_ref.llm.config import TinyModelConfig, resolve
from lad_ref.llm.model import load_causal_lm, load_tokenizer, materialise_tiny
from lad_ref.llm.rollout import HFRollout, PromptFormatter

ROOT = Path(__file__).resolve().parents[1]
TOY = str(ROOT / "llm" / "configs" / "toy.yaml")
pytestmark = pytest.mark.slow  # 23 update_policy calls on rollouts of the tiny model (~80 s of CPU)

MINI = 16
MICROS = (8, 4, 1)


class RecordingSGD(torch.optim.SGD):
    """SGD with lr 0 that records the gradient it was asked to apply (the parameters do not move)."""

    def __init__(self, params):
        super().__init__(params, lr=0.0)
        self.grads = []

    def step(self, closure=None):
        self.grads.append(torch.cat([p.grad.detach().double().flatten() for g in self.param_groups
                                     for p in g["params"]]))
        return super().step(closure)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = materialise_tiny(TinyModelConfig(), tmp_path_factory.mktemp("tiny") / "m", seed=0)
    tok = load_tokenizer(folder)
    cfg = resolve(TOY, {"optim.mini_batch_size": MINI, "optim.micro_batch_size": MINI, "optim.epochs": 1,
                        "rollout.prompts_per_step": 4, "rollout.group_size": 4})
    model = load_causal_lm(folder, cfg.model, torch.device("cpu"))
    rollout = HFRollout(tok, PromptFormatter(tok, None, None), [tok.eos_token_id], 64)
    batch = rollout.generate(model, ["17!58=", "5!1=", "12!34=", "20!19="], 4, max_new_tokens=8, seed=0)
    lengths = batch.response_mask.sum(1)
    assert lengths.min() < lengths.max()  # unequal valid-token counts across micro-batches
    g = torch.Generator().manual_seed(0)
    adv = torch.randn(MINI, generator=g)
    old = train_mod.batched_log_probs(model, batch, 1.0, MINI)
    old = old + 0.2 * torch.randn(old.shape, generator=g) * batch.response_mask  # r != 1
    return model, batch, adv, old


def minibatch_grad(setup, objective, mode, micro, *, local=False):
    model, batch, adv, old = setup  # the optimizer's lr is 0: the model is the same for every call
    cfg = resolve(TOY, {"optim.mini_batch_size": MINI, "optim.micro_batch_size": micro, "optim.epochs": 1,
                        "optim.max_grad_norm": 0.0, "optim.shuffle": False, "rollout.prompts_per_step": 4,
                        "rollout.group_size": 4, "objective.name": objective, "objective.loss_agg_mode": mode})
    params = [p for p in model.parameters() if p.requires_grad]
    opt = RecordingSGD(params)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    loss_fn = losses.get_loss(objective)
    if local:  # the broken normaliser: each micro-batch aggregated on its own (no minibatch counts)
        def loss_fn(*a, agg_kwargs=None, _f=loss_fn, **kw):
            return _f(*a, **kw)
    learner = SimpleNamespace(cfg=cfg, spec=losses.get_objective(objective), loss_fn=loss_fn,
                              hp=getattr(cfg.objective, objective), model=model, logz_head=None, params=params,
                              optimizer=opt, scheduler=sched)
    train_mod.update_policy(learner, 1, batch, old, None, adv)
    (grad,) = opt.grads
    return grad


@pytest.mark.parametrize("mode", losses.AGG_MODES)
@pytest.mark.parametrize("objective", ["lad", "grpo"])
def test_micro_batches_give_the_minibatch_gradient(setup, objective, mode):
    ref = minibatch_grad(setup, objective, mode, MINI)
    assert ref.norm() > 0
    for micro in MICROS:
        g = minibatch_grad(setup, objective, mode, micro)
        diff = float((g - ref).norm() / ref.norm())
        print(f"trainer {objective} {mode} micro={micro}: rel grad diff {diff:.2e}")
        assert diff < 1e-5, f"{objective} {mode} micro {micro}: {diff:.3g}"


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"])
def test_a_per_micro_batch_normaliser_is_caught(setup, mode):
    ref = minibatch_grad(setup, "lad", mode, MINI)
    broken = minibatch_grad(setup, "lad", mode, 4, local=True)
    diff = float((broken - ref).norm() / ref.norm())
    print(f"trainer lad {mode} micro=4 LOCAL: rel grad diff {diff:.2e}")
    assert diff > 1e-2

"""A contributor's objective that needs an extra input, written outside lad_ref: a policy gradient
with an entropy bonus, L_t = -A_t r_t - coef * H_t (H: the policy's per-token entropy, which every
trainer supplies through lad_ref.losses.loss_inputs).

One file, one registration. From then on the compact trainer has an ``objective.entropy_pg``
section (``--objective.entropy_pg.coef``), TRL's LadGRPOConfig a ``coef`` field, and the bandits
accept ``entropy_pg``. It cannot be a verl policy loss: verl's signature passes no entropy.
"""

from dataclasses import dataclass, field

import torch

from lad_ref.checks import positive
from lad_ref.losses import LOG_RATIO_CLAMP, aggregate, register_objective, use_hp


@dataclass
class EntropyPGHparams:
    """Hyperparameters of the entropy-bonus policy gradient."""

    coef: float = field(default=0.01, metadata={"help": "Weight of the entropy bonus; >= 0."})

    def __post_init__(self):
        positive("coef", self.coef, allow_zero=True)


@register_objective("entropy_pg", hparams=EntropyPGHparams, needs=("entropy",))
def entropy_pg_loss(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode="token-mean", *, hp=None,
                    entropy=None, weights=None, agg_kwargs=None, compute_metrics=True, check=True):
    """-A r - coef * H per token, aggregated like every lad_ref objective."""
    hp = use_hp(hp, EntropyPGHparams, check)
    if check and entropy is None:
        raise ValueError("entropy_pg needs entropy=(B, T); got None.")
    mask = response_mask.bool()
    adv = advantages.float().expand(log_prob.shape) if advantages.dim() == 2 else advantages.float().view(-1, 1)
    adv = adv.expand(log_prob.shape)
    log_ratio = torch.where(mask, log_prob.float() - old_log_prob.float(), 0.0).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    ent = torch.where(mask, entropy.float().expand(log_prob.shape), 0.0)
    loss_mat = torch.where(mask, -adv * torch.exp(log_ratio) - hp.coef * ent, 0.0)
    if weights is not None:
        loss_mat = loss_mat * (weights if weights.dim() == 2 else weights.view(-1, 1))
    loss = aggregate(loss_mat, response_mask, loss_agg_mode, **(agg_kwargs or {}))
    metrics = {"entropy_pg/entropy_mean": float(ent[mask].mean())} if compute_metrics and mask.any() else {}
    return loss, metrics

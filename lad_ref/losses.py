"""Every policy objective of lad_ref, one signature, one registry, one aggregation.

All objectives follow verl's registered policy-loss convention (DESIGN.md §3)::

    loss, metrics = fn(old_log_prob, log_prob, advantages, response_mask,   # (B, T) each
                       loss_agg_mode="token-mean", *, <keyword-only hyperparameters>)

``log_prob`` carries the gradient; ``old_log_prob`` is the behaviour policy pi_old that
sampled the responses; ``advantages`` is per token (a (B,) or (B, 1) tensor broadcasts);
``response_mask`` marks valid tokens. ``weights`` (every objective) multiplies the per-token
loss before aggregation: verl's ``rollout_is_weights``, or the bandit's exact-expectation
weights pi_old(a). ``agg_kwargs`` is forwarded to :func:`aggregate` (verl's global-batch
normalisers). ``metrics`` is a dict of Python floats.

Objectives (``get_loss(name)``): ``lad`` (the paper's practical objective), ``lad_theory``
(the theoretical objective, finite action spaces only), ``grpo``, ``entadv``, ``kl_cov``,
``clip_cov``, ``flowrl``. Losses are computed in float32 whatever the input dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch

from lad_ref.divergences import get_divergence

Tensor = torch.Tensor

AGG_MODES: tuple[str, ...] = (
    "token-mean",
    "seq-mean-token-mean",
    "seq-mean-token-sum",
    "seq-mean-token-sum-norm",
    "token-sum",
)
LEVELS: tuple[str, ...] = ("token", "sequence")

# verl clamps log-ratios to [-20, 20] before exp (core_algos.compute_policy_loss_vanilla);
# the advantage-maximising baselines follow it so that exp(.) never overflows.
_LOG_RATIO_CLAMP = 20.0


# --------------------------------------------------------------------------------------
# validation: one clear sentence naming the bad value and the valid choices, before any work
# --------------------------------------------------------------------------------------


def _check_choice(what: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; valid choices are {', '.join(choices)}.")


def _check_positive(what: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{what} must be a finite number > 0, got {value!r}.")


def _check_inputs(
    old_log_prob: Tensor,
    log_prob: Tensor,
    advantages: Tensor,
    response_mask: Tensor,
    loss_agg_mode: str,
    **extra: Tensor | None,
) -> Tensor:
    """Validate the common arguments; return advantages broadcast to (B, T)."""
    _check_choice("loss_agg_mode", loss_agg_mode, AGG_MODES)
    if log_prob.dim() != 2:
        raise ValueError(f"log_prob must have shape (B, T), got shape {tuple(log_prob.shape)}.")
    shape = log_prob.shape
    for name, t in (("old_log_prob", old_log_prob), ("response_mask", response_mask)):
        if t.shape != shape:
            raise ValueError(
                f"{name} has shape {tuple(t.shape)} but log_prob has shape {tuple(shape)}; they must match."
            )
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(-1)
    try:
        advantages = advantages.expand(shape)
    except RuntimeError:
        raise ValueError(
            f"advantages has shape {tuple(advantages.shape)}, which does not broadcast to log_prob's "
            f"shape {tuple(shape)}; pass (B, T), (B, 1) or (B,)."
        ) from None
    for name, t in extra.items():
        if t is not None and t.shape != shape:
            raise ValueError(f"{name} has shape {tuple(t.shape)} but log_prob has shape {tuple(shape)}; they must match.")
    if not bool(response_mask.any()):
        raise ValueError("response_mask is all zero: there is no valid token to compute a loss on.")
    if not bool(torch.isfinite(advantages).all()):
        raise ValueError("advantages contain NaN or inf; every advantage must be a finite number.")
    return advantages


def _mask(response_mask: Tensor) -> Tensor:
    return response_mask.to(torch.float32)


def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    return (x * mask).sum() / mask.sum()


def _masked_means(mask: Tensor, prefix: str, **values: Tensor) -> dict[str, float]:
    """Masked means of several (B, T) tensors as floats, with one stack and one sync (metrics are
    computed on every call, so they must stay cheap next to the loss itself)."""
    stacked = torch.stack([v.float().expand_as(mask) for v in values.values()])
    means = ((stacked * mask).sum((1, 2)) / mask.sum()).tolist()
    return {f"{prefix}/{name}": val for name, val in zip(values, means)}


def _apply_weights(loss_mat: Tensor, weights: Tensor | None) -> Tensor:
    if weights is None:
        return loss_mat
    if weights.dim() == 1:
        weights = weights.unsqueeze(-1)
    return loss_mat * weights.to(loss_mat.dtype)


# --------------------------------------------------------------------------------------
# aggregation: the one place where token losses become a scalar
# --------------------------------------------------------------------------------------


def aggregate(
    loss_mat: Tensor,
    response_mask: Tensor,
    loss_agg_mode: str = "token-mean",
    *,
    loss_scale_factor: float | None = None,
    batch_num_tokens: float | None = None,
    global_batch_size: float | None = None,
    dp_size: int = 1,
) -> Tensor:
    """Reduce a (B, T) per-token loss to a scalar (verl's ``agg_loss``, baselines.md §1.3).

    With m the mask and N = sum(m):

    * ``token-mean``:              sum_it m*L / N                          (DAPO; TRL ``bnpo``)
    * ``seq-mean-token-mean``:     mean_i [ sum_t m*L / sum_t m ]          (original GRPO)
    * ``seq-mean-token-sum``:      mean_i [ sum_t m*L ]
    * ``seq-mean-token-sum-norm``: mean_i [ sum_t m*L ] / C,  C = loss_scale_factor or T  (Dr.GRPO)
    * ``token-sum``:               sum_it m*L

    Fully masked sequences are excluded from the sequence means. ``batch_num_tokens`` /
    ``global_batch_size`` / ``dp_size`` replace the local N / number of sequences under data
    parallelism, exactly as in verl >= 0.7 (``config.global_batch_info``).
    """
    _check_choice("loss_agg_mode", loss_agg_mode, AGG_MODES)
    m = _mask(response_mask)
    if loss_agg_mode == "token-mean":
        n = m.sum() if batch_num_tokens is None else batch_num_tokens
        return (loss_mat * m).sum() / n * dp_size
    if loss_agg_mode == "token-sum":
        return (loss_mat * m).sum() * dp_size
    tokens_per_seq = m.sum(-1)
    seq_valid = (tokens_per_seq > 0).to(loss_mat.dtype)
    n_seq = seq_valid.sum() if global_batch_size is None else global_batch_size
    seq_sum = (loss_mat * m).sum(-1)
    if loss_agg_mode == "seq-mean-token-mean":
        seq_loss = seq_sum / tokens_per_seq.clamp(min=1.0)
        return (seq_loss * seq_valid).sum() / n_seq * dp_size
    loss = (seq_sum * seq_valid).sum() / n_seq * dp_size
    if loss_agg_mode == "seq-mean-token-sum-norm":
        loss = loss / (loss_scale_factor if loss_scale_factor is not None else response_mask.shape[-1])
    return loss


# --------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------

LossFn = Callable[..., tuple[Tensor, dict[str, float]]]
LOSS_REGISTRY: dict[str, LossFn] = {}


def register_loss(name: str) -> Callable[[LossFn], LossFn]:
    """Decorator: register an objective under ``name`` (a duplicate name is an error)."""

    def deco(fn: LossFn) -> LossFn:
        if name in LOSS_REGISTRY:
            raise ValueError(f"objective {name!r} is already registered.")
        LOSS_REGISTRY[name] = fn
        return fn

    return deco


def get_loss(name: str) -> LossFn:
    """Return the registered objective ``name``; an unknown name raises ValueError listing the names."""
    try:
        return LOSS_REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown objective {name!r}; valid choices are {', '.join(LOSS_REGISTRY)}.") from None


def loss_hparams(name: str) -> dict[str, object]:
    """Keyword-only hyperparameters of objective ``name`` with their defaults (for config validation)."""
    import inspect

    sig = inspect.signature(get_loss(name))
    return {
        p.name: (None if p.default is inspect.Parameter.empty else p.default)
        for p in sig.parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


# --------------------------------------------------------------------------------------
# LAD
# --------------------------------------------------------------------------------------


def _sequence_sum(x: Tensor, mask: Tensor) -> Tensor:
    return (x * mask).sum(-1, keepdim=True)


@register_loss("lad")
def lad_loss(
    old_log_prob: Tensor,
    log_prob: Tensor,
    advantages: Tensor,
    response_mask: Tensor,
    loss_agg_mode: str = "token-mean",
    *,
    divergence: str = "js",
    eta: float = 1.0,
    level: str = "token",
    weights: Tensor | None = None,
    agg_kwargs: Mapping | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """LAD's practical objective (DESIGN.md §1; the paper's Eq. (8) per the SB3 port [D]).

        L = E_{y~pi_old}[ exp(A/eta) * f(u) ],   log u = (log pi_theta - log pi_old) - A/eta

    Its gradient with respect to log pi_theta is the weight ``r * f'(u)`` (the per-token
    autograd gradient before aggregation), which grows a high-advantage response only
    until r reaches exp(A/eta) and then pushes back. Everything is formed in log space:
    exp(A/eta) * f(u) is bounded by r * polylog(u) for every generator here, so it stays
    finite for |A/eta| <= 50 and log-ratios in [-20, 20] (no clamp is needed or applied).

    Args:
        old_log_prob, log_prob, advantages, response_mask: (B, T) tensors (see module doc).
        loss_agg_mode: how token losses become a scalar (:func:`aggregate`).
        divergence: generator f, one of ``lad_ref.divergences.DIVERGENCE_NAMES`` (paper's main: js).
        eta: temperature of the advantage-induced distribution P_A ∝ exp(A/eta); > 0.
        level: ``"token"``: r is the per-token ratio and A the token's advantage (a drop-in for
            verl's per-token PPO loss; the paper does not say which level its LLM code uses).
            ``"sequence"``: log r is the sum of the response's token log-ratios, A the mean of
            its token advantages; the sequence loss is written onto each valid token, so
            ``seq-mean-token-mean`` gives the plain mean over responses.
        weights: optional (B,) or (B, T) multiplier of the per-token loss.
        agg_kwargs: extra keyword arguments for :func:`aggregate`.

    Returns:
        (loss, metrics) with metrics ``lad/ratio_mean``, ``lad/weight_mean`` (mean r f'(u)),
        ``lad/weight_flip_frac`` (fraction of valid tokens whose descent direction -r f'(u) has
        the opposite sign of the policy-gradient weight A: over-confidence suppression at work),
        ``lad/log_u_mean``.
    """
    div = get_divergence(divergence)
    _check_positive("eta", eta)
    _check_choice("level", level, LEVELS)
    adv = _check_inputs(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode).float()
    m = _mask(response_mask)
    log_ratio = log_prob.float() - old_log_prob.float()
    a = adv / eta
    if level == "sequence":
        tokens = m.sum(-1, keepdim=True).clamp(min=1.0)
        log_ratio = _sequence_sum(log_ratio, m).expand_as(m)
        a = (_sequence_sum(a, m) / tokens).expand_as(m)
    log_u = log_ratio - a
    loss_mat = torch.exp(a) * div.f(log_u)
    loss = aggregate(_apply_weights(loss_mat, weights), response_mask, loss_agg_mode, **(agg_kwargs or {}))
    with torch.no_grad():
        ratio = torch.exp(log_ratio)
        w = ratio * div.f_prime(log_u)
        # LAD minimises, so descent raises log pi where -w > 0; policy gradient raises it where A > 0.
        flipped = ((-w) * adv < 0).float()
        metrics = _masked_means(m, "lad", ratio_mean=ratio, weight_mean=w, weight_flip_frac=flipped, log_u_mean=log_u)
    return loss, metrics


@register_loss("lad_theory")
def lad_theory_loss(
    old_log_prob: Tensor,
    log_prob: Tensor,
    advantages: Tensor,
    response_mask: Tensor,
    loss_agg_mode: str = "token-mean",
    *,
    divergence: str = "js",
    eta: float = 1.0,
    weights: Tensor | None = None,
    agg_kwargs: Mapping | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """LAD's theoretical objective D_f(P_pi || P_A) over a FINITE action space (lad_paper.md (a)2).

        P_pi(y) = (pi_theta(y)/pi_old(y)) / Z_pi,   P_A(y) = exp(A(y)/eta) / Z_A,
        L = sum_y P_A(y) * f( P_pi(y) / P_A(y) )

    Each unmasked row of the (B, T) tensors is one action y, and the rows together must
    enumerate the whole action space (B actions, T = 1 in the bandit): both normalisers are
    sums over them, which is why this objective cannot be used for an LLM. ``loss_agg_mode``
    is accepted for the common signature but unused (the divergence is a sum over actions),
    and ``weights`` must be None.
    """
    div = get_divergence(divergence)
    _check_positive("eta", eta)
    adv = _check_inputs(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode).float()
    if weights is not None:
        raise ValueError("lad_theory takes no weights: it sums over every action exactly.")
    valid = response_mask.bool()
    neg_inf = torch.tensor(-math.inf)
    log_p_pi = torch.where(valid, log_prob.float() - old_log_prob.float(), neg_inf).flatten()
    log_p_a = torch.where(valid, adv / eta, neg_inf).flatten()
    log_p_pi = log_p_pi - torch.logsumexp(log_p_pi, 0)
    log_p_a = log_p_a - torch.logsumexp(log_p_a, 0)
    keep = valid.flatten()
    p_a = torch.exp(log_p_a[keep])
    loss = (p_a * div.f(log_p_pi[keep] - log_p_a[keep])).sum()
    with torch.no_grad():
        tv = 0.5 * (torch.exp(log_p_pi[keep]) - p_a).abs().sum()
    return loss, {"lad_theory/tv_p_pi_p_a": tv.item()}


# --------------------------------------------------------------------------------------
# advantage-maximising baselines (baselines.md §1)
# --------------------------------------------------------------------------------------


def kl_penalty(log_prob: Tensor, ref_log_prob: Tensor, kind: str = "low_var_kl") -> Tensor:
    """Per-token KL(pi_theta || pi_ref) estimate, (B, T) (verl ``kl_penalty``).

    ``low_var_kl`` (k3, Schulman 2020): exp(ref - lp) - (ref - lp) - 1, with the input clamped
    to [-20, 20] and the output to [-10, 10] as verl does; ``kl`` (k1): lp - ref.
    """
    _check_choice("kl kind", kind, ("low_var_kl", "kl"))
    if kind == "kl":
        return log_prob.float() - ref_log_prob.float()
    d = (ref_log_prob.float() - log_prob.float()).clamp(-20.0, 20.0)
    return (torch.exp(d) - d - 1.0).clamp(-10.0, 10.0)


def _clipped_surrogate(
    log_ratio: Tensor, adv: Tensor, clip_ratio_low: float, clip_ratio_high: float, clip_ratio_c: float | None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """PPO-clip per-token loss with verl's dual clip; returns (loss, ratio, clipped, dual_clipped)."""
    ratio = torch.exp(log_ratio.clamp(-_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP))
    l1 = -adv * ratio
    l2 = -adv * ratio.clamp(1.0 - clip_ratio_low, 1.0 + clip_ratio_high)
    loss = torch.maximum(l1, l2)
    clipped = l2 > l1
    if clip_ratio_c is None:
        return loss, ratio, clipped, torch.zeros_like(clipped)
    l3 = -adv * clip_ratio_c
    dual = (adv < 0) & (loss > l3)
    return torch.where(adv < 0, torch.minimum(loss, l3), loss), ratio, clipped, dual


def _check_clip(clip_ratio_low: float, clip_ratio_high: float, clip_ratio_c: float | None) -> None:
    _check_positive("clip_ratio_low", clip_ratio_low)
    _check_positive("clip_ratio_high", clip_ratio_high)
    if clip_ratio_c is not None and not clip_ratio_c > 1.0:
        raise ValueError(f"clip_ratio_c must be > 1 (or None to disable dual-clip), got {clip_ratio_c!r}.")


@register_loss("grpo")
def grpo_loss(
    old_log_prob: Tensor,
    log_prob: Tensor,
    advantages: Tensor,
    response_mask: Tensor,
    loss_agg_mode: str = "token-mean",
    *,
    clip_ratio_low: float = 0.2,
    clip_ratio_high: float = 0.2,
    clip_ratio_c: float | None = 3.0,
    ref_log_prob: Tensor | None = None,
    kl_coef: float = 0.0,
    weights: Tensor | None = None,
    agg_kwargs: Mapping | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """GRPO / PPO clipped surrogate (verl ``vanilla``; baselines.md §1.2).

        L_t = max(-A r, -A clip(r, 1 - clip_ratio_low, 1 + clip_ratio_high))
        L_t = min(L_t, -A * clip_ratio_c)        where A < 0  (dual clip; None disables it)
        L_t += kl_coef * k3(pi_theta, pi_ref)    when ref_log_prob is given

    The log-ratio is clamped to [-20, 20] before exp, as verl does. Dr.GRPO and DAPO are this
    loss with ``seq-mean-token-sum-norm`` (and mean-only advantages) or ``token-mean`` with
    clip_ratio_high = 0.28, respectively.
    """
    _check_clip(clip_ratio_low, clip_ratio_high, clip_ratio_c)
    adv = _check_inputs(
        old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, ref_log_prob=ref_log_prob
    ).float()
    m = _mask(response_mask)
    log_ratio = log_prob.float() - old_log_prob.float()
    loss_mat, ratio, clipped, dual = _clipped_surrogate(log_ratio, adv, clip_ratio_low, clip_ratio_high, clip_ratio_c)
    metrics = {}
    if ref_log_prob is not None and kl_coef != 0.0:
        kl = kl_penalty(log_prob, ref_log_prob)
        loss_mat = loss_mat + kl_coef * kl
        metrics.update(_masked_means(m, "grpo", kl=kl.detach()))
    loss = aggregate(_apply_weights(loss_mat, weights), response_mask, loss_agg_mode, **(agg_kwargs or {}))
    with torch.no_grad():
        metrics.update(
            _masked_means(m, "grpo", ratio_mean=ratio, clipfrac=clipped, clipfrac_lower=dual, ppo_kl=-log_ratio)
        )
    return loss, metrics


@register_loss("entadv")
def entadv_loss(
    old_log_prob: Tensor,
    log_prob: Tensor,
    advantages: Tensor,
    response_mask: Tensor,
    loss_agg_mode: str = "token-mean",
    *,
    entropy: Tensor | None = None,
    alpha: float = 0.4,
    kappa: float = 2.0,
    clip_ratio_low: float = 0.2,
    clip_ratio_high: float = 0.2,
    clip_ratio_c: float | None = 3.0,
    weights: Tensor | None = None,
    agg_kwargs: Mapping | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """EntAdv: entropy-shaped advantage inside the clipped surrogate (Cheng et al. 2025; baselines.md §1.6).

        psi = min(alpha * H.detach(), |A| / kappa),   A' = A + psi,   then GRPO's clipped loss with A'.

    psi >= 0 and psi <= |A|/kappa with kappa > 1, so the sign of A is kept and A = 0 stays 0.
    ``entropy`` (B, T) is the full-vocabulary entropy of the current forward pass (as TRL's
    ``entropies`` and verl's ``model_output["entropy"]``). Defaults alpha = 0.4, kappa = 2 are
    the GRPO values of a public reimplementation; not re-checked against the paper.
    """
    if entropy is None:
        raise ValueError("entadv needs entropy=(B, T) tensor of per-token policy entropies; got None.")
    _check_clip(clip_ratio_low, clip_ratio_high, clip_ratio_c)
    _check_positive("alpha", alpha)
    if not kappa > 1.0:
        raise ValueError(f"kappa must be > 1 so that the shaped advantage keeps the sign of A, got {kappa!r}.")
    adv = _check_inputs(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, entropy=entropy).float()
    m = _mask(response_mask)
    psi = torch.minimum(alpha * entropy.detach().float(), adv.abs() / kappa)
    shaped = adv + psi
    log_ratio = log_prob.float() - old_log_prob.float()
    loss_mat, ratio, clipped, _ = _clipped_surrogate(log_ratio, shaped, clip_ratio_low, clip_ratio_high, clip_ratio_c)
    loss = aggregate(_apply_weights(loss_mat, weights), response_mask, loss_agg_mode, **(agg_kwargs or {}))
    with torch.no_grad():
        metrics = _masked_means(m, "entadv", psi_mean=psi, ratio_mean=ratio, clipfrac=clipped)
    return loss, metrics


def _token_covariance(adv: Tensor, log_prob: Tensor, m: Tensor) -> Tensor:
    """cov_t = (A_t - mean A) * (lp_t - mean lp), means over valid tokens, lp detached (verl)."""
    lp = log_prob.detach().float()
    return (adv - _masked_mean(adv, m)) * (lp - _masked_mean(lp, m))


@register_loss("kl_cov")
def kl_cov_loss(
    old_log_prob: Tensor,
    log_prob: Tensor,
    advantages: Tensor,
    response_mask: Tensor,
    loss_agg_mode: str = "token-mean",
    *,
    kl_cov_ratio: float = 0.0002,
    ppo_kl_coef: float = 0.1,
    weights: Tensor | None = None,
    agg_kwargs: Mapping | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """KL-Cov (Cui et al. 2025, verl ``kl_cov``; baselines.md §1.4). No ratio clipping at all.

        L_t = -A r                                     for every valid token, and
        L_t = -A r + ppo_kl_coef * |lp - lp_old|       for the top k = max(1, floor(N * kl_cov_ratio))
                                                       valid tokens by covariance (A - mean A)(lp - mean lp).

    As in verl, the ratio is not clamped and the covariance is taken over the tensors given
    (a micro-batch, in a data-parallel run). Default ppo_kl_coef = 0.1 is verl's config default.
    """
    _check_positive("kl_cov_ratio", kl_cov_ratio)
    adv = _check_inputs(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode).float()
    m = _mask(response_mask)
    log_ratio = log_prob.float() - old_log_prob.float()
    ratio = torch.exp(log_ratio)
    valid = response_mask.bool().flatten()
    cov = _token_covariance(adv, log_prob, m).flatten()
    valid_idx = torch.nonzero(valid, as_tuple=True)[0]
    k = max(1, int(valid_idx.numel() * kl_cov_ratio))
    top = valid_idx[torch.topk(cov[valid_idx], k).indices]
    penalised = torch.zeros_like(valid)
    penalised[top] = True
    penalised = penalised.view_as(log_ratio)
    loss_mat = -adv * ratio + torch.where(penalised, ppo_kl_coef * log_ratio.abs(), torch.zeros_like(ratio))
    loss = aggregate(_apply_weights(loss_mat, weights), response_mask, loss_agg_mode, **(agg_kwargs or {}))
    with torch.no_grad():
        metrics = _masked_means(
            m, "kl_cov", ratio_mean=ratio, penalised_frac=penalised, ppo_kl_abs=log_ratio.abs()
        )
    return loss, metrics


@register_loss("clip_cov")
def clip_cov_loss(
    old_log_prob: Tensor,
    log_prob: Tensor,
    advantages: Tensor,
    response_mask: Tensor,
    loss_agg_mode: str = "token-mean",
    *,
    clip_cov_ratio: float = 0.0002,
    clip_cov_lb: float = 1.0,
    clip_cov_ub: float = 5.0,
    clip_ratio_low: float = 0.2,
    clip_ratio_high: float = 0.2,
    generator: torch.Generator | None = None,
    weights: Tensor | None = None,
    agg_kwargs: Mapping | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Clip-Cov (Cui et al. 2025, verl ``clip_cov``; baselines.md §1.5).

    1. PPO clipped surrogate max(-A r, -A clip(r)) (no dual clip, ratio not clamped, as verl);
    2. cov_t = (A - mean A)(lp - mean lp) over valid tokens;
    3. candidates: valid tokens not already clipped by PPO with clip_cov_lb < cov < clip_cov_ub;
    4. n = max(1, floor(clip_cov_ratio * N)) candidates drawn uniformly at random (``generator``
       makes the draw reproducible) get their loss multiplied by 0: no gradient.
    """
    _check_positive("clip_cov_ratio", clip_cov_ratio)
    _check_clip(clip_ratio_low, clip_ratio_high, None)
    if not clip_cov_lb < clip_cov_ub:
        raise ValueError(f"clip_cov_lb must be < clip_cov_ub, got {clip_cov_lb!r} and {clip_cov_ub!r}.")
    adv = _check_inputs(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode).float()
    m = _mask(response_mask)
    ratio = torch.exp(log_prob.float() - old_log_prob.float())
    l1 = -adv * ratio
    l2 = -adv * ratio.clamp(1.0 - clip_ratio_low, 1.0 + clip_ratio_high)
    valid = response_mask.bool()
    clipped = (l2 > l1) & valid
    cov = _token_covariance(adv, log_prob, m)
    candidates = torch.nonzero(valid & ~clipped & (cov > clip_cov_lb) & (cov < clip_cov_ub))
    n = max(1, int(clip_cov_ratio * int(valid.sum())))
    keep = torch.ones_like(ratio)
    if len(candidates) > 0:
        chosen = candidates[torch.randperm(len(candidates), generator=generator)[:n]]
        keep[chosen[:, 0], chosen[:, 1]] = 0.0
    loss_mat = torch.maximum(l1, l2) * keep
    loss = aggregate(_apply_weights(loss_mat, weights), response_mask, loss_agg_mode, **(agg_kwargs or {}))
    with torch.no_grad():
        metrics = _masked_means(m, "clip_cov", ratio_mean=ratio, clipfrac=clipped, zeroed_frac=1.0 - keep)
    return loss, metrics


@register_loss("flowrl")
def flowrl_loss(
    old_log_prob: Tensor,
    log_prob: Tensor,
    advantages: Tensor,
    response_mask: Tensor,
    loss_agg_mode: str = "seq-mean-token-mean",
    *,
    log_z: Tensor | None = None,
    ref_log_prob: Tensor | None = None,
    beta: float = 15.0,
    is_weight_cap: float | None = 10.0,
    weights: Tensor | None = None,
    agg_kwargs: Mapping | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """FlowRL trajectory balance with a learned log Z (Zhu et al. 2025; baselines.md §1.7).

        delta_i = log Z(x_i) + mean_t lp_it - beta * mean_t A_it - mean_t lp_ref_it
        w_i     = min(exp(sum_t (lp_it - lp_old_it)), is_weight_cap), detached
        L_i     = w_i * delta_i^2

    Means and sums are over the response's valid tokens (log pi / |y|, as the recipe). The
    importance weight is capped as in the verl-recipe version (clamp(max=10)); the original
    repo's clip(1 - eps, 1 + eps) is computed but unused there. L_i is written onto each valid
    token, so the default ``seq-mean-token-mean`` gives FlowRL's plain batch mean. ``log_z`` (B,)
    carries the gradient into the log Z head; ``ref_log_prob`` (B, T) is pi_ref.
    """
    if log_z is None or ref_log_prob is None:
        raise ValueError("flowrl needs log_z=(B,) and ref_log_prob=(B, T) tensors; got None.")
    _check_positive("beta", beta)
    if is_weight_cap is not None:
        _check_positive("is_weight_cap", is_weight_cap)
    adv = _check_inputs(
        old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, ref_log_prob=ref_log_prob
    ).float()
    if log_z.shape not in ((log_prob.shape[0],), (log_prob.shape[0], 1)):
        raise ValueError(f"log_z must have shape ({log_prob.shape[0]},), got {tuple(log_z.shape)}.")
    m = _mask(response_mask)
    tokens = m.sum(-1).clamp(min=1.0)

    def mmean(x: Tensor) -> Tensor:
        return (x.float() * m).sum(-1) / tokens

    delta = log_z.float().flatten() + mmean(log_prob) - beta * mmean(adv) - mmean(ref_log_prob)
    with torch.no_grad():
        w = torch.exp(((log_prob.float() - old_log_prob.float()) * m).sum(-1).clamp(max=_LOG_RATIO_CLAMP))
        if is_weight_cap is not None:
            w = w.clamp(max=is_weight_cap)
    seq_loss = w * delta.square()
    loss_mat = seq_loss.unsqueeze(-1).expand_as(m)
    loss = aggregate(_apply_weights(loss_mat, weights), response_mask, loss_agg_mode, **(agg_kwargs or {}))
    with torch.no_grad():
        metrics = {
            "flowrl/delta_abs_mean": delta.abs().mean().item(),
            "flowrl/is_weight_mean": w.mean().item(),
            "flowrl/log_z_mean": log_z.float().mean().item(),
        }
    return loss, metrics


LOSS_NAMES: tuple[str, ...] = tuple(LOSS_REGISTRY)

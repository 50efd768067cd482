"""Every policy objective of lad_ref: one signature, one registry of specs, one aggregation.

All objectives follow verl's registered policy-loss convention (docs/design.md, "The loss signature")::

    loss, metrics = fn(old_log_prob, log_prob, advantages, response_mask,   # (B, T) each
                       loss_agg_mode="token-mean", *, hp=None, <extra inputs>,
                       weights=None, agg_kwargs=None, compute_metrics=True, check=True)

``hp`` is the objective's hyperparameter dataclass (:class:`LadHparams`, :class:`GrpoHparams`, ...),
built and validated once where the values enter (a config file, a command line, a TRL or verl
config, a method label) and passed as one object; None means its defaults. With ``check=True``
the loss checks that ``hp`` is an instance of its own dataclass (not a dict, not another
objective's), not its values again: the dataclass validated them when it was built.

``log_prob`` carries the gradient; ``old_log_prob`` is the behaviour policy pi_old that
sampled the responses; ``advantages`` is per token (a (B,) or (B, 1) tensor broadcasts);
``response_mask`` marks valid tokens: every objective SELECTS the valid positions
(``torch.where``) rather than multiplying by the mask, so whatever sits in padding (NaN, +-inf
included) changes neither the loss nor the gradient, and with ``check=True`` a non-finite log-prob
(or reference log-prob, entropy) where the mask is 1 is one clear error. ``weights`` (every objective) multiplies the per-token
loss before aggregation: verl's ``rollout_is_weights``, or the bandit's exact-expectation
weights pi_old(a). ``agg_kwargs`` is forwarded to :func:`aggregate` (verl's global-batch
normalisers). ``metrics`` is a dict of Python floats, empty with ``compute_metrics=False`` (hot
loops such as the bandit's skip them: they cost as much as the loss on small tensors).
``check=False`` skips the validation of hyperparameters and tensors, for a caller that validated
once and then calls the loss thousands of times with inputs of the same kind (the bandit).

Each objective is registered once as an :class:`ObjectiveSpec` (``register_objective``): the
loss function, a dataclass of its hyperparameters that validates itself, the extra inputs it
needs (:data:`EXTRA_INPUTS`), where it applies (:data:`SCOPES`) and its natural aggregation if it
has one. Trainers, the bandit, the TRL and verl adapters and the benchmarks ask the spec
(``get_objective(name).needs`` ...) instead of testing names, and get the extra inputs through
:func:`loss_inputs`. ``get_loss(name)`` returns the loss function itself. Losses are computed in
float32 whatever the input dtype.

Adding an objective (docs/design.md, "Adding an objective"): write the loss function, a
hyperparameter dataclass, and register both::

    @dataclass
    class MyHparams:
        tau: float = field(default=1.0, metadata={"help": "temperature; > 0."})
        def __post_init__(self):
            positive("tau", self.tau)

    @register_objective("mine", hparams=MyHparams, needs=("entropy",))
    def my_loss(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode="token-mean", *,
                hp=None, entropy=None, weights=None, agg_kwargs=None, compute_metrics=True, check=True):
        hp = use_hp(hp, MyHparams, check)
        ...

From then on the compact trainer has an ``objective.mine`` config section (``--objective.mine.tau``),
the TRL adapter a ``mine_tau`` field, and the bandits and the study accept the label ``mine(tau=2)``.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from lad_ref.checks import choice, greater, positive
from lad_ref.divergences import divergence_names, get_divergence

Tensor = torch.Tensor

AGG_MODES: tuple[str, ...] = (
    "token-mean",
    "seq-mean-token-mean",
    "seq-mean-token-sum",
    "seq-mean-token-sum-norm",
    "token-sum",
)
LEVELS: tuple[str, ...] = ("token", "sequence")

# verl clamps log-ratios to [-20, 20] before exp (core_algos.compute_policy_loss_vanilla); every
# objective here follows it, LAD included at both levels (its summed sequence log-ratio too), so
# that exp(.) never overflows. Beyond the clamp a token (or response) gets no gradient, as beyond
# PPO's clip.
LOG_RATIO_CLAMP = 20.0
#: Largest |A|/eta LAD accepts: exp(A/eta) * f(u) with |log u| <= 80 then stays below float32's
#: maximum (e^80 * 80 = 4.4e36 < 3.4e38); larger values are refused up front with one sentence.
MAX_ADV_OVER_ETA = 80.0


# --------------------------------------------------------------------------------------
# validation of the tensors: one clear sentence naming the bad value, before any work
# --------------------------------------------------------------------------------------


def _broadcast_advantages(advantages: Tensor, shape: torch.Size) -> Tensor:
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(-1)
    try:
        return advantages.expand(shape)
    except RuntimeError:
        raise ValueError(
            f"advantages has shape {tuple(advantages.shape)}, which does not broadcast to log_prob's "
            f"shape {tuple(shape)}; pass (B, T), (B, 1) or (B,)."
        ) from None


def _check_inputs(
    old_log_prob: Tensor,
    log_prob: Tensor,
    advantages: Tensor,
    response_mask: Tensor,
    loss_agg_mode: str,
    *,
    eta: float | None = None,
    max_adv_over_eta: float = MAX_ADV_OVER_ETA,
    **extra: Tensor | None,
) -> Tensor:
    """Validate the common arguments; return advantages broadcast to (B, T).

    Log-probs (and ``extra`` tensors) must be finite where ``response_mask`` is 1; padding may hold
    anything. With ``eta``, also refuse |A|/eta > ``max_adv_over_eta`` (exp(A/eta) would overflow
    float32; MAX_ADV_OVER_ETA, or a generator's tighter bound).
    """
    choice("loss_agg_mode", loss_agg_mode, AGG_MODES)
    if log_prob.dim() != 2:
        raise ValueError(f"log_prob must have shape (B, T), got shape {tuple(log_prob.shape)}.")
    shape = log_prob.shape
    for name, t in (("old_log_prob", old_log_prob), ("response_mask", response_mask)):
        if t.shape != shape:
            raise ValueError(
                f"{name} has shape {tuple(t.shape)} but log_prob has shape {tuple(shape)}; they must match."
            )
    advantages = _broadcast_advantages(advantages, shape)
    for name, t in extra.items():
        if t is not None and t.shape != shape:
            raise ValueError(f"{name} has shape {tuple(t.shape)} but log_prob has shape {tuple(shape)}; they must match.")
    if not bool(response_mask.any()):
        raise ValueError("response_mask is all zero: there is no valid token to compute a loss on.")
    valid = response_mask.bool()
    named = {"log_prob": log_prob, "old_log_prob": old_log_prob, **{k: v for k, v in extra.items() if v is not None}}
    with torch.no_grad():
        # one stack, one sync: max |A| (NaN propagates through max) and, per tensor, any non-finite valid entry
        flags = torch.stack(
            [advantages.detach().abs().max().float()]
            + [(~torch.isfinite(t.detach()) & valid).any().float() for t in named.values()]
        ).tolist()
    worst = flags[0]
    if not math.isfinite(worst):
        raise ValueError("advantages contain NaN or inf; every advantage must be a finite number.")
    for name, bad in zip(named, flags[1:]):
        if bad:
            raise ValueError(
                f"{name} contains NaN or inf where response_mask is 1; every valid token's value must be finite "
                "(padding may hold anything)."
            )
    if eta is not None and worst / eta > max_adv_over_eta:
        raise ValueError(
            f"max |advantage| / eta = {worst / eta:.4g} exceeds {max_adv_over_eta:g}: exp(A/eta) would overflow "
            f"float32; raise eta (now {eta!r}) or scale the advantages down."
        )
    return advantages


def _mask(response_mask: Tensor) -> Tensor:
    return response_mask.to(torch.float32)


def _select(response_mask: Tensor, *tensors: Tensor | None) -> list[Tensor | None]:
    """Each tensor with its padding (response_mask == 0) replaced by 0, by selection: NaN or inf
    there cannot reach the loss or, through the backward of ``where``, the gradient."""
    valid = response_mask.bool()
    return [None if t is None else torch.where(valid, t, 0.0) for t in tensors]


def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    return (x * mask).sum() / mask.sum()


def _masked_means(mask: Tensor, prefix: str, **values: Tensor) -> dict[str, float]:
    """Masked means of several (B, T) tensors as floats, with one stack and one sync."""
    stacked = torch.stack([v.float().expand_as(mask) for v in values.values()])
    means = ((stacked * mask).sum((1, 2)) / mask.sum()).tolist()
    return {f"{prefix}/{name}": val for name, val in zip(values, means)}


def _apply_weights(loss_mat: Tensor, weights: Tensor | None) -> Tensor:
    if weights is None:
        return loss_mat
    if weights.dim() == 1:
        weights = weights.unsqueeze(-1)
    return loss_mat * weights.to(loss_mat.dtype)


def _select_loss(loss_mat: Tensor, response_mask: Tensor) -> Tensor:
    # selection, not m * L: a NaN / inf in padding (e.g. from weights) must not reach the sum
    return torch.where(response_mask.bool(), loss_mat, 0.0)


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
    """Reduce a (B, T) per-token loss to a scalar (verl's ``agg_loss``; docs/research/baselines.md §1.3).

    With m the mask and N = sum(m):

    * ``token-mean``:              sum_it m*L / N                          (DAPO; TRL ``bnpo``)
    * ``seq-mean-token-mean``:     mean_i [ sum_t m*L / sum_t m ]          (original GRPO)
    * ``seq-mean-token-sum``:      mean_i [ sum_t m*L ]
    * ``seq-mean-token-sum-norm``: mean_i [ sum_t m*L ] / C,  C = loss_scale_factor or T  (Dr.GRPO)
    * ``token-sum``:               sum_it m*L

    Padding is selected out (``torch.where``), not multiplied by 0, so a NaN or inf there does not
    reach the result. Fully masked sequences are excluded from the sequence means. ``batch_num_tokens`` /
    ``global_batch_size`` / ``dp_size`` replace the local N / number of sequences under data
    parallelism, exactly as in verl >= 0.7 (``config.global_batch_info``).
    """
    choice("loss_agg_mode", loss_agg_mode, AGG_MODES)
    m = _mask(response_mask)
    selected = _select_loss(loss_mat, response_mask)
    if loss_agg_mode == "token-mean":
        n = m.sum() if batch_num_tokens is None else batch_num_tokens
        loss = selected.sum() / n
        return loss * dp_size if dp_size != 1 else loss
    if loss_agg_mode == "token-sum":
        loss = selected.sum()
        return loss * dp_size if dp_size != 1 else loss
    tokens_per_seq = m.sum(-1)
    seq_valid = (tokens_per_seq > 0).to(loss_mat.dtype)
    n_seq = seq_valid.sum() if global_batch_size is None else global_batch_size
    seq_sum = selected.sum(-1)
    if loss_agg_mode == "seq-mean-token-mean":
        seq_loss = seq_sum / tokens_per_seq.clamp(min=1.0)
        return (seq_loss * seq_valid).sum() / n_seq * dp_size
    loss = (seq_sum * seq_valid).sum() / n_seq * dp_size
    if loss_agg_mode == "seq-mean-token-sum-norm":
        loss = loss / (loss_scale_factor if loss_scale_factor is not None else response_mask.shape[-1])
    return loss


# --------------------------------------------------------------------------------------
# the registry of objective specs
# --------------------------------------------------------------------------------------

LossFn = Callable[..., tuple[Tensor, dict[str, float]]]

#: Inputs beyond the common four that an objective may need; the caller supplies them.
EXTRA_INPUTS: dict[str, str] = {
    "entropy": "(B, T) full-vocabulary entropy of the current policy at each token (no gradient needed)",
    "ref_log_prob": "(B, T) log-probs of the sampled tokens under the reference policy pi_ref",
    "log_z": "(B,) learned log-partition log Z(x) of each row's prompt; carries a gradient",
    "generator": "a torch.Generator for the objective's random choices (reproducibility)",
}
#: Where an objective applies: ``any`` batch of sampled responses (LLM trainers, the bandit), or
#: ``finite`` action spaces only, whose rows must enumerate every action (the bandit's exact mode).
SCOPES: tuple[str, ...] = ("any", "finite")
# Keyword arguments every loss takes besides its extra inputs.
_PLUMBING = ("hp", "weights", "agg_kwargs", "compute_metrics", "check")


def use_hp(hp: Any, hparams: type, check: bool = True) -> Any:
    """The hyperparameter object a loss works with: ``hp``, or ``hparams()`` (the defaults) for None.

    With ``check`` a value that is not exactly an ``hparams`` instance raises TypeError (a dict, or
    another objective's dataclass whose extra fields would be ignored silently). Values are not
    validated again: the dataclass did that when it was built.
    """
    if hp is None:
        return hparams()
    if check and type(hp) is not hparams:
        raise TypeError(
            f"hp must be a {hparams.__name__}, got {type(hp).__name__}; build it once, e.g. "
            f"get_objective(name).make_hparams({{...}}) or {hparams.__name__}(...)."
        )
    return hp


def loss_inputs(spec: ObjectiveSpec, providers: Mapping[str, Callable[[], Any]], supplier: str) -> dict[str, Any]:
    """The extra inputs objective ``spec`` needs, each made by its provider (called only if needed).

    ``providers`` maps names of :data:`EXTRA_INPUTS` to zero-argument functions; a need without a
    provider raises ValueError naming it, ``supplier`` (e.g. "the TRL adapter") and what it supplies.
    Every caller (the compact trainer, the bandits, the TRL adapter) gets its inputs here.
    """
    if not spec.needs:  # the common case, in the bandit's hot loop too
        return {}
    missing = sorted(spec.needs - providers.keys())
    if missing:
        raise ValueError(
            f"objective {spec.name!r} needs {', '.join(missing)}, which {supplier} does not supply "
            f"(it supplies {', '.join(sorted(providers)) or 'no extra inputs'})."
        )
    return {need: providers[need]() for need in sorted(spec.needs)}


@dataclass(frozen=True)
class ObjectiveSpec:
    """Everything a caller needs to know about an objective, so that no caller tests its name.

    Attributes:
        name: registry key.
        loss: the loss function (the module's signature).
        hparams: dataclass of the keyword-only hyperparameters; constructing it validates them.
        needs: extra inputs the caller must pass (keys of :data:`EXTRA_INPUTS`).
        scope: one of :data:`SCOPES`.
        loss_agg_mode: the aggregation the objective defines for itself (FlowRL: a mean over
            sequences), which callers use instead of their configured one; None = the caller's.
        anchored: the minimiser is a distribution anchored to the behaviour policy,
            pi_old * exp(A/eta) / Z (LAD), rather than the argmax of A: the bandit keeps pi_old
            fixed for these (so the optimum is its target) and runs the others on-policy.
        temperature: maps a target temperature eta to this objective's hyperparameters so that its
            optimum is the distribution pi ∝ pi_0 exp(A/eta) (LAD: eta itself; FlowRL: beta = 1/eta);
            None = the objective maximises A and has no target distribution.
    """

    name: str
    loss: LossFn
    hparams: type
    needs: frozenset[str] = frozenset()
    scope: str = "any"
    loss_agg_mode: str | None = None
    anchored: bool = False
    temperature: Callable[[float], dict[str, Any]] | None = None

    @property
    def hparam_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.hparams))

    def defaults(self) -> dict[str, Any]:
        """The hyperparameters' defaults, as a dict."""
        return dataclasses.asdict(self.hparams())

    def make_hparams(self, values: Mapping[str, Any] | None = None, where: str = ""):
        """A validated hyperparameter instance from ``values`` (defaults for missing keys).

        An unknown key raises ValueError listing the valid ones; ``where`` prefixes the names
        in the message (e.g. ``"objective.lad."``).
        """
        values = dict(values or {})
        for key in values:
            if key not in self.hparam_names:
                raise ValueError(
                    f"unknown hyperparameter {f'{where}{key}' if where else repr(key)} for objective {self.name!r}; "
                    "valid choices are "
                    f"{', '.join(self.hparam_names) or '(none)'}."
                )
        try:
            return self.hparams(**values)
        except (TypeError, ValueError) as e:  # a value of the wrong type reaching a comparison, or a bad value
            raise ValueError(f"{where.rstrip('.') or f'objective {self.name!r}'}: {e}") from None

    def aggregation(self, requested: str) -> str:
        """The aggregation to use: the objective's own if it defines one, else ``requested``."""
        return self.loss_agg_mode or requested


OBJECTIVES: dict[str, ObjectiveSpec] = {}


def register_objective(
    name: str,
    *,
    hparams: type,
    needs: Iterable[str] = (),
    scope: str = "any",
    loss_agg_mode: str | None = None,
    anchored: bool = False,
    temperature: Callable[[float], dict[str, Any]] | None = None,
) -> Callable[[LossFn], LossFn]:
    """Decorator: register a loss function and its spec under ``name``.

    Checked here, once: the name is new; ``hparams`` is a dataclass whose every field has a
    default that validates; the function takes ``hp`` and every need as keyword-only arguments
    (the defaults live in the dataclass only).
    """
    needs = frozenset(needs)
    choice("scope", scope, SCOPES)
    if loss_agg_mode is not None:
        choice("loss_agg_mode", loss_agg_mode, AGG_MODES)
    for need in needs:
        choice("extra input", need, EXTRA_INPUTS)
    if not dataclasses.is_dataclass(hparams):
        raise TypeError(f"objective {name!r}: hparams must be a dataclass, got {hparams!r}.")

    def deco(fn: LossFn) -> LossFn:
        if name in OBJECTIVES:
            raise ValueError(f"objective {name!r} is already registered.")
        params = inspect.signature(fn).parameters
        try:
            hparams()  # every field has a default, and the defaults validate
        except (TypeError, ValueError) as e:
            raise TypeError(f"objective {name!r}: {hparams.__name__}() must build from its defaults: {e}") from None
        for key in (*needs, *_PLUMBING):
            p = params.get(key)
            if p is None or p.kind is not inspect.Parameter.KEYWORD_ONLY:
                raise TypeError(f"objective {name!r}: {fn.__name__} must take keyword-only argument {key!r}.")
        if params["hp"].default is not None:
            raise TypeError(f"objective {name!r}: {fn.__name__}'s hp must default to None (the dataclass's defaults).")
        OBJECTIVES[name] = ObjectiveSpec(
            name, fn, hparams, needs, scope, loss_agg_mode, anchored, temperature
        )
        return fn

    return deco


def unregister_objective(name: str) -> None:
    """Remove ``name`` from the registry (for tests that register a temporary objective)."""
    OBJECTIVES.pop(name, None)


def objective_names(scope: str | None = None) -> tuple[str, ...]:
    """Registered objective names, optionally only those of one scope (``any`` for sampled batches)."""
    return tuple(n for n, s in OBJECTIVES.items() if scope is None or s.scope == scope)


def get_objective(name: str) -> ObjectiveSpec:
    """The spec of objective ``name``; an unknown name raises ValueError listing the names."""
    try:
        return OBJECTIVES[name]
    except (KeyError, TypeError):
        choice("objective", name, OBJECTIVES)
        raise


def get_loss(name: str) -> LossFn:
    """Return the loss function of objective ``name`` (``get_objective(name).loss``)."""
    return get_objective(name).loss


# --------------------------------------------------------------------------------------
# hyperparameter dataclasses (plain, typed, nestable; every field documented; self-validating)
# --------------------------------------------------------------------------------------


@dataclass
class LadTheoryHparams:
    """Hyperparameters of LAD's theoretical objective (and the base of :class:`LadHparams`)."""

    divergence: str = field(
        default="js",
        metadata={
            "help": "Generator f of the f-divergence: a registered name (lad_ref.divergences: js, the paper's "
            "main choice, kl, rkl, jf, tv, hd, neyman, and any registered later)."
        },
    )
    eta: float = field(
        default=1.0,
        metadata={"help": "Temperature of the advantage-induced distribution P_A ∝ exp(A/eta); > 0."},
    )

    def __post_init__(self):
        choice("divergence", self.divergence, divergence_names())
        positive("eta", self.eta)


@dataclass
class LadHparams(LadTheoryHparams):
    """Hyperparameters of LAD's practical objective."""

    level: str = field(
        default="token",
        metadata={
            "help": "token: per-token ratio and advantage (a drop-in for per-token PPO losses); sequence: "
            "log r is the response's summed token log-ratio and A its mean advantage."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        choice("level", self.level, LEVELS)


@dataclass
class ClipHparams:
    """PPO's ratio clip range [1 - clip_ratio_low, 1 + clip_ratio_high]."""

    clip_ratio_low: float = field(default=0.2, metadata={"help": "Lower clip epsilon; > 0."})
    clip_ratio_high: float = field(default=0.2, metadata={"help": "Upper clip epsilon (DAPO: 0.28); > 0."})

    def __post_init__(self):
        positive("clip_ratio_low", self.clip_ratio_low)
        positive("clip_ratio_high", self.clip_ratio_high)


@dataclass
class GrpoHparams(ClipHparams):
    """Hyperparameters of the GRPO / PPO clipped surrogate."""

    clip_ratio_c: float | None = field(
        default=3.0,
        metadata={"help": "Dual-clip constant c > 1 bounding negative-advantage losses at -A*c; None disables it."},
    )

    def __post_init__(self):
        super().__post_init__()
        greater("clip_ratio_c", self.clip_ratio_c, 1.0, "(None disables the dual clip)", allow_none=True)


@dataclass
class PpoPenaltyHparams(GrpoHparams):
    """Hyperparameters of the PPO-penalty baseline (the clip fields are GRPO's)."""

    beta: float = field(default=0.1, metadata={"help": "Coefficient of the KL penalty to pi_old; >= 0."})
    kl_estimator: str = field(
        default="k3",
        metadata={"help": "KL estimator (verl's kl_penalty names): k3 = low_var_kl (default), k1 = kl, k2 = mse."},
    )
    tied_only: bool = field(
        default=False,
        metadata={"help": "Penalise only tokens with advantage exactly 0 (with group-normalised binary rewards: "
                  "the responses of tied groups)."},
    )

    def __post_init__(self):
        super().__post_init__()
        positive("beta", self.beta, allow_zero=True)
        choice("kl_estimator", self.kl_estimator, KL_ESTIMATORS)
        if not isinstance(self.tied_only, bool):
            raise ValueError(f"tied_only must be true or false, got {self.tied_only!r}.")


@dataclass
class EntAdvHparams(GrpoHparams):
    """Hyperparameters of EntAdv (the clip fields are GRPO's)."""

    alpha: float = field(default=0.4, metadata={"help": "Entropy scale alpha in psi = min(alpha * H, |A| / kappa); > 0."})
    kappa: float = field(default=2.0, metadata={"help": "kappa > 1 caps psi at |A| / kappa so the sign of A is kept."})

    def __post_init__(self):
        super().__post_init__()
        positive("alpha", self.alpha)
        greater("kappa", self.kappa, 1.0, "so that the shaped advantage keeps the sign of A")


@dataclass
class KlCovHparams:
    """Hyperparameters of KL-Cov (verl's names)."""

    kl_cov_ratio: float = field(
        default=0.0002, metadata={"help": "Fraction of valid tokens, those of largest covariance, penalised; > 0."}
    )
    ppo_kl_coef: float = field(default=0.1, metadata={"help": "Coefficient of the |log pi - log pi_old| penalty; >= 0."})

    def __post_init__(self):
        positive("kl_cov_ratio", self.kl_cov_ratio)
        positive("ppo_kl_coef", self.ppo_kl_coef, allow_zero=True)


@dataclass
class ClipCovHparams(ClipHparams):
    """Hyperparameters of Clip-Cov (verl's names; the clip fields are PPO's)."""

    clip_cov_ratio: float = field(default=0.0002, metadata={"help": "Fraction of valid tokens whose loss is zeroed; > 0."})
    clip_cov_lb: float = field(default=1.0, metadata={"help": "Lower covariance bound of the tokens eligible for zeroing."})
    clip_cov_ub: float = field(default=5.0, metadata={"help": "Upper covariance bound (> clip_cov_lb)."})

    def __post_init__(self):
        super().__post_init__()
        positive("clip_cov_ratio", self.clip_cov_ratio)
        greater("clip_cov_ub", self.clip_cov_ub, self.clip_cov_lb, "(clip_cov_lb)")


@dataclass
class FlowRLHparams:
    """Hyperparameters of FlowRL."""

    beta: float = field(default=15.0, metadata={"help": "Reward scale beta of the target pi ∝ pi_ref exp(beta A); > 0."})
    is_weight_cap: float | None = field(
        default=10.0, metadata={"help": "Upper cap of the sequence importance weight; None = uncapped."}
    )

    def __post_init__(self):
        positive("beta", self.beta)
        positive("is_weight_cap", self.is_weight_cap, allow_none=True)


# --------------------------------------------------------------------------------------
# LAD
# --------------------------------------------------------------------------------------


def _sequence_sum(x: Tensor, mask: Tensor) -> Tensor:
    return (x * mask).sum(-1, keepdim=True)


@register_objective("lad", hparams=LadHparams, anchored=True, temperature=lambda eta: {"eta": eta})
def lad_loss(
    old_log_prob: Tensor,
    log_prob: Tensor,
    advantages: Tensor,
    response_mask: Tensor,
    loss_agg_mode: str = "token-mean",
    *,
    hp: LadHparams | None = None,
    weights: Tensor | None = None,
    agg_kwargs: Mapping | None = None,
    compute_metrics: bool = True,
    check: bool = True,
) -> tuple[Tensor, dict[str, float]]:
    """LAD's practical objective (docs/design.md, "The method"; the paper's Eq. (8)).

        L = E_{y~pi_old}[ exp(A/eta) * f(u) ],   log u = (log pi_theta - log pi_old) - A/eta

    Its gradient with respect to log pi_theta is the weight ``w = r * f'(u)`` (the per-token
    gradient before aggregation; descent moves log pi by -w). At r = 1 it is a transformed
    advantage. Where the weight changes sign depends on f'(u) = 0: at r = exp(A/eta) for the
    generators with f'(1) = 0 (jf, tv, hd, js), so that a high-advantage response is grown only
    until r reaches exp(A/eta) and then pushed back; at r = exp(A/eta - 1) for kl; never for rkl
    (-1/u < 0: weighted maximum likelihood). A linear term c(u - 1) added to f would move that
    point without changing the divergence or the minimiser. On a softmax the expected logit
    gradient is pi(y)[f'(u_y) - E_pi f'(u)], so the brake acts relative to the other responses.

    Numerics (docs/design.md, "Numerics"): the log-ratio is clamped to [-20, 20] (per token, or
    the summed log-ratio of a response at the sequence level) and log u to [-80, 80], with zero
    gradient beyond, as beyond PPO's clip; max |A|/eta must be <= MAX_ADV_OVER_ETA = 80 (checked
    up front). Inside that range exp(A/eta) * f(u) and its gradient are finite in float32, and the
    gradient is computed from f' (``Divergence.scaled``), exact to float32 rounding. (neyman has
    tighter bounds: |log u| <= 55 and |A|/eta <= 30; see lad_ref.divergences.)

    Args:
        old_log_prob, log_prob, advantages, response_mask: (B, T) tensors (see module doc).
        loss_agg_mode: how token losses become a scalar (:func:`aggregate`).
        hp: a :class:`LadHparams` (None: its defaults). ``level="sequence"``: log r is the sum of
            the response's token log-ratios, A the mean of its token advantages; the sequence loss
            is written onto each valid token, so ``seq-mean-token-mean`` gives the plain mean over
            responses. (The paper does not say which level its LLM code uses.)
        weights: optional (B,) or (B, T) multiplier of the per-token loss.
        agg_kwargs: extra keyword arguments for :func:`aggregate`.
        compute_metrics, check: see the module doc.

    Returns:
        (loss, metrics) with metrics ``lad/ratio_mean``, ``lad/weight_mean`` (mean r f'(u)),
        ``lad/weight_flip_frac`` (fraction of valid tokens whose descent direction -r f'(u) has
        the opposite sign of the policy-gradient weight A: over-confidence suppression at work),
        ``lad/log_u_mean``.
    """
    hp = use_hp(hp, LadHparams, check)
    div = get_divergence(hp.divergence)
    if check:
        adv = _check_inputs(
            old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, eta=hp.eta,
            max_adv_over_eta=div.max_adv_over_eta,
        ).float()
    else:
        adv = _broadcast_advantages(advantages, log_prob.shape).float()
    adv, old_log_prob, log_prob = _select(response_mask, adv, old_log_prob, log_prob)
    log_ratio = log_prob.float() - old_log_prob.float()
    a = adv / hp.eta
    if hp.level == "sequence":
        m = _mask(response_mask)
        tokens = m.sum(-1, keepdim=True).clamp(min=1.0)
        log_ratio = _sequence_sum(log_ratio, m)
        a = _sequence_sum(a, m) / tokens
    log_ratio = log_ratio.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    log_u = log_ratio - a
    loss_mat = div.scaled(log_u, a).expand(response_mask.shape)
    loss = aggregate(_apply_weights(loss_mat, weights), response_mask, loss_agg_mode, **(agg_kwargs or {}))
    if not compute_metrics:
        return loss, {}
    m = _mask(response_mask)
    with torch.no_grad():
        log_u = log_u.detach()
        ratio = torch.exp(log_ratio.detach())
        # the weight the gradient uses: f' at log u clamped as in Divergence.scaled (finite everywhere)
        w = div.weight(log_ratio.detach(), log_u.clamp(-div.log_u_max, div.log_u_max))
        # LAD minimises, so descent raises log pi where -w > 0; policy gradient raises it where A > 0.
        flipped = ((-w) * adv < 0).float()
        metrics = _masked_means(m, "lad", ratio_mean=ratio, weight_mean=w, weight_flip_frac=flipped, log_u_mean=log_u)
    return loss, metrics


@register_objective(
    "lad_theory", hparams=LadTheoryHparams, scope="finite", anchored=True,
    temperature=lambda eta: {"eta": eta},
)
def lad_theory_loss(
    old_log_prob: Tensor,
    log_prob: Tensor,
    advantages: Tensor,
    response_mask: Tensor,
    loss_agg_mode: str = "token-mean",
    *,
    hp: LadTheoryHparams | None = None,
    weights: Tensor | None = None,
    agg_kwargs: Mapping | None = None,
    compute_metrics: bool = True,
    check: bool = True,
) -> tuple[Tensor, dict[str, float]]:
    """LAD's theoretical objective D_f(P_pi || P_A) over a FINITE action space (docs/research/paper.md §1).

        P_pi(y) = (pi_theta(y)/pi_old(y)) / Z_pi,   P_A(y) = exp(A(y)/eta) / Z_A,
        L = sum_y P_A(y) * f( P_pi(y) / P_A(y) )

    Each unmasked row of the (B, T) tensors is one action y, and the rows together must
    enumerate the whole action space (B actions, T = 1 in the bandit): both normalisers are
    sums over them, which is why this objective cannot be used for an LLM (scope ``finite``).
    ``loss_agg_mode`` and ``agg_kwargs`` are accepted for the common signature but unused (the
    divergence is a sum over actions), and ``weights`` must be None: the sum is exact whatever
    pi_old is. The gradient comes from f' (``Divergence.scaled``), as LAD's.
    """
    hp = use_hp(hp, LadTheoryHparams, check)
    div = get_divergence(hp.divergence)
    if check:
        adv = _check_inputs(
            old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, eta=hp.eta,
            max_adv_over_eta=div.max_adv_over_eta,
        ).float()
        if weights is not None:
            raise ValueError("lad_theory takes no weights: it sums over every action exactly.")
    else:
        adv = _broadcast_advantages(advantages, log_prob.shape).float()
    adv, old_log_prob, log_prob = _select(response_mask, adv, old_log_prob, log_prob)
    valid = response_mask.bool().flatten()
    neg_inf = torch.tensor(-math.inf)
    log_p_pi = torch.where(valid, (log_prob.float() - old_log_prob.float()).flatten(), neg_inf)
    log_p_a = torch.where(valid, adv.flatten() / hp.eta, neg_inf)
    log_p_pi = log_p_pi - torch.logsumexp(log_p_pi, 0)
    log_p_a = log_p_a - torch.logsumexp(log_p_a, 0)
    # masked actions: log u = 0 and scale exp(-inf) = 0 contribute exactly 0 (no boolean indexing)
    log_u = torch.where(valid, log_p_pi - log_p_a, 0.0)
    loss = div.scaled(log_u, log_p_a).sum()
    if not compute_metrics:
        return loss, {}
    with torch.no_grad():
        tv = 0.5 * (torch.exp(log_p_pi) - torch.exp(log_p_a)).abs().sum()
    return loss, {"lad_theory/tv_p_pi_p_a": tv.item()}


# --------------------------------------------------------------------------------------
# advantage-maximising baselines (docs/research/baselines.md)
# --------------------------------------------------------------------------------------


#: verl's names of the KL estimators (``kl_penalty_forward``), each with its k-name alias.
KL_ESTIMATORS: dict[str, str] = {"kl": "k1", "k1": "k1", "mse": "k2", "k2": "k2", "low_var_kl": "k3", "k3": "k3"}


def kl_penalty(log_prob: Tensor, ref_log_prob: Tensor, kind: str = "low_var_kl") -> Tensor:
    """Per-token KL(pi_theta || pi_ref) estimate, (B, T) (verl ``kl_penalty_forward``; Schulman 2020).

    With x = lp - ref:

    * ``kl`` / ``k1``: x                                          (gradient w.r.t. lp: 1)
    * ``mse`` / ``k2``: x^2 / 2                                   (gradient: x)
    * ``low_var_kl`` / ``k3``: exp(-x) + x - 1, the input clamped to [-20, 20] and the output to
      [-10, 10] as verl does                                      (gradient: 1 - exp(-x))

    The trainers add ``kl_coef * aggregate(kl_penalty(...))`` to any objective's loss (a KL to the
    reference model), outside the objective; :func:`ppo_penalty_loss` uses the same function with
    pi_ref := pi_old.
    """
    choice("kl kind", kind, KL_ESTIMATORS)
    k = KL_ESTIMATORS[kind]
    if k == "k1":
        return log_prob.float() - ref_log_prob.float()
    if k == "k2":
        return 0.5 * (log_prob.float() - ref_log_prob.float()).square()
    d = (ref_log_prob.float() - log_prob.float()).clamp(-20.0, 20.0)
    return (torch.exp(d) - d - 1.0).clamp(-10.0, 10.0)


def _clipped_surrogate(
    log_ratio: Tensor, adv: Tensor, clip_ratio_low: float, clip_ratio_high: float, clip_ratio_c: float | None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """PPO-clip per-token loss with verl's dual clip; returns (loss, ratio, clipped, dual_clipped)."""
    ratio = torch.exp(log_ratio.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP))
    l1 = -adv * ratio
    l2 = -adv * ratio.clamp(1.0 - clip_ratio_low, 1.0 + clip_ratio_high)
    loss = torch.maximum(l1, l2)
    clipped = l2 > l1
    if clip_ratio_c is None:
        return loss, ratio, clipped, torch.zeros_like(clipped)
    l3 = -adv * clip_ratio_c
    dual = (adv < 0) & (loss > l3)
    return torch.where(adv < 0, torch.minimum(loss, l3), loss), ratio, clipped, dual


def _prepare(check: bool, old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, **extra):
    """Validate (when ``check``); return (advantages, old_log_prob, log_prob, *extra values), padding selected out.

    The advantages come back float32 and broadcast to (B, T); every tensor has 0 in its padding
    (:func:`_select`), so nothing there reaches the loss or the gradient.
    """
    if check:
        adv = _check_inputs(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, **extra).float()
    else:
        adv = _broadcast_advantages(advantages, log_prob.shape).float()
    return _select(response_mask, adv, old_log_prob, log_prob, *extra.values())


@register_objective("grpo", hparams=GrpoHparams)
def grpo_loss(
    old_log_prob: Tensor,
    log_prob: Tensor,
    advantages: Tensor,
    response_mask: Tensor,
    loss_agg_mode: str = "token-mean",
    *,
    hp: GrpoHparams | None = None,
    weights: Tensor | None = None,
    agg_kwargs: Mapping | None = None,
    compute_metrics: bool = True,
    check: bool = True,
) -> tuple[Tensor, dict[str, float]]:
    """GRPO / PPO clipped surrogate (verl ``vanilla``; docs/research/baselines.md §1.2).

        L_t = max(-A r, -A clip(r, 1 - clip_ratio_low, 1 + clip_ratio_high))
        L_t = min(L_t, -A * clip_ratio_c)        where A < 0  (dual clip; None disables it)

    The log-ratio is clamped to [-20, 20] before exp, as verl does. Dr.GRPO and DAPO are this
    loss with ``seq-mean-token-sum-norm`` (and mean-only advantages) or ``token-mean`` with
    clip_ratio_high = 0.28, respectively. A KL-to-reference term is the trainer's business
    (:func:`kl_penalty`), added outside every objective alike.
    """
    hp = use_hp(hp, GrpoHparams, check)
    adv, old_log_prob, log_prob = _prepare(check, old_log_prob, log_prob, advantages, response_mask, loss_agg_mode)
    log_ratio = log_prob.float() - old_log_prob.float()
    loss_mat, ratio, clipped, dual = _clipped_surrogate(
        log_ratio, adv, hp.clip_ratio_low, hp.clip_ratio_high, hp.clip_ratio_c)
    loss = aggregate(_apply_weights(loss_mat, weights), response_mask, loss_agg_mode, **(agg_kwargs or {}))
    if not compute_metrics:
        return loss, {}
    with torch.no_grad():
        metrics = _masked_means(
            _mask(response_mask), "grpo", ratio_mean=ratio, clipfrac=clipped, clipfrac_lower=dual, ppo_kl=-log_ratio
        )
    return loss, metrics


@register_objective("entadv", hparams=EntAdvHparams, needs=("entropy",))
def entadv_loss(
    old_log_prob: Tensor,
    log_prob: Tensor,
    advantages: Tensor,
    response_mask: Tensor,
    loss_agg_mode: str = "token-mean",
    *,
    hp: EntAdvHparams | None = None,
    entropy: Tensor | None = None,
    weights: Tensor | None = None,
    agg_kwargs: Mapping | None = None,
    compute_metrics: bool = True,
    check: bool = True,
) -> tuple[Tensor, dict[str, float]]:
    """EntAdv: entropy-shaped advantage inside the clipped surrogate (Cheng et al. 2025; docs/research/baselines.md §1.6).

        psi = min(alpha * H.detach(), |A| / kappa),   A' = A + psi,   then GRPO's clipped loss with A'.

    psi >= 0 and psi <= |A|/kappa with kappa > 1, so the sign of A is kept and A = 0 stays 0.
    ``entropy`` (B, T) is the full-vocabulary entropy of the current forward pass (as TRL's
    ``entropies`` and verl's ``model_output["entropy"]``). Defaults alpha = 0.4, kappa = 2 are
    the GRPO values of a public reimplementation; not re-checked against the paper.
    """
    hp = use_hp(hp, EntAdvHparams, check)
    if check:
        if entropy is None:
            raise ValueError("entadv needs entropy=(B, T) tensor of per-token policy entropies; got None.")
    adv, old_log_prob, log_prob, entropy = _prepare(
        check, old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, entropy=entropy
    )
    psi = torch.minimum(hp.alpha * entropy.detach().float(), adv.abs() / hp.kappa)
    shaped = adv + psi
    log_ratio = log_prob.float() - old_log_prob.float()
    loss_mat, ratio, clipped, _ = _clipped_surrogate(
        log_ratio, shaped, hp.clip_ratio_low, hp.clip_ratio_high, hp.clip_ratio_c)
    loss = aggregate(_apply_weights(loss_mat, weights), response_mask, loss_agg_mode, **(agg_kwargs or {}))
    if not compute_metrics:
        return loss, {}
    with torch.no_grad():
        metrics = _masked_means(_mask(response_mask), "entadv", psi_mean=psi, ratio_mean=ratio, clipfrac=clipped)
    return loss, metrics


def _token_covariance(adv: Tensor, log_prob: Tensor, m: Tensor) -> Tensor:
    """cov_t = (A_t - mean A) * (lp_t - mean lp), means over valid tokens, lp detached (verl)."""
    lp = log_prob.detach().float()
    return (adv - _masked_mean(adv, m)) * (lp - _masked_mean(lp, m))


@register_objective("kl_cov", hparams=KlCovHparams)
def kl_cov_loss(
    old_log_prob: Tensor,
    log_prob: Tensor,
    advantages: Tensor,
    response_mask: Tensor,
    loss_agg_mode: str = "token-mean",
    *,
    hp: KlCovHparams | None = None,
    weights: Tensor | None = None,
    agg_kwargs: Mapping | None = None,
    compute_metrics: bool = True,
    check: bool = True,
) -> tuple[Tensor, dict[str, float]]:
    """KL-Cov (Cui et al. 2025, verl ``kl_cov``; docs/research/baselines.md §1.4). No ratio clipping at all.

        L_t = -A r                                     for every valid token, and
        L_t = -A r + ppo_kl_coef * |lp - lp_old|       for the top k = max(1, floor(N * kl_cov_ratio))
                                                       valid tokens by covariance (A - mean A)(lp - mean lp).

    Unlike verl, the log-ratio is clamped to [-20, 20] before exp (LOG_RATIO_CLAMP, as every objective
    here; zero gradient beyond), so the loss stays finite at any log-ratio; inside the clamp the
    numbers are verl's. The covariance is taken over the tensors given (a micro-batch, in a
    data-parallel run). Default ppo_kl_coef = 0.1 is verl's config default.
    """
    hp = use_hp(hp, KlCovHparams, check)
    adv, old_log_prob, log_prob = _prepare(check, old_log_prob, log_prob, advantages, response_mask, loss_agg_mode)
    m = _mask(response_mask)
    log_ratio = (log_prob.float() - old_log_prob.float()).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    ratio = torch.exp(log_ratio)
    valid = response_mask.bool().flatten()
    cov = _token_covariance(adv, log_prob, m).flatten()
    valid_idx = torch.nonzero(valid, as_tuple=True)[0]
    k = max(1, int(valid_idx.numel() * hp.kl_cov_ratio))
    top = valid_idx[torch.topk(cov[valid_idx], k).indices]
    penalised = torch.zeros_like(valid)
    penalised[top] = True
    penalised = penalised.view_as(log_ratio)
    loss_mat = -adv * ratio + torch.where(penalised, hp.ppo_kl_coef * log_ratio.abs(), torch.zeros_like(ratio))
    loss = aggregate(_apply_weights(loss_mat, weights), response_mask, loss_agg_mode, **(agg_kwargs or {}))
    if not compute_metrics:
        return loss, {}
    with torch.no_grad():
        metrics = _masked_means(
            m, "kl_cov", ratio_mean=ratio, penalised_frac=penalised, ppo_kl_abs=log_ratio.abs()
        )
    return loss, metrics


@register_objective("clip_cov", hparams=ClipCovHparams, needs=("generator",))
def clip_cov_loss(
    old_log_prob: Tensor,
    log_prob: Tensor,
    advantages: Tensor,
    response_mask: Tensor,
    loss_agg_mode: str = "token-mean",
    *,
    hp: ClipCovHparams | None = None,
    generator: torch.Generator | None = None,
    weights: Tensor | None = None,
    agg_kwargs: Mapping | None = None,
    compute_metrics: bool = True,
    check: bool = True,
) -> tuple[Tensor, dict[str, float]]:
    """Clip-Cov (Cui et al. 2025, verl ``clip_cov``; docs/research/baselines.md §1.5).

    1. PPO clipped surrogate max(-A r, -A clip(r)) (no dual clip, as verl; unlike verl the log-ratio
       is clamped to [-20, 20] before exp, as every objective here, so the loss stays finite);
    2. cov_t = (A - mean A)(lp - mean lp) over valid tokens;
    3. candidates: valid tokens not already clipped by PPO with clip_cov_lb < cov < clip_cov_ub;
    4. n = max(1, floor(clip_cov_ratio * N)) candidates drawn uniformly at random (``generator``
       makes the draw reproducible; None = torch's global generator) get their loss multiplied
       by 0: no gradient.
    """
    hp = use_hp(hp, ClipCovHparams, check)
    adv, old_log_prob, log_prob = _prepare(check, old_log_prob, log_prob, advantages, response_mask, loss_agg_mode)
    m = _mask(response_mask)
    ratio = torch.exp((log_prob.float() - old_log_prob.float()).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP))
    l1 = -adv * ratio
    l2 = -adv * ratio.clamp(1.0 - hp.clip_ratio_low, 1.0 + hp.clip_ratio_high)
    valid = response_mask.bool()
    clipped = (l2 > l1) & valid
    cov = _token_covariance(adv, log_prob, m)
    candidates = torch.nonzero(valid & ~clipped & (cov > hp.clip_cov_lb) & (cov < hp.clip_cov_ub))
    n = max(1, int(hp.clip_cov_ratio * int(valid.sum())))
    keep = torch.ones_like(ratio)
    if len(candidates) > 0:
        chosen = candidates[torch.randperm(len(candidates), generator=generator)[:n]]
        keep[chosen[:, 0], chosen[:, 1]] = 0.0
    loss_mat = torch.maximum(l1, l2) * keep
    loss = aggregate(_apply_weights(loss_mat, weights), response_mask, loss_agg_mode, **(agg_kwargs or {}))
    if not compute_metrics:
        return loss, {}
    with torch.no_grad():
        metrics = _masked_means(m, "clip_cov", ratio_mean=ratio, clipfrac=clipped, zeroed_frac=1.0 - keep)
    return loss, metrics


FLOWRL_AGG_MODE = "seq-mean-token-mean"


@register_objective(
    "flowrl", hparams=FlowRLHparams, needs=("log_z", "ref_log_prob"), loss_agg_mode=FLOWRL_AGG_MODE,
    temperature=lambda eta: {"beta": 1.0 / eta},
)
def flowrl_loss(
    old_log_prob: Tensor,
    log_prob: Tensor,
    advantages: Tensor,
    response_mask: Tensor,
    loss_agg_mode: str = FLOWRL_AGG_MODE,
    *,
    hp: FlowRLHparams | None = None,
    log_z: Tensor | None = None,
    ref_log_prob: Tensor | None = None,
    weights: Tensor | None = None,
    agg_kwargs: Mapping | None = None,
    compute_metrics: bool = True,
    check: bool = True,
) -> tuple[Tensor, dict[str, float]]:
    """FlowRL trajectory balance with a learned log Z (Zhu et al. 2025; docs/research/baselines.md §1.7).

        delta_i = log Z(x_i) + mean_t lp_it - beta * mean_t A_it - mean_t lp_ref_it
        w_i     = min(exp(sum_t (lp_it - lp_old_it)), is_weight_cap), detached
        L       = mean_i  w_i * delta_i^2

    Means and sums are over the response's valid tokens (log pi / |y|, as the recipe). The
    importance weight is capped as in the verl-recipe version (clamp(max=10)); the original
    repo's clip(1 - eps, 1 + eps) is computed but unused there. FlowRL is a mean over
    SEQUENCES: whatever ``loss_agg_mode`` says, the loss is aggregated with
    ``seq-mean-token-mean`` (its spec's ``loss_agg_mode``; a token-mean would weight each
    response by its length). ``agg_kwargs``' ``global_batch_size`` still applies. ``log_z`` (B,)
    carries the gradient into the log Z head; ``ref_log_prob`` (B, T) is pi_ref.
    """
    hp = use_hp(hp, FlowRLHparams, check)
    if check:
        if log_z is None or ref_log_prob is None:
            raise ValueError("flowrl needs log_z=(B,) and ref_log_prob=(B, T) tensors; got None.")
        if log_z.shape not in ((log_prob.shape[0],), (log_prob.shape[0], 1)):
            raise ValueError(f"log_z must have shape ({log_prob.shape[0]},), got {tuple(log_z.shape)}.")
    adv, old_log_prob, log_prob, ref_log_prob = _prepare(
        check, old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, ref_log_prob=ref_log_prob
    )
    m = _mask(response_mask)
    tokens = m.sum(-1).clamp(min=1.0)

    def mmean(x: Tensor) -> Tensor:
        return (x.float() * m).sum(-1) / tokens

    delta = log_z.float().flatten() + mmean(log_prob) - hp.beta * mmean(adv) - mmean(ref_log_prob)
    with torch.no_grad():
        w = torch.exp(((log_prob.float() - old_log_prob.float()) * m).sum(-1).clamp(max=LOG_RATIO_CLAMP))
        if hp.is_weight_cap is not None:
            w = w.clamp(max=hp.is_weight_cap)
    seq_loss = w * delta.square()
    loss_mat = seq_loss.unsqueeze(-1).expand_as(m)
    loss = aggregate(_apply_weights(loss_mat, weights), response_mask, FLOWRL_AGG_MODE, **(agg_kwargs or {}))
    if not compute_metrics:
        return loss, {}
    with torch.no_grad():
        metrics = {
            "flowrl/delta_abs_mean": delta.abs().mean().item(),
            "flowrl/is_weight_mean": w.mean().item(),
            "flowrl/log_z_mean": log_z.float().mean().item(),
        }
    return loss, metrics


# registered after the paper's baselines, so that the registry lists those in their usual order
@register_objective("ppo_penalty", hparams=PpoPenaltyHparams)
def ppo_penalty_loss(
    old_log_prob: Tensor,
    log_prob: Tensor,
    advantages: Tensor,
    response_mask: Tensor,
    loss_agg_mode: str = "token-mean",
    *,
    hp: PpoPenaltyHparams | None = None,
    weights: Tensor | None = None,
    agg_kwargs: Mapping | None = None,
    compute_metrics: bool = True,
    check: bool = True,
) -> tuple[Tensor, dict[str, float]]:
    """GRPO's clipped surrogate plus PPO's KL penalty to the behaviour policy (a trust-region baseline).

        L_t = L_t^GRPO + beta * k(lp_t, lp_old_t) * [A_t == 0 if tied_only]

    L^GRPO is :func:`grpo_loss`'s per-token loss (dual clip included) and k is :func:`kl_penalty`
    with pi_ref := pi_old, i.e. verl's ``kl_penalty`` estimator of KL(pi_theta || pi_old) from
    x = log r = lp - lp_old: k1 = x, k2 = x^2/2, k3 = e^{-x} + x - 1 (clamped as verl). Its
    gradient w.r.t. lp is beta * {1, x, 1 - 1/r}: zero at r = 1 for k2 and k3, so with one update
    per rollout batch (r = 1 at the update) the step is GRPO's exactly; k1's is beta at every r (its
    expectation under pi is 0, a single sample's is not). Both terms sit in one per-token loss, so
    they share the aggregation's normaliser.

    ``tied_only`` puts the penalty only on tokens whose advantage is exactly 0. With group-normalised
    binary (0/1) rewards these are exactly the responses of tied groups (every response of the prompt
    got the same reward): in a mixed group r_i - mean != 0 for every i. With other rewards a response
    that hits its group's mean exactly is also penalised. This is the term LAD's f(r) contributes on
    tied groups (exp(0) f(r), pulling r back to 1), in KL form.
    """
    hp = use_hp(hp, PpoPenaltyHparams, check)
    adv, old_log_prob, log_prob = _prepare(check, old_log_prob, log_prob, advantages, response_mask, loss_agg_mode)
    log_ratio = log_prob.float() - old_log_prob.float()
    loss_mat, ratio, clipped, dual = _clipped_surrogate(
        log_ratio, adv, hp.clip_ratio_low, hp.clip_ratio_high, hp.clip_ratio_c)
    kl = kl_penalty(log_prob, old_log_prob, hp.kl_estimator)
    if hp.tied_only:
        kl = torch.where(adv == 0, kl, torch.zeros((), dtype=kl.dtype))
    loss_mat = loss_mat + hp.beta * kl
    loss = aggregate(_apply_weights(loss_mat, weights), response_mask, loss_agg_mode, **(agg_kwargs or {}))
    if not compute_metrics:
        return loss, {}
    with torch.no_grad():
        metrics = _masked_means(
            _mask(response_mask), "ppo_penalty", ratio_mean=ratio, clipfrac=clipped, clipfrac_lower=dual,
            kl_mean=kl, penalised_frac=(adv == 0) if hp.tied_only else torch.ones_like(adv),
        )
    return loss, metrics


#: Names of the objectives lad_ref ships (objective_names() also lists ones registered later).
LOSS_NAMES: tuple[str, ...] = tuple(OBJECTIVES)

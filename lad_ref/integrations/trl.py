"""LAD (and lad_ref's baselines) inside TRL 1.16.0's ``GRPOTrainer``.

:class:`LadGRPOTrainer` is a ``GRPOTrainer`` whose loss is :func:`lad_ref.losses.get_loss` of
``args.objective``; everything else (generation, vLLM, reward functions, group-normalised
advantages, DeepSpeed/FSDP through accelerate, logging, checkpoints) is TRL's, unchanged.
:class:`LadGRPOConfig` is ``GRPOConfig`` plus the fields of lad_ref's objectives::

    from lad_ref.integrations.trl import LadGRPOConfig, LadGRPOTrainer

    args = LadGRPOConfig(output_dir="out", objective="lad", divergence="js", eta=1.0,
                         num_iterations=2, num_generations=8, ...)
    trainer = LadGRPOTrainer(model="path/to/Qwen2.5-7B", reward_funcs=my_reward, args=args,
                             train_dataset=dataset)
    trainer.train()

How the loss is formed (``_compute_loss``, docs/research/baselines.md §2.2)
-------------------------------------------------------------
1. Current per-token log-probs (and entropies, when the objective, ``top_entropy_quantile`` or
   ``log_entropy`` need them) come from TRL's own ``_get_per_token_logps_and_entropies`` (a 3-tuple
   ``(logps, entropies, aux_loss)`` in TRL >= 1.7).
2. **Old log-probs**: ``inputs["old_per_token_logps"]`` when TRL computed them, else
   ``logps.detach()``. TRL computes them only if ``gradient_accumulation_steps`` is *not* a multiple
   of ``steps_per_generation * num_iterations`` (i.e. some optimizer step happens between generating a
   batch and training on it) or with vLLM importance-sampling correction (then they are the training
   model's log-probs at generation time, and the vLLM/trainer mismatch goes into ``weights``). Unless an
   optimizer step happens in between, the ratio r = pi_theta / pi_old is exactly 1 on every token
   (``trainer.ratio_is_one``), and LAD's weight r * f'(u) with
   u = exp(-A/eta) is a fixed function of the advantage: the trust-region pull-back that makes LAD
   different (the weight changes sign once r passes exp(A/eta)) never acts. **For LAD use
   num_iterations > 1** (e.g. 2, with gradient_accumulation_steps not a multiple of
   steps_per_generation * num_iterations, such as the defaults gradient_accumulation_steps = 1 or
   steps_per_generation = gradient_accumulation_steps); the trainer logs a warning when r is pinned to 1.
3. Advantages are TRL's (B,) group-normalised advantages (``scale_rewards``), or lad_ref's
   estimators (``advantage_estimator``: grpo / drgrpo / rloo) recomputed from the per-row rewards and
   group ids that :meth:`LadGRPOTrainer._generate_and_score_completions` attaches to every batch
   (``inputs["rewards"]``, ``inputs["group_ids"]``; TRL shuffles and splits a generation batch into
   micro-batches that mix groups, so group structure has to travel as explicit per-row tensors).
4. TRL's per-token multipliers become lad_ref's ``weights``: the ``top_entropy_quantile`` mask, the
   off-policy sequence mask (``off_policy_mask_threshold``) and the vLLM importance-sampling ratio.
5. ``beta != 0``: beta * k3 KL to the reference model (:func:`lad_ref.losses.kl_penalty`, verl's clamped
   k3; TRL's own path does not clamp) is aggregated with the same mode and added, as TRL adds
   beta * k3 to the per-token loss before aggregation (not multiplied by ``weights``, as in TRL;
   ``use_bias_correction_kl`` multiplies it by r as TRL does).
6. **Gradient accumulation.** ``GRPOTrainer`` turns off the HF Trainer's loss scaling, so
   ``_compute_loss`` must return a loss already scaled for accumulation, exactly as TRL's branches
   do. With ``loss_agg_mode="auto"`` (default) the aggregation follows ``loss_type``:

   ========== ======================================= =========================================================
   loss_type  lad_ref aggregation                     scaling (train mode; eval: none)
   ========== ======================================= =========================================================
   dapo       token-mean over N_window                N_window = num_items_in_batch / num_processes
   (default)                                          * gradient_accumulation_steps / steps_per_generation, i.e.
                                                      the valid tokens of one accumulation window per process
                                                      (no further division, as TRL)
   bnpo       token-mean over the micro-batch         / gradient_accumulation_steps
   grpo       seq-mean-token-mean                     / gradient_accumulation_steps
   dr_grpo    seq-mean-token-sum-norm, C =            / gradient_accumulation_steps
              max_completion_length, all B rows
   ========== ======================================= =========================================================

   Any explicit lad_ref mode (token-mean, seq-mean-token-mean, seq-mean-token-sum,
   seq-mean-token-sum-norm, token-sum) aggregates over the micro-batch and is divided by
   ``gradient_accumulation_steps``, as TRL's local modes are. DDP/FSDP/DeepSpeed then average
   gradients over processes, which gives the same result as TRL's own loss types.
7. Metrics: the objective's metrics (e.g. ``lad/ratio_mean``, ``lad/weight_flip_frac``), averaged over
   processes, plus ``policy_loss``, ``entropy`` and ``kl`` (as TRL names them) go to
   ``self._metrics[mode]`` and appear in the trainer's logs.

Objectives: every registered objective of scope ``any`` whose extra inputs this trainer can supply
(``TRL_SUPPLIES``: TRL's per-token entropies and a seeded generator), read from its spec
(``lad_ref.losses.get_objective``): ``lad`` (any divergence, eta, token or sequence level), ``grpo``,
``entadv``, ``kl_cov``, ``clip_cov`` and ``ppo_penalty`` (its ``beta`` is the field ``ppo_penalty_beta``: GRPOConfig's
``beta`` is TRL's KL coefficient to the reference model). **FlowRL is not supported here**: it needs a learned log Z head
on the prompt's hidden states that shares the optimizer; use lad_ref's own LLM trainer for it.
``lad_theory`` needs every action enumerated and is for finite action spaces only.

Hyperparameters: LadGRPOConfig's objective fields are derived from the registry
(:func:`lad_grpo_config_class`): the names, defaults and help of the objectives' hyperparameter
dataclasses (``LadHparams``, ``EntAdvHparams``, ...; verl's names: ``ppo_kl_coef``,
``clip_cov_ratio``, ...), ``<objective>_<name>`` where GRPOConfig already has the name. The clip
range ``clip_ratio_low`` / ``clip_ratio_high`` is TRL's ``epsilon`` / ``epsilon_high``. An objective
registered before ``LadGRPOConfig`` is imported gets its fields; :func:`hp_from_args` builds the
hyperparameter object the loss receives, once.

Not wired in (rejected with a clear error at config time): TRL's entropy bonus (``entropy_coef``,
``use_adaptive_entropy``; LAD needs none), ``importance_sampling_level="sequence"`` (use
``level="sequence"`` for LAD), ``delta`` (INTELLECT-2 cap), and TRL-only loss types (cispo, sapo,
vespo, luspo) with ``loss_agg_mode="auto"``.

Version: TRL changes private method signatures often (the 2-/3-tuple of
``_get_per_token_logps_and_entropies`` in 1.7, the dapo normaliser after 1.10), so importing this
module **raises ImportError unless TRL is exactly 1.16.0**, the version the ``[trl]`` extra pins. Set
``LAD_REF_ALLOW_UNTESTED_TRL=1`` to downgrade that to a warning at your own risk.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

from lad_ref.advantages import ESTIMATORS, compute_advantages
from lad_ref.checks import choice, positive
from lad_ref.losses import (
    AGG_MODES,
    EXTRA_INPUTS,
    aggregate,
    get_loss,
    get_objective,
    kl_penalty,
    loss_inputs,
    objective_names,
)

#: The TRL version this adapter is written and tested against (the ``[trl]`` extra pins it).
SUPPORTED_TRL_VERSION = "1.16.0"
_ALLOW_ENV = "LAD_REF_ALLOW_UNTESTED_TRL"

logger = logging.getLogger(__name__)


def check_trl_version(installed: str) -> None:
    """Raise ImportError unless ``installed`` is the pinned TRL version (warn instead with the env override)."""
    if installed == SUPPORTED_TRL_VERSION:
        return
    msg = (
        f"lad_ref.integrations.trl needs trl=={SUPPORTED_TRL_VERSION} (it overrides private GRPOTrainer methods "
        f"whose signatures change between releases), found trl {installed}. Install the pinned version with "
        f'pip install -e ".[trl]", or set {_ALLOW_ENV}=1 to try anyway.'
    )
    if os.environ.get(_ALLOW_ENV) == "1":
        warnings.warn(msg, stacklevel=3)
        return
    raise ImportError(msg)


try:
    import trl as _trl
except ImportError as _e:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        f'lad_ref.integrations.trl needs trl=={SUPPORTED_TRL_VERSION}: pip install -e ".[trl]" ({_e})'
    ) from _e
check_trl_version(getattr(_trl, "__version__", "unknown"))

from trl import GRPOConfig, GRPOTrainer  # noqa: E402

#: Extra inputs (lad_ref.losses.EXTRA_INPUTS) this trainer supplies: TRL's entropies and a seeded generator.
TRL_SUPPLIES: frozenset[str] = frozenset({"entropy", "generator"})
#: Hyperparameters TRL itself provides, under its own names.
TRL_SUPPLIED_HPARAMS: dict[str, str] = {"clip_ratio_low": "epsilon_low", "clip_ratio_high": "epsilon_high"}


def trl_objectives() -> tuple[str, ...]:
    """The registered objectives LadGRPOTrainer can optimise (scope ``any``, extra inputs it can supply)."""
    return tuple(n for n in objective_names(scope="any") if get_objective(n).needs <= TRL_SUPPLIES)


def _unsupported_reason(name: str) -> str | None:
    """Why objective ``name`` cannot run in GRPOTrainer (None if it can), from its spec."""
    spec = get_objective(name)
    if spec.scope != "any":
        return f"{name} sums over every action and is for finite action spaces (the bandit) only"
    missing = sorted(spec.needs - TRL_SUPPLIES)
    if missing:
        what = "; ".join(f"{m}: {EXTRA_INPUTS[m]}" for m in missing)
        return (
            f"{name} needs inputs GRPOTrainer cannot supply ({what}); FlowRL needs a learned log Z head (an MLP on "
            "the prompt's hidden states trained with the policy); use lad_ref's own LLM trainer "
            "(python -m lad_ref.llm.train)"
        )
    return None


#: Objectives this trainer can optimise, among those lad_ref ships.
TRL_OBJECTIVES: tuple[str, ...] = trl_objectives()


#: loss_agg_mode="auto": TRL loss_type -> lad_ref aggregation (dapo additionally uses the window's token count).
LOSS_TYPE_TO_AGG: dict[str, str] = {
    "dapo": "token-mean",
    "bnpo": "token-mean",
    "grpo": "seq-mean-token-mean",
    "dr_grpo": "seq-mean-token-sum-norm",
}
_TRL_LOSS_HELP = "https://huggingface.co/docs/trl/main/en/grpo_trainer#loss-types"


@dataclass
class LadGRPOConfigBase(GRPOConfig):
    r"""
    Configuration for [`LadGRPOTrainer`]: TRL's `GRPOConfig` plus the objective's fields.

    :data:`LadGRPOConfig` is this class plus one field per hyperparameter of every objective TRL can
    run (:func:`lad_grpo_config_class`: derived from the registry, names and defaults and help of the
    hyperparameter dataclasses; a name TRL's GRPOConfig already uses, e.g. ppo_penalty's `beta`,
    gets the objective's name in front: `ppo_penalty_beta`; the clip range is TRL's `epsilon` /
    `epsilon_high`).

    Parameters:
        objective (`str`, *optional*, defaults to `"lad"`):
            lad_ref objective to optimise (any registered objective of scope `any` whose extra inputs are in
            `TRL_SUPPLIES`).
        loss_agg_mode (`str`, *optional*, defaults to `"auto"`):
            How token losses become a scalar. `"auto"` follows `loss_type` (dapo, bnpo, grpo, dr_grpo) exactly as
            TRL normalises it; or a lad_ref mode aggregated per micro-batch.
        loss_scale_factor (`float` or `None`, *optional*, defaults to `None`):
            Constant C of `seq-mean-token-sum-norm` (None: the padded completion length of the micro-batch).
        advantage_estimator (`str` or `None`, *optional*, defaults to `None`):
            None: TRL's advantages (`scale_rewards`). `"grpo"`, `"drgrpo"`, `"rloo"`: lad_ref.advantages recomputed
            from the generation batch's rewards and group ids.
        log_entropy (`bool`, *optional*, defaults to `True`):
            Compute and log the policy entropy every step (costs one extra pass over the logits).
    """

    objective: str = field(
        default="lad",
        metadata={
            "help": "lad_ref objective to optimise: any registered objective of scope 'any' whose extra inputs TRL "
            "supplies (lad, grpo, entadv, kl_cov, clip_cov, ppo_penalty, ...; FlowRL is not supported through TRL: "
            "it needs a learned log Z head).",
        },
    )
    loss_agg_mode: str = field(
        default="auto",
        metadata={
            "help": "'auto' follows loss_type exactly as TRL normalises it (dapo: token-mean over the global token "
            "count of the accumulation window; bnpo: token-mean; grpo: seq-mean-token-mean; dr_grpo: "
            "seq-mean-token-sum-norm with C = max_completion_length). Or a lad_ref mode ('token-mean', "
            "'seq-mean-token-mean', 'seq-mean-token-sum', 'seq-mean-token-sum-norm', 'token-sum') aggregated per "
            "micro-batch and divided by gradient_accumulation_steps.",
        },
    )
    loss_scale_factor: float | None = field(
        default=None,
        metadata={
            "help": "Constant C of an explicit 'seq-mean-token-sum-norm' (verl's loss_scale_factor). None: the "
            "padded completion length of the micro-batch.",
        },
    )
    advantage_estimator: str | None = field(
        default=None,
        metadata={
            "help": "None: TRL's advantages (see scale_rewards). 'grpo', 'drgrpo' or 'rloo': lad_ref.advantages "
            "recomputed from the generation batch's rewards and group ids (verl's eps = 1e-6; unscorable "
            "completions get advantage 0). Requires multi_objective_aggregation='sum_then_normalize'.",
        },
    )
    log_entropy: bool = field(
        default=True,
        metadata={
            "help": "Compute the per-token policy entropy every step and log its mean as 'entropy', as TRL does. "
            "Set False to skip that pass over the logits when the objective does not need it.",
        },
    )

    def __post_init__(self):
        super().__post_init__()
        validate_lad_config(self)


def objective_fields() -> dict[str, tuple[str, str, Any]]:
    """LadGRPOConfig's objective fields, derived from the registry: field name -> (objective, hyperparameter,
    default), for every objective TRL can run and every hyperparameter TRL does not supply itself.

    The field is named like the hyperparameter, unless GRPOConfig already has a field of that name
    or two objectives give the name different defaults: then ``<objective>_<name>``.
    """
    trl_own = {f.name for f in dataclasses.fields(GRPOConfig)} | {f.name for f in dataclasses.fields(LadGRPOConfigBase)}
    seen: dict[str, set] = {}
    rows = []
    for obj in trl_objectives():
        for f in dataclasses.fields(get_objective(obj).hparams):
            if f.name in TRL_SUPPLIED_HPARAMS:
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            rows.append((obj, f, default))
            seen.setdefault(f.name, set()).add(repr(default))
    out: dict[str, tuple[str, str, Any]] = {}
    for obj, f, default in rows:
        name = f.name if f.name not in trl_own and len(seen[f.name]) == 1 else f"{obj}_{f.name}"
        out.setdefault(name, (obj, f.name, default))
    return out


def _owners(field_name: str, fields: dict) -> list[str]:
    """The objectives that read LadGRPOConfig field ``field_name``."""
    hp = fields[field_name][1]
    return [o for o in trl_objectives() if hp in get_objective(o).hparam_names
            and field_name in (hp, f"{o}_{hp}")]


_CLASSES: dict[tuple, type] = {}


def lad_grpo_config_class() -> type:
    """LadGRPOConfigBase plus the objective fields of the registry as it is now (cached per registry state).

    ``LadGRPOConfig`` (this module's attribute) is this class: importing it after registering an
    objective gives that objective's fields too.
    """
    fields = objective_fields()
    key = tuple((n, o, h, repr(d)) for n, (o, h, d) in fields.items())
    if key not in _CLASSES:
        made = []
        for name, (obj, hp_name, default) in fields.items():
            (f,) = [f for f in dataclasses.fields(get_objective(obj).hparams) if f.name == hp_name]
            owners = _owners(name, fields)
            help_ = f"{' / '.join(owners)}: {f.metadata.get('help', '')}"
            made.append((name, f.type, field(default=default, metadata={"help": help_})))
        _CLASSES[key] = dataclasses.make_dataclass("LadGRPOConfig", made, bases=(LadGRPOConfigBase,),
                                                   namespace={"__module__": __name__})
    return _CLASSES[key]


def __getattr__(name: str) -> Any:
    if name == "LadGRPOConfig":
        return lad_grpo_config_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def hp_from_args(args: LadGRPOConfigBase, epsilon_low: float, epsilon_high: float) -> Any:
    """The active objective's hyperparameter object, built once from ``args``' fields (TRL's epsilon for
    the clip range; the dataclass default for a hyperparameter ``args`` has no field for)."""
    spec = get_objective(args.objective)
    supplied = {"epsilon_low": epsilon_low, "epsilon_high": epsilon_high}
    values = {}
    for name, (obj, hp_name, _) in objective_fields().items():
        if obj == spec.name or (hp_name in spec.hparam_names and name == hp_name):
            if hasattr(args, name):
                values[hp_name] = getattr(args, name)
    for hp_name, trl_name in TRL_SUPPLIED_HPARAMS.items():
        if hp_name in spec.hparam_names:
            values[hp_name] = supplied[trl_name]
    return spec.make_hparams(values)


def validate_lad_config(args: LadGRPOConfigBase) -> None:
    """Check every LAD field and the TRL options this trainer cannot honour; one clear sentence per error."""
    if args.objective in objective_names():
        reason = _unsupported_reason(args.objective)
        if reason is not None:
            raise ValueError(
                f"objective {args.objective!r} is not supported by LadGRPOTrainer: {reason}. "
                f"Valid objectives are {', '.join(trl_objectives())}."
            )
    choice("objective", args.objective, trl_objectives())
    eps_high = args.epsilon if args.epsilon_high is None else args.epsilon_high
    hp_from_args(args, args.epsilon, eps_high)  # validates the active objective's fields
    fields = objective_fields()
    for name, (_, _, default) in fields.items():
        value = getattr(args, name, default)
        owners = _owners(name, fields)
        if args.objective not in owners and value != default:
            raise ValueError(
                f"{name}={value!r} applies to objective {' / '.join(map(repr, owners))} only; got objective "
                f"{args.objective!r} (leave {name} at its default {default!r})."
            )
    if args.loss_agg_mode != "auto":
        choice("loss_agg_mode", args.loss_agg_mode, ("auto",) + AGG_MODES)
    if args.loss_agg_mode == "auto" and args.loss_type not in LOSS_TYPE_TO_AGG:
        raise ValueError(
            f"loss_agg_mode='auto' maps TRL's loss_type to an aggregation, but loss_type={args.loss_type!r} names a "
            f"TRL-only objective; use loss_type in {', '.join(LOSS_TYPE_TO_AGG)} or set loss_agg_mode to one of "
            f"{', '.join(AGG_MODES)}."
        )
    positive("loss_scale_factor", args.loss_scale_factor, allow_none=True)
    if args.advantage_estimator is not None:
        choice("advantage_estimator", args.advantage_estimator, (None,) + ESTIMATORS)
        if args.multi_objective_aggregation != "sum_then_normalize":
            raise ValueError(
                "advantage_estimator recomputes advantages from the weighted sum of the rewards, so it needs "
                f"multi_objective_aggregation='sum_then_normalize', got {args.multi_objective_aggregation!r}."
            )
    if args.importance_sampling_level != "token":
        raise ValueError(
            f"importance_sampling_level={args.importance_sampling_level!r} is TRL's GSPO switch and is not used by "
            "LadGRPOTrainer; keep it 'token' and set level='sequence' for sequence-level LAD."
        )
    if args.delta is not None:
        raise ValueError(
            f"delta={args.delta!r} (TRL's two-sided ratio cap) is not supported by LadGRPOTrainer; set delta=None."
        )
    if args.entropy_coef != 0.0 or args.use_adaptive_entropy:
        raise ValueError(
            "TRL's entropy bonus (entropy_coef, use_adaptive_entropy) is not wired into LadGRPOTrainer (LAD needs no "
            "entropy bonus; entadv shapes the advantage instead); set entropy_coef=0 and use_adaptive_entropy=False."
        )


class LadGRPOTrainer(GRPOTrainer):
    """TRL ``GRPOTrainer`` optimising a lad_ref objective (see the module docstring for the details).

    Takes the same arguments as ``GRPOTrainer``; ``args`` must be a :class:`LadGRPOConfig` (None builds
    a default one: LAD with JS, eta = 1).
    """

    _tag_names = ["trl", "grpo", "lad"]

    def __init__(self, model, reward_funcs=None, args: LadGRPOConfigBase | None = None, *pos, **kwargs):
        if args is None:
            name = (
                model
                if isinstance(model, str)
                else getattr(getattr(model, "config", None), "_name_or_path", "model")
            )
            args = lad_grpo_config_class()(f"{str(name).rstrip('/').split('/')[-1]}-LAD")
        if not isinstance(args, LadGRPOConfigBase):
            raise TypeError(
                f"LadGRPOTrainer needs args=LadGRPOConfig(...), got {type(args).__name__}; LadGRPOConfig takes every "
                "GRPOConfig field plus objective, divergence, eta, level, loss_agg_mode, ..."
            )
        validate_lad_config(args)  # again: fields may have been edited after construction
        super().__init__(model, reward_funcs, args, *pos, **kwargs)
        self._lad_rewards_per_func: torch.Tensor | None = None
        #: seeded generator of the objective's random choices (clip_cov's tokens), reproducible per process
        self.clip_cov_generator = torch.Generator().manual_seed(
            int(args.seed) + int(self.accelerator.process_index)
        )
        generate_every = args.steps_per_generation * self.num_iterations
        #: True when every batch is trained on by the very parameters that generated (and scored) it, so
        #: r = pi_theta / pi_old = 1 on every token (TRL then also skips old log-probs unless vLLM IS is on)
        self.ratio_is_one = args.gradient_accumulation_steps % generate_every == 0
        if self.ratio_is_one and get_objective(args.objective).anchored:
            logger.warning(
                "LadGRPOTrainer: gradient_accumulation_steps (%d) is a multiple of steps_per_generation * "
                "num_iterations (%d), so no optimizer step happens between generating a batch and training on it "
                "and the ratio pi/pi_old is 1 on every token: LAD's weight r*f'(u) then never reaches its "
                "trust-region pull-back. Set num_iterations > 1 (e.g. 2) to reuse each batch after an update.",
                args.gradient_accumulation_steps,
                generate_every,
            )

    # ------------------------------------------------------------------------------------------------
    # per-row rewards and group ids, carried through TRL's shuffle (docs/research/baselines.md §2.2)
    # ------------------------------------------------------------------------------------------------

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._lad_rewards_per_func = rewards_per_func  # (B_global, n_funcs), gathered over processes
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        self._lad_rewards_per_func = None
        output = super()._generate_and_score_completions(inputs)
        rewards_per_func, self._lad_rewards_per_func = self._lad_rewards_per_func, None
        if rewards_per_func is None:  # a rollout path that did not go through _calculate_rewards
            if self.args.advantage_estimator is not None:
                raise RuntimeError(
                    "advantage_estimator needs the rewards, but _calculate_rewards was not called."
                )
            return output
        mode = "train" if self.model.training else "eval"
        num_generations = self.num_generations if mode == "train" else self.num_generations_eval
        weights = self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
        rewards = (rewards_per_func * weights).nansum(dim=1)
        rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan  # unscorable rows, as TRL marks them
        # TRL's sampler puts each prompt's num_generations completions on consecutive global rows.
        group_ids = torch.arange(rewards.numel(), device=rewards.device) // num_generations
        n_local = output["completion_ids"].size(0)
        local = slice(
            self.accelerator.process_index * n_local, (self.accelerator.process_index + 1) * n_local
        )
        if self.args.advantage_estimator is not None:
            advantages = torch.zeros_like(rewards)
            ok = torch.isfinite(rewards)
            if bool(ok.any()):
                advantages[ok] = compute_advantages(
                    rewards[ok].cpu(), group_ids[ok].cpu(), self.args.advantage_estimator
                ).to(advantages.device)
            output["advantages"] = advantages[local].to(output["advantages"].dtype)
        output["rewards"] = rewards[local]
        output["group_ids"] = group_ids[local]
        return output

    # ------------------------------------------------------------------------------------------------
    # the loss
    # ------------------------------------------------------------------------------------------------

    def objective_kwargs(self, entropies: torch.Tensor | None) -> dict[str, Any]:
        """``hp`` and the extra inputs of ``args.objective`` for its loss, read from its spec."""
        if getattr(self, "_hp", None) is None:  # built once (validate_lad_config checked the fields)
            self._hp = hp_from_args(self.args, self.epsilon_low, self.epsilon_high)
        inputs = loss_inputs(get_objective(self.args.objective), {
            "entropy": lambda: entropies,
            "generator": lambda: self.clip_cov_generator,
        }, "LadGRPOTrainer")
        return {"hp": self._hp, **inputs}

    def aggregation(self, inputs: dict, mode: str, batch_size: int) -> tuple[str, dict[str, Any], float]:
        """``(loss_agg_mode, agg_kwargs, divisor)``: the aggregation and the gradient-accumulation scaling.

        The returned loss is ``aggregate(...) / divisor``, reproducing TRL 1.16's normalisation of the
        matching ``loss_type`` (module docstring, point 6).
        """
        a = self.args
        accum = float(self.current_gradient_accumulation_steps) if mode == "train" else 1.0
        if a.loss_agg_mode != "auto":
            kwargs = {}
            if a.loss_agg_mode == "seq-mean-token-sum-norm" and a.loss_scale_factor is not None:
                kwargs["loss_scale_factor"] = a.loss_scale_factor
            return a.loss_agg_mode, kwargs, accum
        mode_name = LOSS_TYPE_TO_AGG[self.loss_type]
        if self.loss_type == "dapo":
            # num_items_in_batch spans the generation batch over all processes; rescale to one accumulation window
            n = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes
            if mode == "train":
                n = n * self.current_gradient_accumulation_steps / a.steps_per_generation
            return mode_name, {"batch_num_tokens": n}, 1.0
        if self.loss_type == "dr_grpo":
            # TRL divides by B * max_completion_length, counting every row (even a fully masked one)
            return (
                mode_name,
                {"loss_scale_factor": self.max_completion_length, "global_batch_size": batch_size},
                accum,
            )
        if self.loss_type == "grpo":
            # TRL: mean over ALL B rows of each row's token mean (a fully masked row counts, with 0)
            return mode_name, {"global_batch_size": batch_size}, accum
        return mode_name, {}, accum

    def _compute_loss(self, model, inputs):
        a = self.args
        mode = "train" if self.model.training else "eval"
        prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
        logits_to_keep = completion_ids.size(1)
        mask = completion_mask if "tool_mask" not in inputs else completion_mask * inputs["tool_mask"]

        need_entropy = (
            "entropy" in get_objective(a.objective).needs or self.top_entropy_quantile < 1.0 or a.log_entropy
        )
        logps, entropies, aux_loss = self._get_per_token_logps_and_entropies(
            model,
            input_ids,
            attention_mask,
            logits_to_keep,
            compute_entropy=need_entropy,
            compute_aux_loss=self.aux_loss_enabled,
            pixel_values=inputs.get("pixel_values"),
            image_grid_thw=inputs.get("image_grid_thw"),
            num_images=inputs.get("num_images"),
            pixel_attention_mask=inputs.get("pixel_attention_mask"),
            spatial_shapes=inputs.get("spatial_shapes"),
            num_tiles=inputs.get("num_tiles"),
            image_sizes=inputs.get("image_sizes"),
            token_type_ids=inputs.get("token_type_ids"),
            mm_token_type_ids=inputs.get("mm_token_type_ids"),
            image_position_ids=inputs.get("image_position_ids"),
        )
        old_logps = inputs.get("old_per_token_logps")
        old_logps = logps.detach() if old_logps is None else old_logps  # r == 1 (module docstring, point 2)
        advantages = inputs["advantages"]  # (B,) from TRL, or (B, T) from a subclass
        adv_2d = advantages.unsqueeze(1) if advantages.dim() == 1 else advantages

        # TRL's per-token multipliers -> lad_ref's weights
        weights = None

        def times(w, x):
            x = x.to(logps.dtype)
            return x if w is None else w * x

        if self.top_entropy_quantile < 1.0:
            weights = times(
                weights, self.get_high_entropy_mask(entropies, mask, 1 - self.top_entropy_quantile)
            )
        if self.off_policy_mask_threshold is not None:
            sampling_logps = inputs.get("sampling_per_token_logps", old_logps)
            weights = times(
                weights,
                self.get_off_policy_mask(adv_2d, logps, sampling_logps, mask, self.off_policy_mask_threshold),
            )
        if self.use_vllm and self.vllm_importance_sampling_correction:
            weights = times(weights, inputs["importance_sampling_ratio"])

        agg_mode, agg_kwargs, divisor = self.aggregation(inputs, mode, completion_ids.size(0))
        has_tokens = bool(mask.any())
        loss_mask = mask
        if not has_tokens:
            # lad_ref refuses an all-masked batch; keep the graph and every process's collectives in step
            # with a zero loss (TRL's own path also yields 0 here)
            loss_mask = torch.ones_like(mask)
            weights = torch.zeros_like(logps)

        loss_fn = get_loss(a.objective)
        policy_loss, loss_metrics = loss_fn(
            old_logps,
            logps,
            advantages,
            loss_mask,
            agg_mode,
            weights=weights,
            agg_kwargs=agg_kwargs,
            **self.objective_kwargs(entropies),
        )
        loss = policy_loss
        per_token_kl = None
        if self.beta != 0.0:
            per_token_kl = kl_penalty(logps, inputs["ref_per_token_logps"])
            if a.use_bias_correction_kl:
                per_token_kl = per_token_kl * torch.exp(logps - old_logps)
            kl_mat = per_token_kl if has_tokens else per_token_kl * 0.0
            loss = loss + self.beta * aggregate(kl_mat, loss_mask, agg_mode, **agg_kwargs)
        loss = loss / divisor

        if self.aux_loss_enabled:
            accum = self.current_gradient_accumulation_steps if mode == "train" else 1.0
            loss = loss + self.router_aux_loss_coef * aux_loss / accum
            self._metrics[mode]["aux_loss"].append(
                self.accelerator.gather_for_metrics(aux_loss).mean().item()
            )

        # metrics: per-process values averaged over processes (NaN where a process had no valid token)
        values = {**loss_metrics, "policy_loss": policy_loss.detach().item()}
        if not has_tokens:
            values = dict.fromkeys(values, math.nan)
        keys = sorted(values)
        local = torch.tensor([[values[k] for k in keys]], dtype=torch.float32, device=self.accelerator.device)
        for k, v in zip(keys, self.accelerator.gather(local).nanmean(dim=0).tolist()):
            self._metrics[mode][k].append(v)
        if per_token_kl is not None:
            self._metrics[mode]["kl"].append(self._global_masked_mean(per_token_kl, mask))
        if entropies is not None:
            self._metrics[mode]["entropy"].append(self._global_masked_mean(entropies, mask))
        return loss

    def _global_masked_mean(self, x: torch.Tensor, mask: torch.Tensor) -> float:
        """Mean of ``x`` over the valid tokens of every process (TRL's global_masked_mean)."""
        m = mask.to(torch.float32)
        local = torch.stack([(x.detach().float() * m).sum(), m.sum()])
        totals = self.accelerator.reduce(local, reduction="sum")
        return (totals[0] / totals[1].clamp(min=1.0)).item()


__all__ = [
    "LOSS_TYPE_TO_AGG",
    "SUPPORTED_TRL_VERSION",
    "TRL_OBJECTIVES",
    "TRL_SUPPLIES",
    "hp_from_args",
    "lad_grpo_config_class",
    "objective_fields",
    "LadGRPOConfigBase",
    "trl_objectives",
    "LadGRPOConfig",  # noqa: F822 - built from the registry by the module's __getattr__
    "LadGRPOTrainer",
    "check_trl_version",
    "validate_lad_config",
]

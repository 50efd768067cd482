"""LAD as a verl policy loss: ``actor_rollout_ref.actor.policy_loss.loss_mode=lad`` (verl 0.9.1).

Importing this module registers :func:`compute_policy_loss_lad` under the name ``lad`` in verl's
policy-loss registry (``verl.trainer.ppo.core_algos.register_policy_loss``). The loss itself is
:func:`lad_ref.losses.lad_loss`, unchanged; this file only translates verl's calling convention.

How verl finds it
-----------------
verl's actor looks the loss up with ``get_policy_loss_fn(config.policy_loss.loss_mode)`` inside every
Ray worker (``verl/workers/utils/losses.py::ppo_loss``), and the registry is a module-global dict, so
this module has to be imported *in each worker process*, not only in the driver. verl 0.9.1 does that
on ``import verl`` in two ways (``verl/__init__.py``), either of which is enough:

* **entry point (automatic)**: lad_ref's ``pyproject.toml`` declares
  ``[project.entry-points."verl.plugins"] lad_ref = "lad_ref.integrations.verl"``. ``import verl`` loads
  every ``verl.plugins`` entry point unless ``VERL_USE_EXTERNAL_PLUGINS=none`` (or a comma-separated list
  of names that leaves out ``lad_ref``). Installing lad_ref (``pip install -e ".[verl]"``) in the
  workers' environment is all it takes. Caveat: verl swallows any exception raised while loading a
  plugin (it only logs at DEBUG level), so a broken install shows up later as
  ``ValueError: Unsupported loss mode: lad``; run ``python -c "import verl; from
  verl.trainer.ppo.core_algos import get_policy_loss_fn; get_policy_loss_fn('lad')"`` to check.
* **environment variable (explicit)**: ``VERL_USE_EXTERNAL_MODULES=lad_ref.integrations.verl`` makes
  ``import verl`` import this module by name (errors are not swallowed).

Hyperparameters
---------------
``divergence``, ``eta`` and ``level`` (the fields of :class:`lad_ref.losses.LadHparams`, which also
validates them) are read from ``config.policy_loss`` (attribute or mapping key; absent or ``None`` ->
the dataclass defaults ``js``, ``1.0``, ``token``). verl builds the actor config by
instantiating ``policy_loss`` with Hydra from its ``_target_``, and verl's own ``PolicyLossConfig`` has
no such fields: ``+actor_rollout_ref.actor.policy_loss.divergence=js`` alone fails with
``PolicyLossConfig.__init__() got an unexpected keyword argument 'divergence'``. Point the target at
:class:`LadPolicyLossConfig` (verl's config and ``LadHparams`` in one class: the same fields, defaults
and checks as everywhere else in lad_ref)::

    actor_rollout_ref.actor.policy_loss._target_=lad_ref.integrations.verl.LadPolicyLossConfig \\
    actor_rollout_ref.actor.policy_loss.loss_mode=lad \\
    +actor_rollout_ref.actor.policy_loss.divergence=js \\
    +actor_rollout_ref.actor.policy_loss.eta=1.0

(``+`` because the keys are not in verl's YAML). ``rollout_is_weights`` (verl's rollout-correction
importance weights) become lad_ref's ``weights``, and ``config.global_batch_info`` (``dp_size``,
``batch_num_tokens``, ``global_batch_size``, ``loss_scale_factor``, set by verl >= 0.7 before each
call) is passed as ``agg_kwargs`` so that the aggregation is the same global-batch normalisation as
verl's ``agg_loss``. Entropy bonus and KL-to-reference stay verl's (``actor.entropy_coeff``,
``actor.use_kl_loss``): verl adds them outside the policy-loss function.

The PPO-penalty baseline (:func:`lad_ref.losses.ppo_penalty_loss`: GRPO's clip plus beta * KL(pi_theta || pi_old))
is registered the same way under ``ppo_penalty`` (:func:`compute_policy_loss_ppo_penalty`): the clip range is the
actor's own ``clip_ratio_low`` / ``clip_ratio_high`` / ``clip_ratio_c``, and ``beta``, ``kl_estimator``, ``tied_only``
are read from ``policy_loss`` (``_target_=lad_ref.integrations.verl.PpoPenaltyPolicyLossConfig``). verl's own
``use_kl_loss`` anchors to the reference model, not to pi_old.

Without verl installed, importing this module succeeds and registers nothing; :func:`register` then
raises an ImportError naming the ``[verl]`` extra.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from lad_ref.losses import LadHparams, get_objective, lad_loss, ppo_penalty_loss

__all__ = [
    "LOSS_NAME",
    "SUPPORTED_VERL_VERSION",
    "compute_policy_loss_lad",
    "compute_policy_loss_ppo_penalty",
    "lad_hparams_from_config",
    "register",
]

#: The verl version this adapter is written and tested against (the ``[verl]`` extra pins it).
SUPPORTED_VERL_VERSION = "0.9.1"
#: The name under which the loss is registered (``policy_loss.loss_mode``).
LOSS_NAME = "lad"

_SPEC = get_objective(LOSS_NAME)
_HPARAMS = _SPEC.hparam_names
_DEFAULTS: dict[str, Any] = _SPEC.defaults()
# Keys of verl's ``config.global_batch_info`` that lad_ref.losses.aggregate understands (all of them in 0.9.1).
_AGG_KEYS = ("dp_size", "batch_num_tokens", "global_batch_size", "loss_scale_factor")
_INSTALL_HINT = 'pip install -e ".[verl]"  (pins verl==' + SUPPORTED_VERL_VERSION + ")"


def _get(section: Any, key: str) -> Any:
    """``section.key`` or ``section[key]``; None when absent (dataclass, DictConfig or plain dict)."""
    if section is None:
        return None
    if isinstance(section, Mapping):
        try:
            return section.get(key)
        except Exception:  # a Mapping whose get() raises on unknown keys
            return None
    return getattr(section, key, None)


def lad_hparams_from_config(config: Any) -> dict[str, Any]:
    """``{"divergence", "eta", "level"}`` from ``config.policy_loss`` (absent/None -> lad_ref defaults).

    ``config`` is verl's actor config (``ActorConfig``, an OmegaConf ``DictConfig`` or a dict) or None.
    Raises ValueError on an unknown divergence or level, or a non-positive eta.
    """
    section = _get(config, "policy_loss")
    out = {}
    for key in _HPARAMS:
        value = _get(section, key)
        out[key] = _DEFAULTS[key] if value is None else value
    if isinstance(out["eta"], str):  # e.g. a CLI string that Hydra left as text
        try:
            out["eta"] = float(out["eta"])
        except ValueError:
            pass
    return dataclasses.asdict(_SPEC.make_hparams(out, where="policy_loss."))


def _agg_kwargs(config: Any) -> dict:
    """verl's ``config.global_batch_info`` (set on each rank before each call) as lad_ref's ``agg_kwargs``."""
    info = _get(config, "global_batch_info") or {}
    return {k: info[k] for k in _AGG_KEYS if k in info and info[k] is not None}


def compute_policy_loss_lad(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config: Any = None,
    rollout_is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """LAD policy loss in verl's registered-loss signature (docs/research/baselines.md §2.1).

        L = E_{y~pi_old}[ exp(A/eta) * f(u) ],   log u = (log pi_theta - log pi_old) - A/eta

    computed by :func:`lad_ref.losses.lad_loss` (see its docstring and docs/design.md, "The method").

    Args:
        old_log_prob: (B, T) log-probs under the behaviour policy (verl's ``old_log_probs``).
        log_prob: (B, T) log-probs under the current policy; carries the gradient.
        advantages: (B, T) advantages (verl broadcasts outcome advantages over the response tokens).
        response_mask: (B, T) bool mask of valid response tokens.
        loss_agg_mode: verl's ``actor.loss_agg_mode`` (token-mean, seq-mean-token-mean,
            seq-mean-token-sum, seq-mean-token-sum-norm, token-sum).
        config: verl's actor config; ``config.policy_loss.{divergence, eta, level}`` and
            ``config.global_batch_info`` are read from it (None -> defaults, local aggregation).
        rollout_is_weights: optional (B, T) rollout-correction importance weights, multiplied into the
            per-token loss before aggregation (as verl's own losses do).

    Returns:
        ``(loss, metrics)``: a scalar tensor and verl-style float metrics ``actor/lad/ratio_mean``,
        ``actor/lad/weight_mean``, ``actor/lad/weight_flip_frac``, ``actor/lad/log_u_mean`` and
        ``actor/ppo_kl`` (masked mean of log pi_old - log pi_theta, as verl's losses report it).
    """
    hp = lad_hparams_from_config(config)
    agg_kwargs = _agg_kwargs(config)
    loss, lad_metrics = lad_loss(
        old_log_prob=old_log_prob,
        log_prob=log_prob,
        advantages=advantages,
        response_mask=response_mask,
        loss_agg_mode=loss_agg_mode,
        weights=rollout_is_weights,
        agg_kwargs=agg_kwargs,
        **hp,
    )
    metrics = {f"actor/{k}": v for k, v in lad_metrics.items()}
    with torch.no_grad():
        m = response_mask.float()
        neg_log_ratio = old_log_prob.float() - log_prob.detach().float()
        metrics["actor/ppo_kl"] = ((neg_log_ratio * m).sum() / m.sum().clamp(min=1.0)).item()
    return loss, metrics


#: The name of the PPO-penalty baseline in verl's registry, and its hyperparameters read from ``policy_loss``.
PENALTY_LOSS_NAME = "ppo_penalty"
_PENALTY_KEYS = ("beta", "kl_estimator", "tied_only")
# the actor config's clip fields, which ppo_penalty takes under the same names (verl's vanilla loss reads them too)
_CLIP_KEYS = ("clip_ratio_low", "clip_ratio_high", "clip_ratio_c")


def compute_policy_loss_ppo_penalty(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config: Any = None,
    rollout_is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """GRPO's clipped loss plus beta * KL(pi_theta || pi_old), in verl's registered-loss signature.

    :func:`lad_ref.losses.ppo_penalty_loss` with the actor's clip range (``config.clip_ratio_low/high/c``;
    absent -> 0.2, 0.2, 3.0) and ``config.policy_loss.{beta, kl_estimator, tied_only}`` (absent -> 0.1, k3, false).
    """
    spec = get_objective(PENALTY_LOSS_NAME)
    defaults = spec.defaults()
    section = _get(config, "policy_loss")
    values = {k: _get(config, k) for k in _CLIP_KEYS}
    values.update({k: _get(section, k) for k in _PENALTY_KEYS})
    hp = dataclasses.asdict(spec.make_hparams(
        {k: (defaults[k] if v is None else v) for k, v in values.items()}, where="policy_loss."))
    agg_kwargs = _agg_kwargs(config)
    loss, m = ppo_penalty_loss(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode,
                               weights=rollout_is_weights, agg_kwargs=agg_kwargs, **hp)
    return loss, {f"actor/{k}": v for k, v in m.items()}


def _verl_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("verl")
    except Exception:
        return None


def register(name: str = LOSS_NAME):
    """Register :func:`compute_policy_loss_lad` in verl's policy-loss registry under ``name``.

    Idempotent (verl's registry silently overwrites a name). Called automatically when this module
    is imported with verl installed. Warns if the installed verl is not the pinned 0.9.1 (the
    registered-loss signature is stable since verl 0.6.1, but other versions are untested).

    Raises:
        ImportError: verl is not installed (or its dependencies are missing); the message names the extra.
    """
    try:
        from verl.trainer.ppo.core_algos import register_policy_loss
    except ImportError as e:
        raise ImportError(
            f"registering the LAD policy loss needs verl {SUPPORTED_VERL_VERSION} and its dependencies: "
            f"{_INSTALL_HINT}. Import failed with: {e}"
        ) from e
    installed = _verl_version()
    if installed is not None and installed != SUPPORTED_VERL_VERSION:
        warnings.warn(
            f"lad_ref.integrations.verl is tested with verl {SUPPORTED_VERL_VERSION}, found verl {installed}; "
            "the registered-loss signature (verl >= 0.6.1) is used as-is, other versions are untested.",
            stacklevel=2,
        )
    register_policy_loss(PENALTY_LOSS_NAME)(compute_policy_loss_ppo_penalty)
    return register_policy_loss(name)(compute_policy_loss_lad)


# ----------------------------------------------------------------------------------------------------
# Hydra-instantiable policy_loss config with LAD's fields (only where verl is importable)
# ----------------------------------------------------------------------------------------------------

try:
    from verl.workers.config import PolicyLossConfig as _PolicyLossConfig
except ImportError:  # verl absent or broken: nothing to subclass; register() reports the reason
    _PolicyLossConfig = None

if _PolicyLossConfig is not None:

    @dataclass
    class LadPolicyLossConfig(_PolicyLossConfig, LadHparams):
        """verl's ``PolicyLossConfig`` plus LAD's hyperparameters: the fields of
        :class:`lad_ref.losses.LadHparams` (``divergence``, ``eta``, ``level``), validated at construction
        by that dataclass.

        Select it with ``actor_rollout_ref.actor.policy_loss._target_=lad_ref.integrations.verl.LadPolicyLossConfig``.
        """

        loss_mode: str = LOSS_NAME

        def __post_init__(self):
            parent = getattr(_PolicyLossConfig, "__post_init__", None)
            if parent is not None:
                parent(self)
            try:
                LadHparams.__post_init__(self)
            except ValueError as e:
                raise ValueError(f"policy_loss: {e}") from None

    __all__.append("LadPolicyLossConfig")

    @dataclass
    class PpoPenaltyPolicyLossConfig(_PolicyLossConfig):
        """verl's ``PolicyLossConfig`` plus the PPO-penalty fields (``beta``, ``kl_estimator``, ``tied_only``;
        defaults and checks of :class:`lad_ref.losses.PpoPenaltyHparams`; the clip range stays the actor's)."""

        loss_mode: str = PENALTY_LOSS_NAME
        beta: float = 0.1
        kl_estimator: str = "k3"
        tied_only: bool = False

        def __post_init__(self):
            parent = getattr(_PolicyLossConfig, "__post_init__", None)
            if parent is not None:
                parent(self)
            get_objective(PENALTY_LOSS_NAME).make_hparams(
                {k: getattr(self, k) for k in _PENALTY_KEYS}, where="policy_loss.")

    __all__.append("PpoPenaltyPolicyLossConfig")


def _verl_installed() -> bool:
    try:
        return importlib.util.find_spec("verl") is not None
    except (ImportError, ValueError):  # blocked by an import hook, or a None entry in sys.modules
        return False


# Register on import: this is what verl's plugin loader (entry point) and VERL_USE_EXTERNAL_MODULES do.
if _verl_installed():
    try:
        register()
    except ImportError as _e:  # verl present but unusable: keep the module importable, say why
        warnings.warn(f"lad_ref: the LAD policy loss was not registered in verl: {_e}", stacklevel=2)

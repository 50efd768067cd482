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
import functools
import importlib.util
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch

from lad_ref.losses import get_objective, objective_names

__all__ = [
    "LOSS_NAME",
    "SUPPORTED_VERL_VERSION",
    "compute_policy_loss_lad",
    "compute_policy_loss_ppo_penalty",
    "hp_from_config",
    "policy_loss_fn",
    "register",
    "verl_objectives",
]

#: The verl version this adapter is written and tested against (the ``[verl]`` extra pins it).
SUPPORTED_VERL_VERSION = "0.9.1"
#: The name under which LAD is registered (``policy_loss.loss_mode``).
LOSS_NAME = "lad"
#: The PPO-penalty baseline's name in verl's registry.
PENALTY_LOSS_NAME = "ppo_penalty"
# Keys of verl's ``config.global_batch_info`` that lad_ref.losses.aggregate understands (all of them in 0.9.1).
_AGG_KEYS = ("dp_size", "batch_num_tokens", "global_batch_size", "loss_scale_factor")
# the actor config's clip fields: an objective's hyperparameter of the same name is read from the actor (verl's
# vanilla loss reads them there too), every other one from ``policy_loss``
_CLIP_KEYS = ("clip_ratio_low", "clip_ratio_high", "clip_ratio_c")
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


def verl_objectives() -> tuple[str, ...]:
    """Registered objectives that can run as a verl policy loss: scope ``any`` and no extra inputs (verl's
    registered-loss signature passes none)."""
    return tuple(n for n in objective_names(scope="any") if not get_objective(n).needs)


def _check_verl_objective(name: str) -> None:
    spec = get_objective(name)  # an unknown name raises here, listing the registered ones
    if spec.scope != "any" or spec.needs:
        why = ("it sums over every action (finite action spaces only)" if spec.scope != "any"
               else f"it needs {', '.join(sorted(spec.needs))}, which verl's policy-loss signature does not pass")
        raise ValueError(f"objective {name!r} cannot be a verl policy loss: {why}; valid objectives are "
                         f"{', '.join(verl_objectives())}.")


def hp_from_config(objective: str, config: Any) -> Any:
    """Objective ``objective``'s hyperparameter object from verl's actor config.

    A clip field (``clip_ratio_low/high/c``) comes from the actor config itself, every other field
    from ``config.policy_loss`` (attribute or mapping key); absent or None -> the dataclass default.
    Built once per distinct setting (cached) and validated by the dataclass: ValueError names the bad
    value (``policy_loss: ...``).
    """
    spec = get_objective(objective)
    section = _get(config, "policy_loss")
    values = {}
    for name in spec.hparam_names:
        value = _get(config, name) if name in _CLIP_KEYS else _get(section, name)
        if value is not None:
            values[name] = value
    return _built_hp(objective, tuple(sorted(values.items())))


@functools.lru_cache(maxsize=256)
def _built_hp(objective: str, items: tuple) -> Any:
    values = dict(items)
    for key, value in values.items():  # e.g. eta=4 given on a Hydra command line and left as text
        if isinstance(value, str):
            try:
                values[key] = float(value)
            except ValueError:
                pass
    return get_objective(objective).make_hparams(values, where="policy_loss.")


def _agg_kwargs(config: Any) -> dict:
    """verl's ``config.global_batch_info`` (set on each rank before each call) as lad_ref's ``agg_kwargs``."""
    info = _get(config, "global_batch_info") or {}
    return {k: info[k] for k in _AGG_KEYS if k in info and info[k] is not None}


def policy_loss_fn(objective: str) -> Callable:
    """Objective ``objective`` in verl's registered policy-loss signature::

        loss, metrics = fn(old_log_prob, log_prob, advantages, response_mask,   # (B, T) each
                           loss_agg_mode="token-mean", config=None, rollout_is_weights=None)

    The loss is lad_ref's, unchanged: ``hp`` from :func:`hp_from_config`, ``rollout_is_weights`` as
    its ``weights``, ``config.global_batch_info`` as its ``agg_kwargs``. Metrics: the objective's,
    prefixed ``actor/``, plus ``actor/ppo_kl`` (masked mean of log pi_old - log pi_theta, as verl's
    losses report it).
    """
    _check_verl_objective(objective)
    spec = get_objective(objective)

    def compute_policy_loss(
        old_log_prob: torch.Tensor,
        log_prob: torch.Tensor,
        advantages: torch.Tensor,
        response_mask: torch.Tensor,
        loss_agg_mode: str = "token-mean",
        config: Any = None,
        rollout_is_weights: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        loss, m = spec.loss(
            old_log_prob, log_prob, advantages, response_mask, spec.aggregation(loss_agg_mode),
            hp=hp_from_config(objective, config), weights=rollout_is_weights, agg_kwargs=_agg_kwargs(config),
        )
        metrics = {f"actor/{k}": v for k, v in m.items()}
        with torch.no_grad():
            mask = response_mask.float()
            neg_log_ratio = old_log_prob.float() - log_prob.detach().float()
            metrics["actor/ppo_kl"] = ((neg_log_ratio * mask).sum() / mask.sum().clamp(min=1.0)).item()
        return loss, metrics

    compute_policy_loss.__name__ = compute_policy_loss.__qualname__ = f"compute_policy_loss_{objective}"
    compute_policy_loss.__doc__ = f"lad_ref's {objective!r} objective as a verl policy loss (policy_loss_fn)."
    return compute_policy_loss


#: LAD (docs/research/baselines.md §2.1) and the PPO-penalty baseline in verl's signature.
compute_policy_loss_lad = policy_loss_fn(LOSS_NAME)
compute_policy_loss_ppo_penalty = policy_loss_fn(PENALTY_LOSS_NAME)
_SHIPPED = {LOSS_NAME: compute_policy_loss_lad, PENALTY_LOSS_NAME: compute_policy_loss_ppo_penalty}


def _verl_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("verl")
    except Exception:
        return None


def register(*objectives: str) -> None:
    """Register lad_ref objectives in verl's policy-loss registry, each under its own name.

    No argument: LAD and the PPO-penalty baseline (done when this module is imported with verl
    installed). An objective registered in lad_ref by your own module is added with
    ``register("mine")`` in that module. Idempotent (verl's registry overwrites a name). Warns if the
    installed verl is not the pinned 0.9.1 (the registered-loss signature is stable since verl 0.6.1,
    but other versions are untested).

    Raises:
        ImportError: verl is not installed (or its dependencies are missing); the message names the extra.
        ValueError: an objective that cannot run as a verl loss (:func:`verl_objectives`).
    """
    try:
        from verl.trainer.ppo.core_algos import register_policy_loss
    except ImportError as e:
        raise ImportError(
            f"registering lad_ref's policy losses needs verl {SUPPORTED_VERL_VERSION} and its dependencies: "
            f"{_INSTALL_HINT}. Import failed with: {e}"
        ) from e
    installed = _verl_version()
    if installed is not None and installed != SUPPORTED_VERL_VERSION:
        warnings.warn(
            f"lad_ref.integrations.verl is tested with verl {SUPPORTED_VERL_VERSION}, found verl {installed}; "
            "the registered-loss signature (verl >= 0.6.1) is used as-is, other versions are untested.",
            stacklevel=2,
        )
    for name in objectives or tuple(_SHIPPED):
        register_policy_loss(name)(_SHIPPED.get(name) or policy_loss_fn(name))


# ----------------------------------------------------------------------------------------------------
# Hydra-instantiable policy_loss configs with an objective's fields (only where verl is importable)
# ----------------------------------------------------------------------------------------------------

try:
    from verl.workers.config import PolicyLossConfig as _PolicyLossConfig
except ImportError:  # verl absent or broken: nothing to subclass; register() reports the reason
    _PolicyLossConfig = None


def policy_loss_config_class(objective: str) -> type:
    """verl's ``PolicyLossConfig`` plus objective ``objective``'s hyperparameter fields (its clip fields
    stay the actor's), derived from its dataclass: the same names, defaults and checks (at construction,
    ``policy_loss: ...``). Needs verl installed.
    """
    if _PolicyLossConfig is None:
        raise ImportError(f"verl's PolicyLossConfig is not importable: {_INSTALL_HINT}.")
    _check_verl_objective(objective)
    spec = get_objective(objective)
    own = [f for f in dataclasses.fields(spec.hparams) if f.name not in _CLIP_KEYS]
    fields = [("loss_mode", str, dataclasses.field(default=objective))]
    fields += [(f.name, f.type, dataclasses.field(default=f.default, metadata=f.metadata)) for f in own]

    def __post_init__(self):
        parent = getattr(_PolicyLossConfig, "__post_init__", None)
        if parent is not None:
            parent(self)
        spec.make_hparams({f.name: getattr(self, f.name) for f in own}, where="policy_loss.")

    camel = "".join(part.capitalize() for part in objective.split("_"))
    return dataclasses.make_dataclass(f"{camel}PolicyLossConfig", fields, bases=(_PolicyLossConfig,),
                                      namespace={"__post_init__": __post_init__, "__module__": __name__})


def policy_loss_config(loss_mode: str = LOSS_NAME, **values: Any) -> Any:
    """A Hydra ``_target_`` for any objective: ``policy_loss._target_=lad_ref.integrations.verl.policy_loss_config``
    with ``policy_loss.loss_mode=<objective>`` and its fields (``+policy_loss.tau=2``)."""
    return policy_loss_config_class(loss_mode)(loss_mode=loss_mode, **values)


if _PolicyLossConfig is not None:
    #: ``_target_=lad_ref.integrations.verl.LadPolicyLossConfig``: divergence, eta, level.
    LadPolicyLossConfig = policy_loss_config_class(LOSS_NAME)
    #: ``_target_=lad_ref.integrations.verl.PpoPenaltyPolicyLossConfig``: beta, kl_estimator, tied_only.
    PpoPenaltyPolicyLossConfig = policy_loss_config_class(PENALTY_LOSS_NAME)
    __all__ += ["LadPolicyLossConfig", "PpoPenaltyPolicyLossConfig", "policy_loss_config", "policy_loss_config_class"]


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

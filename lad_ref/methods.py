"""The method grammar: one parser for labels such as ``grpo``, ``lad(js,eta=2)``, ``ppo_penalty(beta=1,kl=k1)``.

A label is ``<objective>`` or ``<objective>(<args>)`` with ``<objective>`` a registered objective
(``lad_ref.losses``) and ``<args>`` comma-separated:

* a positional argument: the divergence, for objectives that have a ``divergence`` hyperparameter
  (``lad(js)``; required for them, as ``lad(<divergence>)`` or ``lad(divergence=<name>)``);
* ``<field>=<value>``: any hyperparameter of the objective's dataclass (``eta``, ``level``, ``beta``,
  ``clip_ratio_high``, ...), typed by the field (numbers, true/false/1/0, strings, none), and
  validated by building the dataclass (``get_objective(name).make_hparams``). :data:`ALIASES` holds
  the short names the labels use (``kl=`` for ppo_penalty's ``kl_estimator``);
* run options that are not hyperparameters (:data:`OPTIONS`): ``tied=<number>``
  (objective.tied_loss_weight), ``ds=1|0`` (rollout.dynamic_sampling), ``gs=1|0``
  (logging.tied_grad_share).

:func:`parse_method` returns a :class:`Method`: the objective, the values the label sets, the
options, the canonical ``label`` (spaces removed, arguments in the order written, values as
written, the divergence positional), the run-folder ``slug`` (``lad(js,eta=0.5)`` ->
``lad-js-eta0.5``) and the trainer's dotted overrides (:meth:`Method.trainer_overrides`). The
study (lad_ref.study), the regime bandit (lad_ref.bandit.regime), the report, the figures and
the colours (lad_ref.style) all read labels through it: an objective or divergence registered
later needs no edit here.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass, field
from typing import Any

from lad_ref.config_io import ConfigError, parse_value

# run options every method takes: key -> (dotted config field, type)
OPTIONS: dict[str, tuple[str, type]] = {
    "tied": ("objective.tied_loss_weight", float),
    "ds": ("rollout.dynamic_sampling", bool),
    "gs": ("logging.tied_grad_share", bool),
}
# short names the labels use for hyperparameters: (objective, key in the label) -> dataclass field
ALIASES: dict[tuple[str, str], str] = {("ppo_penalty", "kl"): "kl_estimator"}
_FLAGS = {"1": True, "true": True, "0": False, "false": False}
_LABEL = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:\((?P<args>[^()]*)\))?$")


class MethodError(ConfigError):
    """A bad method label (a ConfigError, hence a ValueError): one sentence naming the label and the choices."""


@dataclass(frozen=True)
class Method:
    """A parsed method label (see the module docstring).

    Attributes:
        objective: the registered objective's name.
        values: the hyperparameters the label sets, typed (field name -> value; the divergence included).
        options: the run options the label sets (key of :data:`OPTIONS` -> value).
        label: the canonical text; ``parse_method(m.label) == m``.
        texts: the values as written (key as written -> text), for short legends.
    """

    objective: str
    values: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)
    label: str = field(default="", compare=False)
    texts: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __hash__(self) -> int:
        return hash((self.objective, tuple(sorted(self.values.items())), tuple(sorted(self.options.items()))))

    @property
    def spec(self):
        from lad_ref.losses import get_objective

        return get_objective(self.objective)

    @property
    def hp(self):
        """The validated hyperparameter dataclass: the label's values over the objective's defaults."""
        return self.spec.make_hparams(self.values)

    @property
    def divergence(self) -> str | None:
        return self.values.get("divergence")

    @property
    def family(self) -> str:
        """The objective with its divergence, without other values or options: ``lad(js)``, ``grpo``."""
        return f"{self.objective}({self.divergence})" if self.divergence is not None else self.objective

    @property
    def slug(self) -> str:
        """A shell-friendly folder name: ``lad(js,eta=0.5)`` -> ``lad-js-eta0.5`` (the study's run folders)."""
        return self.label.replace("(", "-").replace(")", "").replace(",", "-").replace("=", "")

    def kwargs(self, **defaults: Any) -> dict[str, Any]:
        """The label's values, with ``defaults`` filled in for fields of the objective the label leaves unset
        (the regime bandit: ``kwargs(eta=cfg.eta)``); fields the objective lacks are ignored."""
        names = self.spec.hparam_names
        return {**{k: v for k, v in defaults.items() if k in names}, **self.values}

    def key(self, **defaults: Any) -> tuple:
        """Every hyperparameter with its default filled in, and the options: two labels of one method compare equal."""
        full = {**self.spec.defaults(), **self.kwargs(**defaults)}
        return self.objective, tuple(sorted(full.items())), tuple(sorted(self.options.items()))

    def trainer_overrides(self) -> dict[str, Any]:
        """The trainer's dotted config overrides: ``objective.name``, ``objective.<name>.<field>`` per value, options."""
        out: dict[str, Any] = {"objective.name": self.objective}
        out.update({f"objective.{self.objective}.{k}": v for k, v in self.values.items()})
        out.update({OPTIONS[k][0]: v for k, v in self.options.items()})
        return out


def _field_types(hparams: type) -> dict[str, Any]:
    return typing.get_type_hints(hparams)


def _typed(label: str, key: str, text: str, kind: Any) -> Any:
    """``text`` as a value of the annotated type ``kind`` (bool, int, float, str, X | None, else YAML-parsed)."""
    args = typing.get_args(kind)
    if type(None) in args:
        if text.lower() in ("none", "null"):
            return None
        rest = [a for a in args if a is not type(None)]
        kind = rest[0] if len(rest) == 1 else Any
    if kind is bool:
        if text.lower() not in _FLAGS:
            raise MethodError(f"method {label!r} has {key}={text!r}; valid values are 1, 0, true, false.")
        return _FLAGS[text.lower()]
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            raise MethodError(f"method {label!r} has {key}={text!r}, which is not a number.") from None
    if kind is str:
        return text
    return parse_value(text)


def parse_method(label: str, choices: typing.Iterable[str] | None = None, *, options: bool = True) -> Method:
    """Parse and validate a method label (module docstring); ``choices``: the objectives allowed (default: all);
    ``options=False``: the run options of :data:`OPTIONS` are not allowed (the regime bandit's labels).

    Raises :class:`MethodError` (a ConfigError / ValueError) with one sentence naming the label and the choices.
    """
    from lad_ref.losses import get_objective, objective_names

    allowed = tuple(choices) if choices is not None else objective_names()
    text = label.replace(" ", "") if isinstance(label, str) else ""
    m = _LABEL.match(text)
    if m is None:
        raise MethodError(f"method {label!r} is not of the form name or name(arg,key=value,...); valid objectives "
                          f"are {', '.join(allowed)} (e.g. grpo, lad(js,eta=2)).")
    name, inner = m["name"], m["args"]
    if name not in allowed:
        raise MethodError(f"unknown method {label!r}; valid objectives are {', '.join(allowed)}.")
    spec = get_objective(name)
    types = _field_types(spec.hparams)
    names = spec.hparam_names
    valid = [*names, *(a for (o, a) in ALIASES if o == name), *(OPTIONS if options else ())]
    values: dict[str, Any] = {}
    opts: dict[str, Any] = {}
    texts: dict[str, str] = {}
    parts: list[str] = []
    items = inner.split(",") if inner else []
    for i, item in enumerate(items):
        key, sep, val = item.partition("=")
        if not sep:
            if i != 0 or "divergence" not in names:
                raise MethodError(
                    f"method {label!r} has positional argument {item!r}; only the first argument of an objective "
                    f"with a divergence is positional (valid options are {', '.join(k + '=<value>' for k in valid)}).")
            key, val = "divergence", item
        if not key or not val:
            raise MethodError(f"method {label!r} has {item!r}, which is not of the form key=value.")
        if key not in valid:
            raise MethodError(f"method {label!r} has option {item!r}; valid options are "
                              f"{', '.join(k + '=<value>' for k in valid)}.")
        fname = ALIASES.get((name, key), key)
        if fname in values or key in opts:
            raise MethodError(f"method {label!r} sets {key!r} twice.")
        if fname in names:
            values[fname] = _typed(label, key, val, types.get(fname, Any))
        else:
            opts[key] = _typed(label, key, val, OPTIONS[key][1])
        texts[key] = val
        if fname == "divergence":
            parts.insert(0, val)
        else:
            parts.append(f"{key}={val}")
    if "divergence" in names and "divergence" not in values:
        from lad_ref.divergences import divergence_names

        raise MethodError(f"method {label!r} names no divergence; write {name}(<divergence>) with one of "
                          f"{', '.join(divergence_names())}.")
    try:
        spec.make_hparams(values)
    except ValueError as err:
        msg = str(err).removeprefix(f"objective {name!r}: ")
        raise MethodError(f"method {label!r}: {msg}") from None
    canonical = f"{name}({','.join(parts)})" if parts else name
    return Method(name, values, opts, canonical, texts)


def method_slug(label: str) -> str:
    """The run-folder name of a method label (:attr:`Method.slug`)."""
    return parse_method(label).slug

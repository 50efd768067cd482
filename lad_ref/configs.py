"""One config machinery for every command (trainer, evaluator, bandits): typed dataclasses as the
schema, YAML 1.2 files, and OmegaConf's structured configs to merge and type-check them.

Why OmegaConf: it is what verl users already write their configs in, it works on plain
dataclasses (the objectives' hyperparameter dataclasses nest unchanged), and it is small and pure
Python. Its errors are several lines long; :func:`build` turns them into this project's form, one
sentence naming the key, the value and what is valid, raised as :class:`ConfigError` (a
ValueError) before any work starts. The command-line side (flags, aliases) stays with each
command, which hands the values over as a dict.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException


class ConfigError(ValueError):
    """A bad configuration value; the message is one sentence naming the value and the choices."""


def hint(value: Any, choices) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or the empty string."""
    near = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""


# --------------------------------------------------------------------------------------
# YAML with YAML 1.2 numbers
# --------------------------------------------------------------------------------------


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's float rule: ``5e-1`` and ``1e-8`` are numbers.

    PyYAML follows YAML 1.1, where a float needs a dot (``5.0e-1``), so ``eta: 5e-1`` would
    arrive as the string "5e-1" while ``lr: 5.0e-1`` is a number. The extra resolver below is
    YAML 1.2's core-schema float pattern; it runs after 1.1's, so every other scalar keeps its
    meaning (as OmegaConf's own loader does for the same reason).
    """


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def yaml_load(text: str) -> Any:
    """Parse YAML text with YAML 1.2 numbers (see :class:`_Yaml12Loader`)."""
    return yaml.load(text, Loader=_Yaml12Loader)  # a SafeLoader subclass: no arbitrary objects


def parse_value(text: str) -> Any:
    """A command-line value, parsed as a YAML scalar/list (``1`` -> int, ``true`` -> bool, ``null`` -> None)."""
    try:
        return yaml_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text


def load_yaml(path: str | Path) -> dict:
    """A YAML file holding a mapping, as a dict; a missing, undecodable or invalid file is a ConfigError."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist.")
    try:
        data = yaml_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {str(p)!r} is not UTF-8 text (byte {e.start}).") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {str(p)!r}{where} is not valid YAML: {getattr(e, 'problem', e)}.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping, got {type(data).__name__}.")
    return data


# --------------------------------------------------------------------------------------
# dict -> typed dataclass
# --------------------------------------------------------------------------------------


def build(cls: type, data: dict | None):
    """An instance of dataclass ``cls`` from a (possibly partial, nested) dict of values.

    ``OmegaConf.merge`` checks every key against the schema and converts values the way YAML users
    expect ("3e-4" -> 3e-4 for a float, "no" -> False for a bool, 1 -> 1.0); an unknown key or a
    value of the wrong type raises ConfigError with one sentence.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a mapping of fields, got {type(data).__name__}.")
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), data))
    except OmegaConfBaseException as e:
        raise _one_sentence(cls, e, data) from None


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _field_at(root: type, path: list[str]):
    """(dataclass, field type) of the dotted ``path`` inside ``root``, or (class, None) if unknown."""
    cls = root
    for i, part in enumerate(path):
        hints = typing.get_type_hints(cls)
        if part not in hints:
            return cls, None
        if i == len(path) - 1:
            return cls, hints[part]
        cls = hints[part]
        if not dataclasses.is_dataclass(cls):
            return cls, None
    return cls, None


def _value_at(data: dict, path: list[str]) -> Any:
    for part in path:
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _one_sentence(root: type, e: OmegaConfBaseException, data: dict) -> ConfigError:
    """OmegaConf's multi-line error as one sentence naming the key, the value and what is valid."""
    key = str(getattr(e, "full_key", "") or "")
    path = [p for p in key.replace("[", ".[").split(".") if p and not p.startswith("[")]
    cls, tp = _field_at(root, path)
    if isinstance(e, ConfigKeyError) or tp is None:
        names = [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []
        where = f"in {'.'.join(path[:-1])}" if len(path) > 1 else "at the top level"
        return ConfigError(f"unknown config key {key!r}{hint(path[-1] if path else key, names)}; "
                           f"valid keys {where} are {', '.join(names)}.")
    value = _value_at(data, path)
    if typing.get_origin(tp) in (list, tuple):
        expected = f"a list of {_type_name(typing.get_args(tp)[0])}"
    elif dataclasses.is_dataclass(tp):
        expected = "a mapping of its fields"
    else:
        expected = " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None)) or _type_name(tp)
    return ConfigError(f"{key}={value!r} has the wrong type; expected {expected}.")

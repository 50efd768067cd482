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
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from lad_ref.checks import hint


class ConfigError(ValueError):
    """A bad configuration value; the message is one sentence naming the value and the choices."""


# --------------------------------------------------------------------------------------
# YAML 1.2 core schema on PyYAML
# --------------------------------------------------------------------------------------

# Why PyYAML with the core schema's resolvers and not ruamel.yaml (YAML 1.2 by default): OmegaConf
# already depends on PyYAML (ruamel.yaml would be one more dependency), and the core schema is
# four regular expressions (YAML 1.2.2, section 10.3.2); duplicate keys and recursive aliases are
# two small checks on PyYAML's composer and constructor.
_CORE_RESOLVERS = (
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", list("-+0123456789")),
    ("tag:yaml.org,2002:float",
     r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN)$",
     list("-+0123456789.")),
)


def _core_schema(cls):
    """Give a PyYAML loader/dumper class YAML 1.2's core schema resolvers instead of YAML 1.1's."""
    resolvers = {}
    for ch, pairs in yaml.SafeLoader.yaml_implicit_resolvers.items():
        keep = [(tag, rx) for tag, rx in pairs if tag.rsplit(":", 1)[-1] not in ("null", "bool", "int", "float")]
        if keep:
            resolvers[ch] = keep
    cls.yaml_implicit_resolvers = resolvers
    for tag, rx, first in _CORE_RESOLVERS:
        cls.add_implicit_resolver(tag, re.compile(rx), first)
    return cls


@_core_schema
class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader reading YAML 1.2's core schema, strictly.

    Numbers and booleans follow YAML 1.2 (``017`` is 17, ``0o17`` is 15, ``5e-1`` a float,
    ``1_000`` and ``yes`` are strings, as is ``1:30``); a key given twice in one mapping (a
    duplicate section included) and an alias inside the node it refers to (a recursive anchor)
    are errors, where PyYAML would keep the last value or build a cyclic object.
    """

    def compose_node(self, parent, index):
        open_anchors = self.__dict__.setdefault("_open_anchors", set())
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in open_anchors:
                raise yaml.composer.ComposerError(None, None, f"alias *{event.anchor} refers to a node that contains it "
                                                  "(a recursive anchor)", event.start_mark)
            return super().compose_node(parent, index)
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            open_anchors.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            open_anchors.discard(anchor)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key_node, _ in node.value:  # the mapping's own keys: a merged-in one (<<) may be overridden
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, (str, int, float, bool)) or key is None:
                    if key in seen and key_node.start_mark is not seen[key]:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"duplicate key {key!r} (first given on line {seen[key].line + 1})",
                            key_node.start_mark)
                    seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node):
        text = self.construct_scalar(node)
        if text.startswith("0o"):
            return int(text[2:], 8)
        if text.startswith("0x"):
            return int(text[2:], 16)
        return int(text, 10)


_Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _Yaml12Loader.construct_yaml_int)


@_core_schema
class _Yaml12Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper quoting by YAML 1.2's core schema, so that :func:`yaml_load` reads back what it wrote."""


def yaml_load(text: str) -> Any:
    """Parse YAML text by YAML 1.2's core schema (see :class:`_Yaml12Loader`)."""
    return yaml.load(text, Loader=_Yaml12Loader)  # a SafeLoader subclass: no arbitrary objects


def yaml_dump(data: Any) -> str:
    """``data`` as YAML 1.2 text that :func:`yaml_load` reads back unchanged."""
    return yaml.dump(data, Dumper=_Yaml12Dumper, sort_keys=False, default_flow_style=None)


def parse_value(text: str) -> Any:
    """A command-line value, parsed as a YAML scalar/list (``1`` -> int, ``true`` -> bool, ``null`` -> None)."""
    try:
        return yaml_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text


def load_yaml(path: str | Path) -> dict:
    """A YAML file holding a mapping, as a dict; a missing, undecodable or invalid file is a ConfigError."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"config file {str(p)!r} is a folder; pass a YAML file.")
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
    _strict_scalars(cls, data)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cls), data)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        raise _one_sentence(cls, e, data) from None
    except (TypeError, ValueError) as e:  # a nested dataclass's own validation (__post_init__), e.g. eta = 0
        where = _failing_section(merged)
        raise ConfigError(f"{where}: {e}" if where else str(e)) from None


def _failing_section(node, prefix: str = "") -> str:
    """The dotted key of the innermost section of ``node`` whose dataclass refuses its values ('' if none)."""
    for key in node:
        child = node[key]
        if OmegaConf.is_dict(child) and dataclasses.is_dataclass(OmegaConf.get_type(child)):
            inner = _failing_section(child, f"{prefix}{key}.")
            if inner:
                return inner
            try:
                OmegaConf.to_object(child)
            except (TypeError, ValueError):
                return f"{prefix}{key}"
    return ""


def _strict_scalars(cls: type, data: dict, prefix: str = "") -> None:
    """Refuse what OmegaConf would coerce silently: a number for a bool (``--optim.shuffle 2`` -> true) and
    a string with underscores for a number (``"1_000"`` -> 1000.0, which YAML 1.2 reads as a string)."""
    hints = typing.get_type_hints(cls)
    for k, v in data.items():
        tp = hints.get(k)
        if tp is None:
            continue  # unknown keys get OmegaConf's error (with the valid keys)
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        base = args[0] if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1 else tp
        key = f"{prefix}{k}"
        if dataclasses.is_dataclass(base) and isinstance(v, dict):
            _strict_scalars(base, v, key + ".")
        elif base is bool and isinstance(v, (int, float)) and not isinstance(v, bool):
            raise ConfigError(f"{key}={v!r} is not a boolean; valid values are true, false.")
        elif base in (int, float) and isinstance(v, str) and "_" in v:
            raise ConfigError(f"{key}={v!r} is not a YAML 1.2 number (no underscores); write it without them.")


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


# --------------------------------------------------------------------------------------
# schema sections derived from a registry
# --------------------------------------------------------------------------------------


def registry_section(name: str, base: type, entries: dict[str, type], what: str) -> type:
    """A dataclass subclassing ``base`` with one nested field per registry entry.

    ``entries`` maps a registered name (an objective, a task, a rollout backend) to the dataclass of
    its settings; the section gets a field of that name holding the settings with their defaults,
    so a registration made before the config is read gets its YAML section and its
    ``--<section>.<name>.<field>`` flags with no edit here. Built at call time (not import time) for
    that reason. ``what`` names the kind of entry in the field's help and in the error for a name
    that cannot be a config key.
    """
    taken = {f.name for f in dataclasses.fields(base)}
    fields = []
    for key, settings in entries.items():
        if not key.isidentifier() or key in taken:
            raise ConfigError(
                f"{what} {key!r} cannot have a config section: its name must be a Python identifier and not one of "
                f"{', '.join(sorted(taken))}."
            )
        if not dataclasses.is_dataclass(settings):
            raise ConfigError(f"{what} {key!r}: its settings must be a dataclass, got {settings!r}.")
        doc = (settings.__doc__ or "").strip().splitlines()
        help_ = f"{what} {key}: {doc[0] if doc else settings.__name__}"
        fields.append((key, settings, dataclasses.field(default_factory=settings, metadata={"help": help_})))
    return dataclasses.make_dataclass(name, fields, bases=(base,))

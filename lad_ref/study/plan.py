"""The study's plan: its YAML (groups of methods, seeds, comparisons, variants), the runs they need and
each run's folder and config. Methods are labels of the lad_ref.methods grammar; a run's folder is
``<output_dir>/<variant>/<method slug>/seed<k>/`` (:attr:`lad_ref.methods.Method.slug`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lad_ref.config_io import build
from lad_ref.llm.config import Config, ConfigError, from_dict, load_yaml, merge_overrides, validate
from lad_ref.losses import objective_names
from lad_ref.methods import parse_method

MAIN_VARIANT = "main"


# ======================================================================================
# the study's configuration
# ======================================================================================


@dataclass
class GroupConfig:
    """One named set of runs and the paired comparisons reported for it."""

    methods: list[str] = field(default_factory=list, metadata={"help": "Methods to run (grpo, lad(js), lad(kl,eta=2), ...)."})
    seeds: list[int] = field(default_factory=list, metadata={"help": "Seeds; empty = the study's seeds."})
    comparisons: list[str] = field(
        default_factory=list, metadata={"help": "'A - B' pairs (both methods of this group) reported with CIs."}
    )
    variants: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Protocol variants: name -> dotted overrides on top of the study protocol; empty = main."},
    )


@dataclass
class StudyConfig:
    """A paired multi-seed study on the toy task (llm/configs/study.yaml)."""

    base_config: str = field(default="llm/configs/toy.yaml", metadata={"help": "The run config every run starts from."})
    overrides: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "The study protocol: dotted overrides applied to every run."}
    )
    output_dir: str = field(default="runs/study", metadata={"help": "Where the run folders go."})
    seeds: list[int] = field(default_factory=lambda: list(range(8)), metadata={"help": "Default seeds of a group."})
    groups: dict[str, Any] = field(default_factory=dict, metadata={"help": "name -> GroupConfig."})
    bootstrap_resamples: int = field(default=10_000, metadata={"help": "Bootstrap resamples of the seeds."})
    bootstrap_seed: int = field(default=0, metadata={"help": "Seed of the bootstrap (fixed: the CI is reproducible)."})
    brake_variants: list[str] = field(
        default_factory=lambda: ["k4", MAIN_VARIANT],
        metadata={"help": "Variants whose per-step brake engagement the brake figure compares."},
    )
    brake_group: str = field(default="protocol", metadata={"help": "Group whose runs feed the brake figure."})
    curve_group: str = field(default="headline", metadata={"help": "Group whose methods the pass@k figure shows."})
    curve_methods: list[str] = field(
        default_factory=lambda: ["grpo", "lad(js)"], metadata={"help": "Methods on the pass@k figure (plus the start)."}
    )


def _group(name: str, values) -> GroupConfig:
    try:
        return build(GroupConfig, values)
    except ConfigError as e:
        raise ConfigError(f"groups.{name}: {e}") from None


def load_study(path: str | Path) -> tuple[StudyConfig, dict[str, GroupConfig]]:
    """Read and check a study YAML; every method name and comparison is checked before any work."""
    data = load_yaml(path)
    study = build(StudyConfig, data)
    groups = {}
    for name, g in study.groups.items():
        if not isinstance(g, dict):
            raise ConfigError(f"study group {name!r} must be a mapping of methods, seeds, comparisons, variants.")
        grp = _group(name, g)
        if not grp.methods:
            raise ConfigError(f"study group {name!r} lists no methods.")
        if not grp.seeds:
            grp.seeds = list(study.seeds)
        for m in grp.methods:
            parse_method(m, objective_names(scope="any"))  # what a sampled LLM batch can use
        for c in grp.comparisons:
            a, b = parse_comparison(c)
            for x in (a, b):
                if x not in grp.methods:
                    raise ConfigError(
                        f"comparison {c!r} of group {name!r} names {x!r}, which is not one of its methods "
                        f"({', '.join(grp.methods)})."
                    )
        for v, ov in grp.variants.items():
            if not isinstance(ov, dict):
                raise ConfigError(f"variant {v!r} of group {name!r} must be a mapping of dotted overrides.")
        groups[name] = grp
    if not groups:
        raise ConfigError(f"study config {str(path)!r} defines no groups.")
    return study, groups


def parse_comparison(text: str) -> tuple[str, str]:
    parts = [p.strip() for p in text.split(" - ")]
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"comparison {text!r} must read 'A - B' (two method names around ' - ').")
    return parts[0], parts[1]


# ======================================================================================
# runs: config, folder, status
# ======================================================================================


@dataclass(frozen=True)
class RunSpec:
    variant: str
    method: str
    seed: int

    def folder(self, root: Path) -> Path:
        return root / self.variant / parse_method(self.method).slug / f"seed{self.seed}"


def run_config(study: StudyConfig, spec: RunSpec, variants: dict[str, dict], root: Path) -> Config:
    """The run's Config: base YAML <- study protocol <- variant <- method <- seed/output/threads; validated."""
    if spec.variant != MAIN_VARIANT and spec.variant not in variants:
        raise ConfigError(f"unknown variant {spec.variant!r}; valid variants are {', '.join([MAIN_VARIANT, *variants])}.")
    data = load_yaml(study.base_config)
    merge_overrides(data, study.overrides)
    merge_overrides(data, variants.get(spec.variant, {}))
    merge_overrides(data, parse_method(spec.method).trainer_overrides())
    merge_overrides(data, {
        "seed": spec.seed, "output_dir": str(spec.folder(root)), "threads": 1,
        "logging.progress_bar": False, "logging.plots": False,
    })
    return validate(from_dict(data))


def plan(study: StudyConfig, groups: dict[str, GroupConfig], names: list[str]) -> list[RunSpec]:
    """The runs the named groups need, seed-major (a seed's runs finish together, so pairs complete early)."""
    specs: list[RunSpec] = []
    for name in names:
        g = groups[name]
        for seed in g.seeds:
            for variant in (g.variants or {MAIN_VARIANT: {}}):
                for method in g.methods:
                    s = RunSpec(variant, method, seed)
                    if s not in specs:
                        specs.append(s)
    return specs


def all_variants(groups: dict[str, GroupConfig]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for name, g in groups.items():
        for v, ov in g.variants.items():
            if v in out and out[v] != ov and v != MAIN_VARIANT:
                raise ConfigError(f"variant {v!r} is defined differently in two groups (one is {name!r}).")
            if v != MAIN_VARIANT:
                out[v] = ov
            elif ov:
                raise ConfigError(f"variant {MAIN_VARIANT!r} of group {name!r} must have no overrides (it is the protocol).")
    return out



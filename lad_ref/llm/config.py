"""Run configuration: dataclasses, YAML + command-line overrides, validation before any work.

A run is described by one :class:`Config` (sections ``model``, ``data``, ``sft``, ``rollout``,
``objective``, ``optim``, ``eval``, ``logging``, ``checkpoint``). It is built from

1. the dataclass defaults,
2. a YAML file (``--config llm/configs/toy.yaml``),
3. command-line overrides: ``--section.field VALUE`` for any field (``--rollout.temperature 0.8``,
   ``--objective.lad.eta 2``) plus short aliases for the common ones (``--objective lad
   --divergence js --eta 1 --output-dir DIR``; see :data:`ALIASES`).

The schema is :func:`schema`: this module's :class:`Config` with sections derived from the
registries when a config is read: ``data.<task>`` for each registered task with settings
(``data.digit_sum``), ``rollout.<backend>`` for each backend with settings (``rollout.vllm``). The
modules listed in ``plugins`` are imported first, so what they register has its section and flags.

Values are parsed as YAML 1.2 scalars (``1`` is an int, ``5e-1`` a float, ``true`` a bool,
``null`` None, ``[1, 2]`` a list) and checked against the field's type by OmegaConf's structured
configs, the dataclasses below being the schema (``lad_ref/config_io.py``, shared with the bandit
commands, says why OmegaConf). An unknown key, a value of the wrong type, an unknown objective / divergence / aggregation mode / estimator, or an invalid hyperparameter
raises :class:`ConfigError` with one sentence naming the value and the valid choices, before
any model is loaded. The resolved config (objective hyperparameters filled with the loss
function's defaults) is written to ``<output_dir>/config.yaml``.

Objective hyperparameters live in one section per registered objective (``objective.lad``,
``objective.grpo``, ..., and one for any objective registered before the config is read), whose
type IS the objective's hyperparameter dataclass (``get_objective(name).hparams``): the schema
(:func:`schema`) is derived from the registry, so the loss module is the single source of truth
for names, defaults and valid values, and building the config builds and validates the
hyperparameter object the loss receives (:func:`objective_hp`). Which objectives a sampled LLM
batch can use, and what the trainer must supply them, is read from the same spec.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lad_ref.checks import choice, hint, positive
from lad_ref.config_io import ConfigError, build, load_yaml, parse_value, registry_section, yaml_dump
from lad_ref.llm.schedule import SCHEDULES


@dataclass
class TinyModelConfig:
    """Architecture of the ``tiny`` preset (used when ``model.name_or_path: tiny``)."""

    architecture: str = field(default="qwen2", metadata={"help": "qwen2 or llama."})
    hidden_size: int = field(default=128, metadata={"help": "Model width."})
    num_layers: int = field(default=4, metadata={"help": "Decoder layers."})
    num_heads: int = field(default=4, metadata={"help": "Attention (query) heads."})
    num_kv_heads: int = field(default=2, metadata={"help": "Key/value heads (grouped-query attention)."})
    intermediate_size: int = field(default=384, metadata={"help": "MLP width."})
    max_position_embeddings: int = field(default=128, metadata={"help": "Longest prompt + response, in characters."})


@dataclass
class LoraSettings:
    """LoRA adapters (peft) for models too big to fully fine-tune on one GPU."""

    enabled: bool = field(default=False, metadata={"help": "Train LoRA adapters instead of all weights."})
    r: int = field(default=16, metadata={"help": "Adapter rank."})
    alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator (scale = alpha / r)."})
    dropout: float = field(default=0.0, metadata={"help": "Adapter dropout (0 keeps pi_old recomputation exact)."})
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        metadata={"help": "Linear layers that get adapters."},
    )


@dataclass
class ModelConfig:
    """Which policy to train and how to hold it in memory."""

    name_or_path: str = field(
        default="tiny",
        metadata={"help": "'tiny' (the ~1M-parameter CPU preset), a local folder, or a hub id the machine can reach."},
    )
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig, metadata={"help": "The tiny preset's architecture."})
    dtype: str = field(
        default="auto",
        metadata={"help": "auto (bfloat16 on a bf16 GPU, else float32), float32, bfloat16 or float16."},
    )
    attn_implementation: str | None = field(
        default=None, metadata={"help": "Passed to from_pretrained (eager, sdpa, flash_attention_2); null = default."}
    )
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Trade compute for activation memory."})
    lora: LoraSettings = field(default_factory=LoraSettings, metadata={"help": "LoRA adapters."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom modelling code from the checkpoint."})
    chat_template: bool | None = field(
        default=None,
        metadata={"help": "Wrap prompts in the tokenizer's chat template; null = when the tokenizer has one."},
    )
    system_prompt: str | None = field(default=None, metadata={"help": "Optional system message for the chat template."})


@dataclass
class DataConfig:
    """Prompts, answers and rewards. The fields below are shared by the tasks; a registered task's own
    settings are the derived section ``data.<task>`` (e.g. ``data.digit_sum``, see :func:`schema`)."""

    task: str = field(
        default="digit_sum",
        metadata={"help": "A registered task: digit_sum (synthetic toy), math, code, or one a plugin registers "
                  "(lad_ref.llm.tasks.register_task); its settings, if any, are the section data.<task>."},
    )
    train_files: list[str] = field(default_factory=list, metadata={"help": "math/code: .jsonl or .parquet files."})
    eval_files: list[str] = field(default_factory=list, metadata={"help": "math/code: held-out .jsonl/.parquet files."})
    prompt_field: str = field(default="prompt", metadata={"help": "math/code: record field holding the question."})
    answer_field: str = field(
        default="answer", metadata={"help": "math: field with the reference answer; code: field with the tests."}
    )
    prompt_template: str = field(
        default="{prompt}",
        metadata={"help": "math/code: format string applied to the question ({prompt} is replaced)."},
    )
    max_train_prompts: int | None = field(default=None, metadata={"help": "Use at most this many training prompts."})
    max_eval_prompts: int | None = field(default=None, metadata={"help": "Use at most this many held-out prompts."})


@dataclass
class SFTConfig:
    """Supervised warm start on sampled valid solutions (tasks that can sample them: digit_sum)."""

    enabled: bool = field(default=True, metadata={"help": "Run SFT before RL (ignored by tasks without solutions)."})
    steps: int = field(default=600, metadata={"help": "Optimizer steps."})
    batch_size: int = field(default=128, metadata={"help": "Sequences per step."})
    lr: float = field(default=3e-3, metadata={"help": "Peak learning rate (AdamW)."})
    warmup_steps: int = field(default=50, metadata={"help": "Linear warm-up steps, then cosine decay to 10%."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "Where SFT checkpoints are cached, keyed by a hash of everything that determines them; "
            "null = $LAD_REF_CACHE/sft or ~/.cache/lad_ref/sft."
        },
    )


@dataclass
class RolloutConfig:
    """Sampling the G responses per prompt whose log-probs become pi_old. A registered backend's own
    settings are the derived section ``rollout.<backend>`` (e.g. ``rollout.vllm``, see :func:`schema`)."""

    backend: str = field(
        default="hf",
        metadata={"help": "A registered rollout backend: hf (transformers generate), hf-static (static KV cache, "
                  "compiled on CUDA), hf-continuous (transformers continuous batching), vllm (GPU + vLLM only), or "
                  "one a plugin registers (lad_ref.llm.backends.register_backend); its settings, if any, are the "
                  "section rollout.<backend> (rollout.vllm)."},
    )
    prompts_per_step: int = field(default=16, metadata={"help": "Prompts per RL step."})
    group_size: int = field(default=8, metadata={"help": "G: responses per prompt (>= 2 for group advantages)."})
    max_new_tokens: int = field(default=8, metadata={"help": "Longest response, in tokens."})
    temperature: float = field(
        default=1.0,
        metadata={"help": "Sampling temperature; pi_old and pi_theta are both softmax(logits / temperature)."},
    )
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling (1 = off; pi_old ignores the truncation)."})
    top_k: int = field(default=0, metadata={"help": "Top-k sampling (0 = off; pi_old ignores the truncation)."})
    batch_size: int = field(default=512, metadata={"help": "Most sequences per generate() call."})
    dynamic_sampling: bool = field(
        default=False,
        metadata={"help": "Drop tied groups (all G rewards equal) and sample further prompts until prompts_per_step "
                  "untied groups are collected (verl algorithm.filter_groups / DAPO; see train.draw_rollouts)."},
    )
    max_sampling_rounds: int = field(
        default=10,
        metadata={"help": "dynamic_sampling: most rounds of prompts_per_step prompts per step; the run stops with "
                  "an error beyond (verl's max_num_gen_batches)."},
    )


@dataclass
class ObjectiveConfig:
    """The policy objective (any of lad_ref.losses) and the advantage that feeds it.

    :func:`schema` adds one field per registered objective of scope ``any``, named after it and
    holding its hyperparameter dataclass (``objective.lad.eta``, ``objective.grpo.clip_ratio_high``).
    """

    name: str = field(
        default="lad",
        metadata={"help": "A registered objective of scope 'any': lad, grpo, ppo_penalty, entadv, kl_cov, clip_cov, "
                  "flowrl, ..."},
    )
    loss_agg_mode: str = field(
        default="token-mean",
        metadata={"help": "token-mean, seq-mean-token-mean, seq-mean-token-sum, seq-mean-token-sum-norm, token-sum."},
    )
    advantage_estimator: str = field(default="grpo", metadata={"help": "grpo, drgrpo or rloo (lad_ref.advantages)."})
    kl_coef: float = field(
        default=0.0, metadata={"help": "Weight of the k3 KL(pi_theta || pi_ref) term; pi_ref = the start policy."}
    )
    tied_loss_weight: float = field(
        default=1.0,
        metadata={"help": "Multiplies the objective's loss on the rows of tied groups (all G rewards equal); they "
                  "stay in the token-mean normaliser, so 0 removes only the objective's own term there (GRPO's "
                  "is 0 already: its update is unchanged). >= 0."},
    )
    logz_head_layers: int = field(default=3, metadata={"help": "flowrl: layers of the log Z MLP head."})


@dataclass
class OptimConfig:
    """The RL update: epochs over each rollout batch, minibatches, accumulation, AdamW + schedule."""

    steps: int = field(default=100, metadata={"help": "RL steps (one rollout batch each)."})
    epochs: int = field(
        default=2, metadata={"help": "Passes over each rollout batch (>= 2 makes r != 1, where LAD's weight acts)."}
    )
    mini_batch_size: int = field(default=64, metadata={"help": "Sequences per optimizer step."})
    micro_batch_size: int = field(
        default=64, metadata={"help": "Sequences per forward/backward; mini/micro = gradient-accumulation steps."}
    )
    lr: float = field(default=1e-4, metadata={"help": "Peak learning rate."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999], metadata={"help": "AdamW betas."})
    eps: float = field(default=1e-8, metadata={"help": "AdamW epsilon."})
    schedule: str = field(default="constant", metadata={"help": "constant, linear or cosine (after warm-up)."})
    warmup_steps: int = field(default=0, metadata={"help": "Linear warm-up, in optimizer steps."})
    min_lr_ratio: float = field(default=0.0, metadata={"help": "linear/cosine: final lr as a fraction of the peak."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (0 = off)."})
    shuffle: bool = field(default=True, metadata={"help": "Shuffle the rollout batch before each epoch."})


@dataclass
class EvalConfig:
    """Held-out evaluation: k samples per prompt."""

    every: int = field(default=0, metadata={"help": "Evaluate every N RL steps (0 = only at start and end)."})
    num_samples: int = field(default=32, metadata={"help": "k: samples per held-out prompt."})
    pass_ks: list[int] = field(
        default_factory=lambda: [1, 4], metadata={"help": "Extra k' < k for unbiased pass@k' (pass@k is always on)."}
    )
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling (1 = off)."})
    top_k: int = field(default=0, metadata={"help": "Top-k sampling (0 = off)."})
    max_new_tokens: int | None = field(default=None, metadata={"help": "null = rollout.max_new_tokens."})
    batch_size: int = field(default=1024, metadata={"help": "Most sequences per generate() call."})


@dataclass
class LoggingConfig:
    """Console, metrics.jsonl and plots."""

    log_every: int = field(default=1, metadata={"help": "Write a metrics.jsonl line every N steps."})
    progress_bar: bool = field(default=True, metadata={"help": "tqdm bars with live reward and accuracy."})
    plots: bool = field(default=True, metadata={"help": "Write plots/*.png at the end of the run."})
    report_to: list[str] = field(
        default_factory=list,
        metadata={"help": "Trackers beside metrics.jsonl: any of tensorboard, wandb, trackio ([] or [none]: none)."},
    )
    project: str = field(default="lad_ref", metadata={"help": "wandb / trackio project name."})
    tied_grad_share: bool = field(
        default=False,
        metadata={"help": "Log train/grad_share_tied: the share of the objective's gradient norm from tied groups "
                  "on each step's first minibatch (two extra backward passes; train.tied_grad_norms)."},
    )


@dataclass
class CheckpointConfig:
    """Checkpoints under <output_dir>/checkpoints/step_XXXXXX (safetensors + trainer state)."""

    every: int = field(default=25, metadata={"help": "Save every N RL steps (the last step is always saved)."})
    keep_last: int = field(default=2, metadata={"help": "Keep the newest N checkpoints (older ones are deleted)."})


@dataclass
class Config:
    """Everything a run depends on; written resolved to <output_dir>/config.yaml."""

    seed: int = field(default=0, metadata={"help": "Fixes every random choice (init, SFT data, rollouts, shuffles)."})
    output_dir: str | None = field(default=None, metadata={"help": "Run folder (required)."})
    device: str = field(default="auto", metadata={"help": "auto (cuda if available), cpu or cuda."})
    threads: int | None = field(default=None, metadata={"help": "torch.set_num_threads (null = torch's default)."})
    plugins: list[str] = field(
        default_factory=list,
        metadata={"help": "Python modules imported before the config is read (dotted names on sys.path, e.g. "
                  "my_pkg.my_task): they register tasks, rollout backends or objectives, whose settings sections "
                  "(data.<task>, rollout.<backend>) and flags then exist. On the command line: --plugins "
                  "'[a.b, c.d]' or --plugins a.b."},
    )
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "Policy model."})
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "Task and data."})
    sft: SFTConfig = field(default_factory=SFTConfig, metadata={"help": "Supervised warm start."})
    rollout: RolloutConfig = field(default_factory=RolloutConfig, metadata={"help": "Rollouts."})
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig, metadata={"help": "Objective."})
    optim: OptimConfig = field(default_factory=OptimConfig, metadata={"help": "Optimisation."})
    eval: EvalConfig = field(default_factory=EvalConfig, metadata={"help": "Evaluation."})
    logging: LoggingConfig = field(default_factory=LoggingConfig, metadata={"help": "Logging."})
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig, metadata={"help": "Checkpoints."})


# Short command-line aliases -> dotted config keys.
ALIASES: dict[str, str] = {
    "objective": "objective.name",
    "divergence": "objective.lad.divergence",
    "eta": "objective.lad.eta",
    "level": "objective.lad.level",
    "output_dir": "output_dir",
    "seed": "seed",
    "model": "model.name_or_path",
    "steps": "optim.steps",
    "lr": "optim.lr",
    "epochs": "optim.epochs",
    "group_size": "rollout.group_size",
    "kl_coef": "objective.kl_coef",
    "device": "device",
}

DEVICES = ("auto", "cpu", "cuda")
MODEL_DTYPES = ("auto", "float32", "bfloat16", "float16")
TINY_ARCHITECTURES = ("qwen2", "llama")

# ======================================================================================
# dict <-> dataclass with type checks
# ======================================================================================


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(data: dict) -> Config:
    """Build a Config from a (possibly partial) nested dict; unknown keys, wrong types and values an
    objective's hyperparameter dataclass refuses raise ConfigError (:func:`lad_ref.config_io.build`:
    OmegaConf's structured-config merge over :func:`schema`).

    The modules in ``plugins`` are imported first, so that the tasks and backends they register have
    their sections in the :func:`schema` the dict is read with; keys of older config files are
    translated first (:func:`upgrade_legacy`). ``data`` itself is not changed.
    """
    if isinstance(data, dict):
        data = upgrade_legacy(data)
        if isinstance(data.get("plugins"), str):  # --plugins my_pkg.my_task: one module
            data["plugins"] = [data["plugins"]]
        load_plugins(data.get("plugins"))
    return build(schema(), data)


# ======================================================================================
# the schema: Config with its sections derived from the registries
# ======================================================================================


def _derived_sections() -> dict[str, tuple[type, dict[str, type], str]]:
    """Config field -> (its base section, {registered name: settings dataclass}, what an entry is).

    Read from the registries now, so that what a plugin registered before the config is read has
    its section. Another registry-derived section is one more entry here.
    """
    from lad_ref.llm.backends import backend_sections
    from lad_ref.llm.tasks import task_sections
    from lad_ref.losses import OBJECTIVES

    return {
        "data": (DataConfig, task_sections(), "task"),
        "rollout": (RolloutConfig, backend_sections(), "rollout backend"),
        # one section per objective a sampled batch can use: objective.<name> IS its hyperparameter dataclass
        "objective": (ObjectiveConfig, {n: s.hparams for n, s in OBJECTIVES.items() if s.scope == "any"}, "objective"),
    }


_SCHEMAS: dict[tuple, type] = {}


def schema() -> type:
    """:class:`Config` whose registry-derived sections have one nested field per registered entry with
    settings (``data.digit_sum``, ``rollout.vllm``, ``objective.lad``, ..., and a plugin's ``data.<task>`` /
    ``rollout.<backend>`` / ``objective.<name>``):
    the class configs are read with (YAML, ``--section.name.field`` flags, --help). The same registry
    contents give the same class."""
    sections = _derived_sections()
    key = tuple((f, base, tuple(entries.items())) for f, (base, entries, _) in sections.items())
    if key not in _SCHEMAS:
        _SCHEMAS[key] = derived_config(
            Config, {f: registry_section(base.__name__, base, entries, what) for f, (base, entries, what) in sections.items()}
        )
    return _SCHEMAS[key]


def derived_config(base: type, sections: dict[str, type]) -> type:
    """A subclass of dataclass ``base`` whose fields named in ``sections`` have the given (sub)classes as
    type and default (the fields keep their place, help and order)."""
    own = {f.name: f for f in dataclasses.fields(base)}
    fields = [(name, cls, field(default_factory=cls, metadata=own[name].metadata)) for name, cls in sections.items()]
    cls = dataclasses.make_dataclass(base.__name__, fields, bases=(base,))
    cls.__module__ = base.__module__
    return cls


def load_plugins(modules: list[str] | None) -> None:
    """Import each module of ``plugins`` (its registrations happen on import; a module is imported once)."""
    import importlib

    if modules is None:
        return
    if not isinstance(modules, (list, tuple)) or not all(isinstance(m, str) and m for m in modules):
        raise ConfigError(f"plugins={modules!r} must be a list of module names (e.g. [my_pkg.my_task]).")
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ConfigError(
                f"plugins: cannot import {name!r} ({type(e).__name__}: {e}); a plugin is a module on sys.path "
                "(PYTHONPATH or an installed package) given by its dotted name."
            ) from None


# Keys of config files written by earlier versions -> where they are now. A stored config.yaml (a run
# folder being resumed, evaluated or checked by a study) reads back with its values moved here.
LEGACY_KEYS = {
    "rollout.vllm_gpu_memory_utilization": "rollout.vllm.gpu_memory_utilization",
    "rollout.vllm_max_model_len": "rollout.vllm.max_model_len",
}


def upgrade_legacy(data: dict) -> dict:
    """A copy of config dict ``data`` with the :data:`LEGACY_KEYS` moved to their new place (sections
    copied, not shared). A legacy key given beside its new key with another value is a ConfigError.
    An empty ``objective.custom`` (config files written before the objective sections were derived
    from the registry) is dropped; a non-empty one names the objective's own section instead."""
    data = dict(data)
    objective = data.get("objective")
    if isinstance(objective, dict) and "custom" in objective:
        objective = data["objective"] = dict(objective)
        custom = objective.pop("custom")
        if custom:
            raise ConfigError(
                "objective.custom is gone: an objective registered outside lad_ref has its own section, "
                f"objective.<name> (here: {', '.join(f'objective.{k}' for k in custom)})."
            )
    for old, new in LEGACY_KEYS.items():
        section, key = old.split(".")
        if not isinstance(data.get(section), dict) or key not in data[section]:
            continue
        sec = data[section] = dict(data[section])
        value = sec.pop(key)
        _, sub, leaf = new.split(".")
        if sec.get(sub) is not None and not isinstance(sec[sub], dict):
            continue  # a value where the new section goes: the schema names that error
        target = sec[sub] = dict(sec.get(sub) or {})
        if leaf in target and target[leaf] != value:
            raise ConfigError(f"{old}={value!r} (its former name) and {new}={target[leaf]!r} are both given; "
                              f"keep only {new}.")
        target[leaf] = value
    return data


def _set_dotted(data: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    d = data
    for p in parts[:-1]:
        nxt = d.get(p)
        if nxt is None:
            nxt = d[p] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"cannot set {key!r}: {p!r} is a value, not a section.")
        d = nxt
    d[parts[-1]] = value


def merge_overrides(data: dict, overrides: dict[str, Any]) -> dict:
    """Apply ``{"a.b.c": value}`` overrides onto a nested dict (in place) and return it."""
    for key, value in overrides.items():
        _set_dotted(data, key, value)
    return data


def save_yaml(cfg: Config, path: str | Path) -> None:
    """Write the resolved config whole (temp file + fsync + rename), in YAML 1.2 (``lad_ref.config_io.yaml_dump``)."""
    from lad_ref.llm.files import write_atomic

    write_atomic(path, yaml_dump(to_dict(cfg)))


# ======================================================================================
# semantic validation (choices, ranges, objective hyperparameters)
# ======================================================================================


def objective_hp(cfg: Config) -> Any:
    """The active objective's hyperparameter object (``cfg.objective.<name>``), validated when the
    config was built; the trainer passes it to the loss as ``hp``."""
    return getattr(cfg.objective, cfg.objective.name)


def _finite_numbers(d: dict, prefix: str = "") -> None:
    """Refuse NaN and inf anywhere in the config (``--optim.lr inf`` would give NaN at step 1, after SFT)."""
    import math

    for k, v in d.items():
        if isinstance(v, dict):
            _finite_numbers(v, f"{prefix}{k}.")
        elif isinstance(v, (list, tuple)):
            for x in v:
                if isinstance(x, float) and not math.isfinite(x):
                    raise ConfigError(f"{prefix}{k}={v!r} holds {x}; every number in a config must be finite.")
        elif isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{prefix}{k}={v} is not a finite number; pass a finite value.")


def validate(cfg: Config) -> Config:
    """Check every choice and range (the hyperparameter dataclasses checked theirs when the config was
    built). Returns cfg. A bad value raises ConfigError, one sentence (lad_ref.checks' validators)."""
    try:
        return _validate(cfg)
    except ConfigError:
        raise
    except ValueError as e:  # lad_ref.checks speaks ValueError; a config's errors are ConfigErrors
        raise ConfigError(str(e)) from None


def _validate(cfg: Config) -> Config:
    from lad_ref.advantages import ESTIMATORS
    from lad_ref.llm.backends import backend_settings, check_device, get_backend
    from lad_ref.llm.tasks import get_task_spec, task_settings
    from lad_ref.losses import AGG_MODES, objective_names

    _finite_numbers(to_dict(cfg))
    if not -2**63 <= cfg.seed < 2**63:
        raise ConfigError(f"seed={cfg.seed} is out of range; a seed must fit in 64 bits (-2**63 <= seed < 2**63).")
    o = cfg.objective
    # objectives of scope "finite" (lad_theory) need every action enumerated: not for a sampled LLM batch
    choice("objective.name", o.name, objective_names(scope="any"))
    choice("objective.loss_agg_mode", o.loss_agg_mode, AGG_MODES)
    choice("objective.advantage_estimator", o.advantage_estimator, ESTIMATORS)
    positive("objective.kl_coef", o.kl_coef, allow_zero=True)
    positive("objective.logz_head_layers", o.logz_head_layers)
    positive("objective.tied_loss_weight", o.tied_loss_weight, allow_zero=True)

    choice("device", cfg.device, DEVICES)
    if cfg.threads is not None:
        positive("threads", cfg.threads)
    m = cfg.model
    choice("model.dtype", m.dtype, MODEL_DTYPES)
    choice("model.tiny.architecture", m.tiny.architecture, TINY_ARCHITECTURES)
    for k in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size", "max_position_embeddings"):
        positive(f"model.tiny.{k}", getattr(m.tiny, k))
    if m.tiny.hidden_size % m.tiny.num_heads or m.tiny.num_heads % m.tiny.num_kv_heads:
        raise ConfigError(
            f"model.tiny: hidden_size={m.tiny.hidden_size} must be divisible by num_heads={m.tiny.num_heads}, "
            f"and num_heads by num_kv_heads={m.tiny.num_kv_heads}."
        )
    d = cfg.data
    task = get_task_spec(d.task)  # an unknown name: one sentence listing the registered tasks
    if task.needs_files and not d.train_files:
        raise ConfigError(f"data.task={d.task!r} needs data.train_files (a list of .jsonl or .parquet files).")
    if "{prompt}" not in d.prompt_template:
        raise ConfigError(f"data.prompt_template={d.prompt_template!r} must contain the placeholder {{prompt}}.")
    task.check(task_settings(cfg))

    r = cfg.rollout
    backend = get_backend(r.backend)  # an unknown name: one sentence listing the registered backends
    backend.check(backend_settings(cfg))
    check_device(r.backend, cfg.device)  # e.g. vllm with device: cpu
    if r.group_size < 2:
        raise ConfigError(f"rollout.group_size={r.group_size!r} must be >= 2: group advantages need two responses.")
    for k in ("prompts_per_step", "max_new_tokens", "temperature", "top_p", "batch_size"):
        positive(f"rollout.{k}", getattr(r, k))
    positive("rollout.top_k", r.top_k, allow_zero=True)
    positive("rollout.max_sampling_rounds", r.max_sampling_rounds)

    op = cfg.optim
    for k in ("steps", "epochs", "mini_batch_size", "micro_batch_size", "lr", "eps"):
        positive(f"optim.{k}", getattr(op, k))
    choice("optim.schedule", op.schedule, SCHEDULES)
    positive("optim.max_grad_norm", op.max_grad_norm, allow_zero=True)
    rollout_batch = r.prompts_per_step * r.group_size
    if rollout_batch % op.mini_batch_size:
        raise ConfigError(
            f"optim.mini_batch_size={op.mini_batch_size} must divide the rollout batch "
            f"(rollout.prompts_per_step * rollout.group_size = {rollout_batch})."
        )
    if op.mini_batch_size % op.micro_batch_size:
        raise ConfigError(
            f"optim.micro_batch_size={op.micro_batch_size} must divide optim.mini_batch_size={op.mini_batch_size}."
        )
    if len(op.betas) != 2 or not all(0.0 <= b < 1.0 for b in op.betas):
        raise ConfigError(f"optim.betas={op.betas!r} must hold two numbers in [0, 1).")
    positive("optim.weight_decay", op.weight_decay, allow_zero=True)
    positive("optim.warmup_steps", op.warmup_steps, allow_zero=True)
    if not 0.0 <= op.min_lr_ratio <= 1.0:
        raise ConfigError(f"optim.min_lr_ratio={op.min_lr_ratio!r} must be between 0 and 1 (a fraction of the peak lr).")

    for key, top_p in (("rollout.top_p", r.top_p), ("eval.top_p", cfg.eval.top_p)):
        if not 0.0 < top_p <= 1.0:
            raise ConfigError(f"{key}={top_p!r} must be in (0, 1] (1 = off).")
    e = cfg.eval
    positive("eval.num_samples", e.num_samples)
    positive("eval.temperature", e.temperature)  # 0 would mean greedy: not sampling, so avg@k/pass@k lose meaning
    positive("eval.top_k", e.top_k, allow_zero=True)
    positive("eval.batch_size", e.batch_size)
    if e.max_new_tokens is not None:
        positive("eval.max_new_tokens", e.max_new_tokens)
    positive("eval.every", e.every, allow_zero=True)
    for k in e.pass_ks:
        if not 1 <= k <= e.num_samples:
            raise ConfigError(f"eval.pass_ks contains {k!r}; each k must be between 1 and eval.num_samples={e.num_samples}.")
    positive("checkpoint.every", cfg.checkpoint.every)
    positive("checkpoint.keep_last", cfg.checkpoint.keep_last)
    positive("logging.log_every", cfg.logging.log_every)
    from lad_ref.llm.tracking import check_report_to

    problem = check_report_to(cfg.logging.report_to)
    if problem:
        raise ConfigError(problem)
    positive("sft.steps", cfg.sft.steps, allow_zero=True)
    return cfg


# ======================================================================================
# command line
# ======================================================================================


def field_help(cls: type | None = None, prefix: str = "") -> list[tuple[str, str, Any]]:
    """(dotted key, help, default) for every leaf field of ``cls`` (default: the :func:`schema`), for --help."""
    cls = schema() if cls is None else cls
    rows = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        hints = typing.get_type_hints(cls)
        if dataclasses.is_dataclass(hints[f.name]):
            rows += field_help(hints[f.name], key + ".")
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            rows.append((key, f.metadata.get("help", ""), default))
    return rows


def help_epilog() -> str:
    lines = ["Every config field can be overridden as --section.field VALUE (VALUE is parsed as YAML):", ""]
    for key, text, default in field_help():
        lines.append(f"  --{key:<38} {text} [default: {default!r}]")
    lines += ["", "Aliases: " + ", ".join(f"--{a.replace('_', '-')} = --{k}" for a, k in ALIASES.items())]
    return "\n".join(lines)


def parse_dotted_args(rest: list[str]) -> dict[str, Any]:
    """Turn ``["--a.b", "1", "--c.d=x"]`` into ``{"a.b": 1, "c.d": "x"}``; anything else is an error."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(rest):
        tok = rest[i]
        if not tok.startswith("--"):
            raise ConfigError(f"unexpected argument {tok!r}; options look like --section.field VALUE.")
        body = tok[2:]
        if "=" in body:
            key, text = body.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(rest):
                raise ConfigError(f"option {tok!r} needs a value.")
            key, text = body, rest[i + 1]
            i += 2
        key = key.replace("-", "_")
        key = ALIASES.get(key, key)
        if "." not in key and key not in {f.name for f in dataclasses.fields(Config)}:
            leaves = {f.name for f in dataclasses.fields(Config) if not dataclasses.is_dataclass(f.default_factory)}
            valid = ["--" + v.replace("_", "-") for v in sorted({*ALIASES, *leaves})]
            raise ConfigError(
                f"unknown option {tok!r}{hint('--' + key.replace('_', '-'), valid)}; valid options are "
                f"--config, --resume, --overwrite, {', '.join(valid)} and --section.field for any config field."
            )
        out[key] = parse_value(text)
    return out


def resolve(config_file: str | None, overrides: dict[str, Any]) -> Config:
    """defaults <- YAML <- overrides, then type checks and validation."""
    data = load_yaml(config_file) if config_file else {}
    merge_overrides(data, overrides)
    return validate(from_dict(data))

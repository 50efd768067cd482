"""Tasks: prompts, references and verifiers, one file per task, each registered by name.

A task is any class that satisfies :class:`Task` (subclass :class:`BaseTask` for the defaults) and
registers itself with :func:`register_task`; ``data.task: <name>`` selects it, and its settings
dataclass, if it has one, becomes the config section ``data.<name>`` (YAML and ``--data.<name>.<field>``
flags, see ``lad_ref.llm.config.schema``). The built-in tasks, imported below so that they are always
registered:

* ``digit_sum`` (:mod:`lad_ref.llm.tasks.digit_sum`), the synthetic toy task for the CPU run;
* ``math`` (:mod:`lad_ref.llm.tasks.math`): questions and reference answers read from local
  JSONL/Parquet files; correctness by ``lad_ref.rewards.math`` (``math-verify``);
* ``code`` (:mod:`lad_ref.llm.tasks.code`): questions and tests from local files; ``lad_ref.rewards.code``.

A task defined outside lad_ref is registered the same way, in a module the trainer imports before
it reads the config (``plugins: [my_pkg.my_task]``; tests/plugins/parity_task.py is a complete example).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from lad_ref.config_io import hint
from lad_ref.llm.config import Config, ConfigError, DataConfig


class DataError(ValueError):
    """A missing or malformed data file; the message names the file and the line/row."""


@dataclass(frozen=True)
class Example:
    """One prompt. ``prompt`` is the raw text (the chat template is applied later, per model)."""

    uid: str
    prompt: str
    reference: Any = None  # what the verifier needs: target spec, answer string, or tests
    meta: dict = field(default_factory=dict, compare=False)


# ======================================================================================
# what a task provides, and the registry
# ======================================================================================


class Task(Protocol):
    """What the trainer, the SFT warm start and the evaluator use of a task.

    ``train`` / ``eval``: the training and held-out :class:`Example` lists (built by ``from_config``).
    ``reward(example, completion)``: 1.0 = correct (the trainer counts ``>= 1`` as correct);
    ``rewards(examples, completions)``: the same for a batch (math and code grade across cores).
    ``answer_key(completion)``: what two correct responses must differ in to count as *distinct*
    correct answers (``train/distinct_correct``, ``eval/distinct_correct``).
    ``metrics``: the optional evaluation metrics the task supports beyond the common ones
    (``"solution_coverage"``: each example's ``meta["num_solutions"]`` is its number of correct answers).
    ``can_sample_solutions`` / ``sample_solution(example, rng)``: a uniformly drawn correct answer,
    the SFT warm start's targets (``sft.enabled`` is ignored for a task that cannot).
    ``needs_files``: the task reads ``data.train_files`` / ``data.eval_files`` (checked at validation).
    """

    name: ClassVar[str]
    can_sample_solutions: ClassVar[bool]
    needs_files: ClassVar[bool]
    metrics: ClassVar[tuple[str, ...]]
    train: list[Example]
    eval: list[Example]

    @classmethod
    def from_config(cls, data: DataConfig, settings: Any) -> Task: ...

    def reward(self, example: Example, completion: str) -> float: ...

    def rewards(self, examples: Sequence[Example], completions: Sequence[str]) -> list[float]: ...

    def answer_key(self, completion: str) -> str: ...

    def sample_solution(self, example: Example, rng: random.Random) -> str: ...


class BaseTask:
    """Defaults for :class:`Task`: item-by-item ``rewards``, the stripped completion as answer key,
    no SFT solutions, no extra metrics, no data files. A subclass sets ``train`` / ``eval`` and writes
    ``from_config`` and ``reward``."""

    name: ClassVar[str] = ""
    can_sample_solutions: ClassVar[bool] = False
    needs_files: ClassVar[bool] = False
    metrics: ClassVar[tuple[str, ...]] = ()
    train: list[Example]
    eval: list[Example]

    @classmethod
    def from_config(cls, data: DataConfig, settings: Any) -> Task:
        raise NotImplementedError(f"task {cls.__name__} must define from_config(data, settings).")

    def reward(self, example: Example, completion: str) -> float:
        raise NotImplementedError(f"task {type(self).__name__} must define reward(example, completion).")

    def rewards(self, examples: Sequence[Example], completions: Sequence[str]) -> list[float]:
        """:meth:`reward` item by item; a task with a faster batched grader overrides it."""
        return [self.reward(e, c) for e, c in zip(examples, completions)]

    def answer_key(self, completion: str) -> str:
        return completion.strip()

    def sample_solution(self, example: Example, rng: random.Random) -> str:
        raise NotImplementedError(f"task {type(self).__name__} cannot sample solutions (can_sample_solutions=False).")


class FileTask(BaseTask):
    """A task whose examples are read from the local files ``data.train_files`` / ``data.eval_files``
    (JSONL or Parquet; fields ``data.prompt_field`` / ``data.answer_field``), both required."""

    needs_files: ClassVar[bool] = True

    @classmethod
    def from_config(cls, data: DataConfig, settings: Any) -> Task:
        if not data.eval_files:
            raise ConfigError(f"data.task={data.task!r} needs data.eval_files (held-out .jsonl or .parquet files).")
        return cls(data)

    def __init__(self, cfg: DataConfig):
        self.train = load_split(cfg.train_files, cfg, cfg.max_train_prompts, "train")
        self.eval = load_split(cfg.eval_files, cfg, cfg.max_eval_prompts, "eval")


@dataclass(frozen=True)
class TaskSpec:
    """A registered task: its class, and the dataclass of its ``data.<name>`` settings (None: no section)."""

    name: str
    cls: type
    settings: type | None = None

    @property
    def can_sample_solutions(self) -> bool:
        return bool(getattr(self.cls, "can_sample_solutions", False))

    @property
    def needs_files(self) -> bool:
        return bool(getattr(self.cls, "needs_files", False))

    def check(self, settings: Any) -> None:
        """The task's own checks of its settings at validation time (``check_settings``, if it has one)."""
        check = getattr(self.cls, "check_settings", None)
        if check is not None and settings is not None:
            check(settings)


TASKS: dict[str, TaskSpec] = {}


def register_task(name: str, settings: type | None = None) -> Callable[[type], type]:
    """Class decorator: register a :class:`Task` class as ``data.task: <name>``.

    ``settings``: a dataclass (every field with a default) that becomes the config section
    ``data.<name>``; ``from_config(data, settings)`` receives its instance (None without one).
    A name registered twice is an error, as for objectives."""
    if settings is not None and not dataclasses.is_dataclass(settings):
        raise TypeError(f"task {name!r}: settings must be a dataclass, got {settings!r}.")
    if settings is not None and not name.isidentifier():
        raise ValueError(f"task {name!r} has settings, so its name must be a Python identifier (the section data.{name}).")

    def deco(cls: type) -> type:
        if name in TASKS:
            raise ValueError(f"task {name!r} is already registered.")
        for attr in ("from_config", "reward", "rewards", "answer_key", "sample_solution"):
            if not callable(getattr(cls, attr, None)):
                raise TypeError(f"task {name!r}: {cls.__name__} has no {attr}(); subclass BaseTask or define it.")
        for attr in ("can_sample_solutions", "needs_files", "metrics"):
            if not hasattr(cls, attr):
                raise TypeError(f"task {name!r}: {cls.__name__} has no class attribute {attr}; subclass BaseTask "
                                "or define it.")
        if settings is not None:
            settings()  # every field has a default
        TASKS[name] = TaskSpec(name, cls, settings)
        return cls

    return deco


def unregister_task(name: str) -> None:
    """Remove ``name`` from the registry (for tests that register a temporary task)."""
    TASKS.pop(name, None)


def task_names() -> tuple[str, ...]:
    """The registered task names, in registration order."""
    return tuple(TASKS)


def get_task_spec(name: str) -> TaskSpec:
    """The spec of task ``name``; an unknown name raises ValueError (a ConfigError) listing the registered names."""
    spec = TASKS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise ConfigError(f"data.task={name!r} is not a registered task{hint(name, TASKS)}; registered tasks are "
                          f"{', '.join(TASKS)} (a task of your own: register it in a module listed in plugins).")
    return spec


def task_sections() -> dict[str, type]:
    """``{name: settings dataclass}`` of the registered tasks that have settings (the ``data.<name>`` sections)."""
    return {n: s.settings for n, s in TASKS.items() if s.settings is not None}


def task_settings(cfg: Config) -> Any:
    """The active task's settings: ``cfg.data.<task>``, or its defaults where the config has no such section
    (a Config built directly rather than through ``from_dict``)."""
    spec = get_task_spec(cfg.data.task)
    if spec.settings is None:
        return None
    settings = getattr(cfg.data, cfg.data.task, None)
    return settings if settings is not None else spec.settings()


# ======================================================================================
# datasets from local files (math, code)
# ======================================================================================


def get_field(record: dict, dotted: str):
    """``record["a"]["b"]`` for ``"a.b"`` (DAPO-Math's parquet keeps the answer in ``reward_model.ground_truth``)."""
    value = record
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(part)
        value = value[part]
    return value


def question_text(value) -> str:
    """A question given as a string, or as a chat list (its last user turn), as in verl-format parquet files."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        users = [m.get("content") for m in value if isinstance(m, dict) and m.get("role") == "user"]
        if users and isinstance(users[-1], str):
            return users[-1]
    raise ValueError(f"holds a {type(value).__name__}, neither a string nor a chat list with a user turn")


def read_records(path: str | Path, fields: list[str]) -> list[dict]:
    """Records of a ``.jsonl`` (or ``.json`` lines) or ``.parquet`` file; each must have every (dotted) field.

    Errors name the file and the 1-based line (JSONL) or row (Parquet).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file {str(p)!r} does not exist.")
    suffix = p.suffix.lower()
    records: list[tuple[int, dict]] = []
    if suffix in (".jsonl", ".json"):
        with p.open("rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise DataError(
                        f"data file {str(p)!r} line {lineno} is not UTF-8 text (byte {e.start} of the line); "
                        "re-encode the file as UTF-8."
                    ) from None
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"data file {str(p)!r} line {lineno} is not valid JSON ({e.msg}).") from None
                if not isinstance(rec, dict):
                    raise DataError(
                        f"data file {str(p)!r} line {lineno} holds a {type(rec).__name__}, not a JSON object."
                    )
                records.append((lineno, rec))
        where = "line"
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(p)
        except Exception as e:  # pyarrow raises several types for a corrupt file
            raise DataError(f"data file {str(p)!r} is not a readable Parquet file ({e}).") from None
        missing = [f for f in fields if f.split(".")[0] not in table.column_names]
        if missing:
            raise DataError(
                f"data file {str(p)!r} has no column {missing[0].split('.')[0]!r}; "
                f"its columns are {', '.join(table.column_names)}."
            )
        records = list(enumerate(table.select(sorted({f.split('.')[0] for f in fields})).to_pylist(), 1))
        where = "row"
    else:
        raise DataError(f"data file {str(p)!r} has extension {suffix!r}; valid extensions are .jsonl, .json, .parquet.")
    if not records:
        raise DataError(f"data file {str(p)!r} has no records.")
    out = []
    for n, rec in records:
        values = {}
        for f in fields:
            try:
                values[f] = get_field(rec, f)
            except KeyError:
                raise DataError(
                    f"data file {str(p)!r} {where} {n} has no field {f!r}; its fields are {', '.join(map(str, rec))}."
                ) from None
            if values[f] is None:
                raise DataError(f"data file {str(p)!r} {where} {n} has an empty (null) field {f!r}.")
        out.append({"fields": values, "source": f"{p.name}:{n}", "where": f"data file {str(p)!r} {where} {n}"})
    return out


def load_split(files: list[str], cfg: DataConfig, limit: int | None, split: str) -> list[Example]:
    examples = []
    for path in files:
        for rec in read_records(path, [cfg.prompt_field, cfg.answer_field]):
            try:
                question = question_text(rec["fields"][cfg.prompt_field])
            except ValueError as e:
                raise DataError(f"{rec['where']}: field {cfg.prompt_field!r} {e}.") from None
            reference = rec["fields"][cfg.answer_field]
            prompt = cfg.prompt_template.replace("{prompt}", question)
            examples.append(Example(f"{split}/{rec['source']}", prompt, reference))
            if limit is not None and len(examples) >= limit:
                return examples
    return examples


def task_rewards(task, examples: list[Example], completions: list[str]) -> list[float]:
    """Rewards of ``completions[i]`` for ``examples[i]``, from the task's batched grader (:meth:`Task.rewards`)."""
    return [float(r) for r in task.rewards(examples, completions)]


def build_task(cfg: Config):
    """The configured task; reads (and checks) every data file now, before any model is loaded.

    Every prompt must be non-empty, and with the tiny preset consist of characters its tokenizer
    has (it would otherwise drop the others silently): a DataError names the example.
    """
    spec = get_task_spec(cfg.data.task)
    task = spec.cls.from_config(cfg.data, task_settings(cfg))
    from lad_ref.llm.model import TINY, tiny_unknown_chars

    tiny = cfg.model.name_or_path == TINY
    for split, examples in (("train", task.train), ("eval", task.eval)):
        for ex in examples:
            if not isinstance(ex.prompt, str) or not ex.prompt.strip():
                raise DataError(f"{split} example {ex.uid!r} has an empty prompt; remove it or fill in its prompt.")
            if tiny:
                bad = tiny_unknown_chars(ex.prompt)
                if bad:
                    raise DataError(
                        f"{split} example {ex.uid!r}: the tiny model's tokenizer has no token for "
                        f"{', '.join(repr(c) for c in bad[:5])}; it knows printable ASCII only (use a real model "
                        "for this data, or clean the prompts)."
                    )
    return task


# The built-in tasks register themselves on import (in this order, the order names are listed in);
# re-exported here, where they used to live.
for _builtin in ("digit_sum", "math", "code"):
    importlib.import_module(f"lad_ref.llm.tasks.{_builtin}")
from lad_ref.llm.tasks.code import CodeTask  # noqa: E402
from lad_ref.llm.tasks.digit_sum import DigitSumConfig, DigitSumTask  # noqa: E402
from lad_ref.llm.tasks.math import MathTask  # noqa: E402

__all__ = [
    "BaseTask", "CodeTask", "DataError", "DigitSumConfig", "DigitSumTask", "Example", "MathTask", "Task", "TaskSpec",
    "build_task", "get_field", "get_task_spec", "load_split", "question_text", "read_records", "register_task",
    "task_names", "task_rewards", "task_sections", "task_settings", "unregister_task",
]

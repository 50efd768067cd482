"""Train a local checkpoint with LAD (or a lad_ref baseline) through TRL 1.16.0's GRPOTrainer.

    accelerate launch --config_file llm/recipes/trl/accelerate_zero3.yaml \\
        llm/recipes/trl/train_lad.py --config llm/recipes/trl/qwen2.5-7b_dapo-math.yaml \\
        --model_name_or_path /models/Qwen2.5-7B --train_files /data/dapo_math_17k.parquet

Every ``LadGRPOConfig`` field (TRL's GRPOConfig + objective, divergence, eta, level, ...) and every
``RecipeArguments`` field below can be set in the YAML given to ``--config`` or on the command line
(command line wins). Nothing is downloaded: the model and the data are local paths, and
``HF_HUB_OFFLINE=1`` is set before anything is imported.

Data: ``.jsonl``/``.json`` or ``.parquet`` files with one record per question.

* ``--task math``: ``prompt_field`` holds the question (a string, or a chat list whose last user turn is
  the question, as in DAPO-Math-17k's verl parquet), ``answer_field`` the reference final answer
  (dotted paths reach into nested fields: ``reward_model.ground_truth``). Reward: 1.0 when
  ``lad_ref.rewards.math.math_reward`` finds the completion's final answer equivalent, else 0.0.
* ``--task code``: ``answer_field`` holds the stdin/stdout tests, a list of ``{"input", "output"}``
  records or a JSON string of one. Reward: ``lad_ref.rewards.code.code_reward`` (1.0 iff every test
  passes in the sandbox; needs Linux and root).

``--config`` (TRL's TrlParser) also accepts an ``env:`` mapping of environment variables.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub access at run time: models and data are local

import json  # noqa: E402
import sys  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402


@dataclass
class RecipeArguments:
    """What to train on: the local model, the local data and how prompts and rewards are built."""

    model_name_or_path: str = field(
        default="", metadata={"help": "Local folder of the policy checkpoint (save_pretrained layout)."}
    )
    task: str = field(default="math", metadata={"help": "math or code: selects the reward."})
    train_files: list[str] = field(
        default_factory=list, metadata={"help": "Local .jsonl/.json/.parquet training files."}
    )
    prompt_field: str = field(
        default="prompt",
        metadata={"help": "Field with the question (string, or chat list: the last user turn is used)."},
    )
    answer_field: str = field(
        default="answer",
        metadata={
            "help": "math: reference answer; code: list (or JSON string) of {input, output} tests. "
            "Dotted paths reach nested fields, e.g. reward_model.ground_truth."
        },
    )
    prompt_template: str = field(
        default="{prompt}", metadata={"help": "Format string applied to the question ({prompt} is replaced)."}
    )
    system_prompt: str | None = field(default=None, metadata={"help": "Optional system message."})
    max_train_prompts: int | None = field(default=None, metadata={"help": "Use at most this many prompts."})
    code_timeout_s: float = field(default=6.0, metadata={"help": "code: wall-clock limit per test case."})
    code_workers: int = field(
        default=16, metadata={"help": "code: completions scored in parallel (threads)."}
    )


TASKS = ("math", "code")


def _get(record: dict, dotted: str):
    value = record
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(
                f"record has no field {dotted!r}; its top-level fields are {', '.join(map(str, record))}"
            )
        value = value[part]
    return value


def _question_text(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # chat format: the last user turn
        users = [m["content"] for m in value if isinstance(m, dict) and m.get("role") == "user"]
        if users:
            return users[-1]
    raise ValueError(f"cannot read a question from {type(value).__name__} value {str(value)[:80]!r}")


def load_prompts(recipe: RecipeArguments):
    """A datasets.Dataset with a conversational ``prompt`` and the ``reference`` the reward needs."""
    from datasets import Dataset, load_dataset

    if not recipe.train_files:
        raise SystemExit("error: --train_files is required (local .jsonl/.json/.parquet files).")
    for f in recipe.train_files:
        if not Path(f).is_file():
            raise SystemExit(f"error: training file {f!r} does not exist.")
    suffixes = {Path(f).suffix for f in recipe.train_files}
    if suffixes <= {".jsonl", ".json"}:
        builder = "json"
    elif suffixes == {".parquet"}:
        builder = "parquet"
    else:
        raise SystemExit(
            f"error: train_files must all be .jsonl/.json or all .parquet, got {sorted(suffixes)}."
        )
    raw = load_dataset(builder, data_files=recipe.train_files, split="train")
    rows = []
    for i, rec in enumerate(raw):
        if recipe.max_train_prompts is not None and i >= recipe.max_train_prompts:
            break
        question = recipe.prompt_template.replace("{prompt}", _question_text(_get(rec, recipe.prompt_field)))
        messages = [{"role": "user", "content": question}]
        if recipe.system_prompt:
            messages.insert(0, {"role": "system", "content": recipe.system_prompt})
        reference = _get(rec, recipe.answer_field)
        # one column type for every row (Arrow): tests travel as a JSON string, answers as text
        reference = reference if isinstance(reference, str) else json.dumps(reference)
        rows.append({"prompt": messages, "reference": reference})
    if not rows:
        raise SystemExit("error: the training files hold no records.")
    return Dataset.from_list(rows)


def _completion_text(completion) -> str:
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content", "") for m in completion if isinstance(m, dict))  # conversational


def make_reward(recipe: RecipeArguments):
    """The task's reward function in TRL's signature (lists in, list of floats out), graded across cores
    (lad_ref.rewards.batch: a process pool for math, a thread pool over sandboxed processes for code)."""
    if recipe.task == "math":
        from lad_ref.rewards.batch import grade_math

        def math_correct(completions, reference, **kwargs):
            return grade_math([_completion_text(c) for c in completions], list(reference))

        return math_correct

    from lad_ref.rewards.batch import grade_code
    from lad_ref.rewards.code import SandboxError, run_tests

    try:  # fail before training if the sandbox cannot run here (root, or bubblewrap as a user)
        run_tests("print(input())", [{"input": "1\n", "output": "1\n"}], timeout_s=recipe.code_timeout_s)
    except SandboxError as e:
        raise SystemExit(f"error: the code sandbox is unavailable on this machine: {e}") from e

    def tests_pass(completions, reference, **kwargs):
        # reference: the tests in any layout lad_ref.rewards.code accepts (or its JSON string)
        return grade_code([_completion_text(c) for c in completions], list(reference),
                          workers=max(1, recipe.code_workers), timeout_s=recipe.code_timeout_s)

    return tests_pass


def main(argv: list[str] | None = None) -> int:
    from trl import TrlParser

    from lad_ref.integrations.trl import LadGRPOConfig, LadGRPOTrainer

    parser = TrlParser((RecipeArguments, LadGRPOConfig))
    recipe, args = parser.parse_args_and_config(args=argv)
    if recipe.task not in TASKS:
        raise SystemExit(f"error: unknown task {recipe.task!r}; valid choices are {', '.join(TASKS)}.")
    if not recipe.model_name_or_path or not Path(recipe.model_name_or_path).is_dir():
        raise SystemExit(
            f"error: --model_name_or_path {recipe.model_name_or_path!r} is not a local model folder "
            "(this recipe never downloads from the hub)."
        )
    dataset = load_prompts(recipe)
    trainer = LadGRPOTrainer(
        model=recipe.model_name_or_path,
        reward_funcs=make_reward(recipe),
        args=args,
        train_dataset=dataset,
    )
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    trainer.save_model(os.path.join(args.output_dir, "final"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The batched graders where training and evaluation call them: MathTask/CodeTask.rewards (compact trainer
and evaluator, via tasks.task_rewards) and the verl recipe's compute_score_batch."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("math_verify")

from lad_ref.llm.config import DataConfig  # noqa: E402
from lad_ref.llm.tasks import CodeTask, MathTask, task_rewards  # noqa: E402
from lad_ref.rewards.code import SandboxError, sandbox_mode  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _sandbox() -> bool:
    try:
        sandbox_mode()
    except SandboxError:
        return False
    return True


def _write(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_math_task_batch_equals_item_by_item(tmp_path) -> None:
    rows = [{"prompt": "q", "answer": "\\frac{1}{2}"}, {"prompt": "r", "answer": "2, 3"}]
    f = _write(tmp_path / "m.jsonl", rows)
    task = MathTask(DataConfig(task="math", train_files=[f], eval_files=[f]))
    examples = [task.eval[0], task.eval[0], task.eval[1], task.eval[1]]
    completions = ["\\boxed{0.5}", "\\boxed{2}", "\\boxed{2} and \\boxed{3}", "\\boxed{2}"]
    assert task_rewards(task, examples, completions) == [1.0, 0.0, 1.0, 0.0]
    assert [task.reward(e, c) for e, c in zip(examples, completions)] == [1.0, 0.0, 1.0, 0.0]


@pytest.mark.skipif(not _sandbox(), reason="no code sandbox here")
def test_code_task_reads_every_layout_from_files(tmp_path) -> None:
    rows = [
        {"prompt": "add", "tests": json.dumps({"inputs": [[1, 2]], "outputs": [3], "fn_name": "add"})},
        {"prompt": "echo", "tests": [{"input": "x\n", "output": "x\n"}]},
        {"prompt": "bad", "tests": {"cases": []}},  # an unreadable row scores 0, it does not stop training
    ]
    f = _write(tmp_path / "c.jsonl", rows)
    task = CodeTask(DataConfig(task="code", train_files=[f], eval_files=[f], answer_field="tests"))
    completions = ["```python\ndef add(a, b):\n    return a + b\n```", "print(input())", "print(1)"]
    assert task_rewards(task, task.eval, completions) == [1.0, 1.0, 0.0]


def test_verl_compute_score_batch() -> None:
    spec = importlib.util.spec_from_file_location("lad_reward", ROOT / "llm" / "recipes" / "verl" / "reward.py")
    reward = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reward)
    sources = ["lad_ref/math", "lad_ref/math"]
    assert reward.compute_score_batch(sources, ["\\boxed{4}", "\\boxed{5}"], ["4", "4"], [{}, {}]) == [1.0, 0.0]
    assert reward.compute_score("lad_ref/math", "\\boxed{4}", "4") == 1.0
    with pytest.raises(ValueError, match="unknown data_source 'x'"):
        reward.compute_score_batch(["x"], ["1"], ["1"], [{}])
    if _sandbox():
        tests = json.dumps({"test": "def check(c):\n    assert c(2) == 3\n", "entry_point": "inc"})
        got = reward.compute_score_batch(["lad_ref/code", "lad_ref/math"], ["def inc(x):\n    return x + 1\n", "1"],
                                         [tests, "1"], [{}, {}])
        assert got == [1.0, 1.0]


def test_trl_recipe_reward_functions_grade_batches() -> None:
    spec = importlib.util.spec_from_file_location("train_lad", ROOT / "llm" / "recipes" / "trl" / "train_lad.py")
    recipe = importlib.util.module_from_spec(spec)
    sys.modules["train_lad"] = recipe  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(recipe)
    math_fn = recipe.make_reward(recipe.RecipeArguments(task="math"))
    conversational = [[{"role": "assistant", "content": "\\boxed{4}"}], "\\boxed{5}"]
    assert math_fn(conversational, reference=["4", "4"]) == [1.0, 0.0]
    if _sandbox():
        code_fn = recipe.make_reward(recipe.RecipeArguments(task="code", code_workers=2))
        tests = json.dumps({"inputs": [[1]], "outputs": [2], "fn_name": "inc"})
        programs = ["```python\ndef inc(x):\n    return x + 1\n```", "def inc(x):\n    return x"]
        assert code_fn(programs, reference=[tests, tests]) == [1.0, 0.0]

"""The ``code`` task: questions and references read from local JSONL/Parquet files (``data.train_files``,
``data.eval_files``; fields ``data.prompt_field`` / ``data.answer_field``); graded by ``lad_ref.rewards.code``."""

from __future__ import annotations

from lad_ref.llm.config import DataConfig
from lad_ref.llm.tasks import Example, FileTask, register_task


@register_task("code")
class CodeTask(FileTask):
    """Programming questions with tests; reward 1.0 iff every test passes (lad_ref.rewards.code, sandboxed).

    The program is the last fenced code block of the response (``extract_program``); distinct
    correct answers are distinct (whitespace-normalised) programs. The tests field may be any layout
    ``lad_ref.rewards.code.run_tests`` accepts (stdin/stdout list, APPS/TACO dict of lists with
    ``fn_name``, a LiveCodeBench row, HumanEval-style ``{"test", "entry_point"}``) or its JSON string;
    a row whose tests cannot be read scores 0.0 with a warning.
    """

    name = "code"

    def __init__(self, cfg: DataConfig):
        super().__init__(cfg)
        from lad_ref.rewards.code import code_reward  # noqa: F401

    def reward(self, example: Example, completion: str) -> float:
        return self.rewards([example], [completion])[0]

    def rewards(self, examples: list[Example], completions: list[str]) -> list[float]:
        """:meth:`reward` for a batch, graded across every core (lad_ref.rewards.batch.grade_code)."""
        from lad_ref.rewards.batch import grade_code
        from lad_ref.rewards.code import extract_program

        return grade_code([extract_program(c) for c in completions], [e.reference for e in examples])

    def answer_key(self, completion: str) -> str:
        from lad_ref.rewards.code import extract_program

        return " ".join(extract_program(completion).split())

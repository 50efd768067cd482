"""The ``math`` task: questions and references read from local JSONL/Parquet files (``data.train_files``,
``data.eval_files``; fields ``data.prompt_field`` / ``data.answer_field``); graded by ``lad_ref.rewards.math``."""

from __future__ import annotations

from lad_ref.llm.config import DataConfig
from lad_ref.llm.tasks import Example, FileTask, register_task


@register_task("math")
class MathTask(FileTask):
    """Math questions with a reference final answer; reward = math-verify equivalence (lad_ref.rewards.math).

    The answer is extracted and compared by math-verify's own parser (``\\boxed{...}``, "the final
    answer is", ...; see ``lad_ref.rewards.math``). Every correct response has the same final answer,
    so distinct correct *responses* (whitespace-normalised) are counted instead: different
    correct solutions, which dist-n also measures.
    """

    name = "math"

    def __init__(self, cfg: DataConfig):
        super().__init__(cfg)
        from lad_ref.rewards.math import math_reward  # noqa: F401  (fail now if math-verify is missing)

    def reward(self, example: Example, completion: str) -> float:
        from lad_ref.rewards.math import math_reward

        return float(math_reward(completion, str(example.reference)))

    def rewards(self, examples: list[Example], completions: list[str]) -> list[float]:
        """:meth:`reward` for a batch, graded across every core (lad_ref.rewards.batch.grade_math)."""
        from lad_ref.rewards.batch import grade_math

        return grade_math(completions, [str(e.reference) for e in examples])

    def answer_key(self, completion: str) -> str:
        return " ".join(completion.split())

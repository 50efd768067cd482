"""A task registered from outside lad_ref (no edit to lad_ref): the parity of a number.

Prompt ``"347?"`` -> answer ``"1"`` (odd) or ``"0"`` (even); reward 1.0 for exactly that one
character. The prompts are ``num_prompts`` distinct numbers of ``digits`` digits drawn with ``seed``;
the last ``eval_prompts`` of them are held out. It can sample its SFT solutions (the one correct answer).

Used by tests/test_plugins_tasks_backends.py as ``plugins: [parity_task]`` (this folder on sys.path):
importing the module registers the task ``parity`` and its settings section ``data.parity``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from lad_ref.config_io import ConfigError
from lad_ref.llm.tasks import BaseTask, Example, register_task


@dataclass
class ParitySettings:
    """Parity of a number (tests/plugins/parity_task.py)."""

    digits: int = field(default=3, metadata={"help": "Digits per number."})
    num_prompts: int = field(default=64, metadata={"help": "Distinct numbers, training and held-out together."})
    eval_prompts: int = field(default=16, metadata={"help": "Of which held out."})
    seed: int = field(default=0, metadata={"help": "Seed of the draw."})


@register_task("parity", settings=ParitySettings)
class ParityTask(BaseTask):
    name = "parity"
    can_sample_solutions = True

    def __init__(self, s: ParitySettings):
        numbers = random.Random(s.seed).sample(range(10 ** (s.digits - 1), 10 ** s.digits), s.num_prompts)
        examples = [Example(f"{n}?", f"{n}?", str(n % 2)) for n in numbers]
        self.train, self.eval = examples[: -s.eval_prompts], examples[-s.eval_prompts:]

    @classmethod
    def from_config(cls, data, settings: ParitySettings) -> ParityTask:
        return cls(settings)

    @staticmethod
    def check_settings(s: ParitySettings) -> None:
        if s.digits < 1 or not 0 < s.eval_prompts < s.num_prompts <= 9 * 10 ** (s.digits - 1):
            raise ConfigError(f"data.parity: digits={s.digits}, num_prompts={s.num_prompts}, eval_prompts="
                              f"{s.eval_prompts} must leave training and held-out numbers.")

    def reward(self, example: Example, completion: str) -> float:
        return float(completion.strip() == example.reference)

    def sample_solution(self, example: Example, rng: random.Random) -> str:
        return example.reference

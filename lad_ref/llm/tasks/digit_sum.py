"""The synthetic toy task (``data.task: digit_sum``; settings ``data.digit_sum``, :class:`DigitSumConfig`).

The toy task: digit sums with a bound
------------------------------------
Prompt ``"23:4<8="`` asks for 4 digits, each below 8 (1-7), that sum to 23; ``"7+5+6+5"`` is
correct, and so is every other such ordered 4-tuple: 56 correct answers. ``"17:3="`` (no
bound) asks for 3 digits 1-9 summing to 17. The prompt kinds are every (number of digits
k in ``num_terms`` = 2..5, largest digit m in ``max_digits`` = 3..9, target) with at least
``min_solutions`` (8) correct answers: 346 prompts with 8 to 3,951 correct answers each
(median ~80). Optionally ``num_forbidden`` digits are excluded too (``"17:3!58="``).

Why this task (and not the alternatives tried while building it):

* **many verifiable answers** per prompt, so "distinct correct answers among k samples" is a
  real measurement: a mode-collapsed policy scores ~1-3, a diverse one close to k;
* a ~1M-parameter character-level model learns it to a *partial* held-out accuracy
  (roughly 40-70% depending on the seed) in 600 SFT steps, about 1-2 minutes on 2 CPU
  cores: the first digits are free choices, but the last one is forced (target minus the
  others) and must respect the bound, so the model has to plan the free choices and add
  correctly. Its errors are diffuse arithmetic and planning slips, which RL can reduce;
* responses are at most 9 characters, so a rollout batch of 128 responses costs tens of
  milliseconds and a full RL run fits in minutes;
* **held-out split by prompt**: a fixed random quarter of the (k, m, target) combinations is
  never trained on (every k, bound and target still occurs in training, only the combination
  is new, so generalisation is interpolation). ``split_seed`` fixes the split independently
  of the run seed: all seeds and objectives are evaluated on the same 86 prompts.
* the alternatives that were tried and why they were dropped: docs/design.md, "The toy task".
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field

from lad_ref.llm.config import ConfigError, DataConfig
from lad_ref.llm.tasks import BaseTask, Example, register_task


@dataclass
class DigitSumConfig:
    """The synthetic toy task (lad_ref.llm.tasks.digit_sum.DigitSumTask)."""

    num_terms: list[int] = field(
        default_factory=lambda: [2, 3, 4, 5], metadata={"help": "Digits per answer; several = several prompt kinds."}
    )
    max_digits: list[int] = field(
        default_factory=lambda: [3, 4, 5, 6, 7, 8, 9],
        metadata={"help": "Largest allowed digit, one prompt kind per value (9 = no bound; shown as '<m+1')."},
    )
    num_forbidden: int = field(default=0, metadata={"help": "Forbidden digits per prompt (0-8), shown as '!..'."})
    min_solutions: int = field(default=8, metadata={"help": "Keep only prompts with at least this many correct answers."})
    eval_fraction: float = field(default=0.25, metadata={"help": "Share of prompts held out for evaluation."})
    split_seed: int = field(
        default=0, metadata={"help": "Seed of the train/held-out split (fixed across run seeds on purpose)."}
    )


@register_task("digit_sum", settings=DigitSumConfig)


class DigitSumTask(BaseTask):
    """``"<target>:<terms>!<forbidden>="`` -> ``"a+b+..."``: ``terms`` digits 1-9, none forbidden, summing to ``target``.

    The ``:<terms>`` part appears only when several term counts are configured, the
    ``!<forbidden>`` part only when digits are forbidden (``num_forbidden > 0``).
    """

    name = "digit_sum"
    can_sample_solutions = True
    metrics = ("solution_coverage",)  # each example's meta holds its number of correct answers
    _DIGITS = tuple(range(1, 10))

    def __init__(self, cfg: DigitSumConfig):
        terms = sorted(set(cfg.num_terms))
        if not terms or min(terms) < 1:
            raise ConfigError(f"data.digit_sum.num_terms={cfg.num_terms!r} must list term counts >= 1.")
        if not 0 <= cfg.num_forbidden <= 8:
            raise ConfigError(f"data.digit_sum.num_forbidden={cfg.num_forbidden!r} must be between 0 and 8.")
        bounds = sorted(set(cfg.max_digits))
        if not bounds or not all(1 <= b <= 9 for b in bounds):
            raise ConfigError(f"data.digit_sum.max_digits={cfg.max_digits!r} must list digits between 1 and 9.")
        examples = []
        for k in terms:
            for top in bounds:
                for forbidden in itertools.combinations(range(1, top + 1), cfg.num_forbidden):
                    allowed = tuple(d for d in range(1, top + 1) if d not in forbidden)
                    ways = _count_ways(allowed, k)
                    for target in range(k, 9 * k + 1):
                        n = ways[k].get(target, 0)
                        if n < cfg.min_solutions:
                            continue
                        prompt = str(target) + (f":{k}" if len(terms) > 1 else "")
                        prompt += f"<{top + 1}" if top < 9 else ""
                        prompt += (f"!{''.join(map(str, forbidden))}" if forbidden else "") + "="
                        examples.append(Example(prompt, prompt, (target, k, allowed), {"num_solutions": n}))
        if len(examples) < 4:
            raise ConfigError(
                f"data.digit_sum leaves only {len(examples)} prompts (num_terms={cfg.num_terms}, "
                f"num_forbidden={cfg.num_forbidden}, min_solutions={cfg.min_solutions}); lower min_solutions."
            )
        order = list(range(len(examples)))
        random.Random(cfg.split_seed).shuffle(order)
        n_eval = max(1, round(cfg.eval_fraction * len(examples)))
        eval_idx = set(order[:n_eval])
        self.train = [e for i, e in enumerate(examples) if i not in eval_idx]
        self.eval = [e for i, e in enumerate(examples) if i in eval_idx]

    @classmethod
    def from_config(cls, data: DataConfig, settings: DigitSumConfig) -> DigitSumTask:
        task = cls(settings)
        # the file-based tasks apply the limits while reading; the toy task applies them here
        task.train = task.train[: data.max_train_prompts] if data.max_train_prompts else task.train
        task.eval = task.eval[: data.max_eval_prompts] if data.max_eval_prompts else task.eval
        return task

    @staticmethod
    def check_settings(settings: DigitSumConfig) -> None:
        """The checks made when the config is validated (the rest when the prompts are built)."""
        if not -2**63 <= settings.split_seed < 2**63:
            raise ConfigError(f"data.digit_sum.split_seed={settings.split_seed} is out of range; a seed must fit in "
                              "64 bits (-2**63 <= seed < 2**63).")
        if not 0.0 < settings.eval_fraction < 1.0:
            raise ConfigError(f"data.digit_sum.eval_fraction={settings.eval_fraction!r} must be between 0 and 1.")

    def solutions(self, example: Example) -> list[str]:
        """Every correct answer (ordered: "8+6+3" and "3+6+8" are distinct), in lexicographic order."""
        target, k, allowed = example.reference
        ways = _count_ways(allowed, k)
        out: list[str] = []

        def extend(prefix: list[int], rest: int, left: int) -> None:
            if left == 0:
                out.append("+".join(map(str, prefix)))
                return
            for d in allowed:  # only branches that can still be completed
                if ways[left - 1].get(rest - d, 0):
                    extend(prefix + [d], rest - d, left - 1)

        extend([], target, k)
        return out

    def sample_solution(self, example: Example, rng: random.Random) -> str:
        """A correct answer drawn uniformly from all of them: the SFT targets, so the warm start is diverse.

        Digit by digit, each allowed digit is drawn with probability proportional to the number of
        ways the remaining digits can complete the sum (exact uniform sampling without enumeration).
        """
        target, k, allowed = example.reference
        ways = _count_ways(allowed, k)
        digits, rest = [], target
        for left in range(k, 0, -1):
            weights = [ways[left - 1].get(rest - d, 0) for d in allowed]
            d = rng.choices(allowed, weights=weights)[0]
            digits.append(d)
            rest -= d
        return "+".join(map(str, digits))

    def reward(self, example: Example, completion: str) -> float:
        """1.0 iff the completion is exactly ``terms`` allowed digits joined by '+' that sum to the target."""
        target, k, allowed = example.reference
        text = completion.strip()
        if len(text) != 2 * k - 1 or text[1::2] != "+" * (k - 1) or not text[0::2].isdigit():
            return 0.0
        digits = [int(c) for c in text[0::2]]
        return float(sum(digits) == target and set(digits) <= set(allowed))

    def answer_key(self, completion: str) -> str:
        return completion.strip()


_WAYS_CACHE: dict[tuple, list[dict[int, int]]] = {}


def _count_ways(allowed: tuple[int, ...], k: int) -> list[dict[int, int]]:
    """ways[j][s] = number of ordered j-tuples of ``allowed`` digits summing to s, for j = 0..k."""
    key = (allowed, k)
    if key not in _WAYS_CACHE:
        ways = [{0: 1}]
        for _ in range(k):
            nxt: dict[int, int] = {}
            for s, n in ways[-1].items():
                for d in allowed:
                    nxt[s + d] = nxt.get(s + d, 0) + n
            ways.append(nxt)
        _WAYS_CACHE[key] = ways
    return _WAYS_CACHE[key]

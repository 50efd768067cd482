"""Tasks: prompts, references and verifiers.

* :class:`DigitSumTask` (``data.task: digit_sum``), the synthetic toy task for the CPU run.
* :class:`MathTask` (``math``): questions and reference answers read from local JSONL/Parquet
  files; correctness by ``lad_ref.rewards.math`` (``math-verify``).
* :class:`CodeTask` (``code``): questions and tests from local files; ``lad_ref.rewards.code``.

Every task exposes ``train`` and ``eval`` lists of :class:`Example`, ``reward(example,
completion) -> float`` (1.0 = correct) and ``answer_key(completion) -> str`` (what two
responses must differ in to count as *distinct* correct answers). Toy tasks that can sample
their own solutions also have ``sample_solution`` (used by the SFT warm start).

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
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lad_ref.llm.config import Config, ConfigError, DataConfig, DigitSumConfig


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
# the toy task
# ======================================================================================


class DigitSumTask:
    """``"<target>:<terms>!<forbidden>="`` -> ``"a+b+..."``: ``terms`` digits 1-9, none forbidden, summing to ``target``.

    The ``:<terms>`` part appears only when several term counts are configured, the
    ``!<forbidden>`` part only when digits are forbidden (``num_forbidden > 0``).
    """

    name = "digit_sum"
    can_sample_solutions = True
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


def _load_split(files: list[str], cfg: DataConfig, limit: int | None, split: str) -> list[Example]:
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


class MathTask:
    """Math questions with a reference final answer; reward = math-verify equivalence (lad_ref.rewards.math).

    The answer is extracted and compared by math-verify's own parser (``\\boxed{...}``, "the final
    answer is", ...; see ``lad_ref.rewards.math``). Every correct response has the same final answer,
    so distinct correct *responses* (whitespace-normalised) are counted instead: different
    correct solutions, which dist-n also measures.
    """

    name = "math"
    can_sample_solutions = False

    def __init__(self, cfg: DataConfig):
        self.train = _load_split(cfg.train_files, cfg, cfg.max_train_prompts, "train")
        self.eval = _load_split(cfg.eval_files, cfg, cfg.max_eval_prompts, "eval")
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


class CodeTask:
    """Programming questions with tests; reward 1.0 iff every test passes (lad_ref.rewards.code, sandboxed).

    The program is the last fenced code block of the response (``extract_program``); distinct
    correct answers are distinct (whitespace-normalised) programs. The tests field may be any layout
    ``lad_ref.rewards.code.run_tests`` accepts (stdin/stdout list, APPS/TACO dict of lists with
    ``fn_name``, a LiveCodeBench row, HumanEval-style ``{"test", "entry_point"}``) or its JSON string;
    a row whose tests cannot be read scores 0.0 with a warning.
    """

    name = "code"
    can_sample_solutions = False

    def __init__(self, cfg: DataConfig):
        self.train = _load_split(cfg.train_files, cfg, cfg.max_train_prompts, "train")
        self.eval = _load_split(cfg.eval_files, cfg, cfg.max_eval_prompts, "eval")
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


def task_rewards(task, examples: list[Example], completions: list[str]) -> list[float]:
    """Rewards of ``completions[i]`` for ``examples[i]``: the task's batched grader when it has one
    (math and code grade across cores), else :meth:`reward` item by item."""
    if hasattr(task, "rewards"):
        return [float(r) for r in task.rewards(examples, completions)]
    return [float(task.reward(e, c)) for e, c in zip(examples, completions)]


def build_task(cfg: Config):
    """The configured task; reads (and checks) every data file now, before any model is loaded.

    Every prompt must be non-empty, and with the tiny preset consist of characters its tokenizer
    has (it would otherwise drop the others silently): a DataError names the example.
    """
    task = _build_task(cfg)
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


def _build_task(cfg: Config):
    d = cfg.data
    if d.task == "digit_sum":
        task = DigitSumTask(d.digit_sum)
        # the file-based tasks apply the limits while reading; the toy task applies them here
        task.train = task.train[: d.max_train_prompts] if d.max_train_prompts else task.train
        task.eval = task.eval[: d.max_eval_prompts] if d.max_eval_prompts else task.eval
        return task
    if not d.eval_files:
        raise ConfigError(f"data.task={d.task!r} needs data.eval_files (held-out .jsonl or .parquet files).")
    return MathTask(d) if d.task == "math" else CodeTask(d)

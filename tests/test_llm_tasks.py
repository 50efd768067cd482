"""Tasks and rewards: the toy verifier, dataset files (JSONL / Parquet) and their error messages."""

from __future__ import annotations

import itertools
import json
import random

import pytest

from lad_ref.llm.config import Config, ConfigError, DataConfig, validate
from lad_ref.llm.tasks import DataError, DigitSumConfig, DigitSumTask, MathTask, build_task, read_records


@pytest.fixture(scope="module")
def toy():
    return DigitSumTask(DigitSumConfig())


def ex(task, prompt):
    return next(e for e in task.train + task.eval if e.prompt == prompt)


def test_digit_sum_verifier(toy):
    e = ex(toy, "23:4<8=")  # 4 digits, each below 8, summing to 23
    assert toy.reward(e, "7+5+6+5") == 1.0
    assert toy.reward(e, " 5+6+5+7 ") == 1.0  # surrounding whitespace is ignored
    assert toy.reward(e, "8+5+5+5") == 0.0  # 8 breaks the bound
    assert toy.reward(e, "7+5+6+4") == 0.0  # sums to 22
    assert toy.reward(e, "7+7+7+2") == 1.0
    assert toy.reward(e, "7+7+9") == 0.0  # three digits
    assert toy.reward(e, "7+5+6+5+0") == 0.0 and toy.reward(e, "7+5+65") == 0.0
    assert toy.reward(e, "") == 0.0 and toy.reward(e, "7+5+6+5=23") == 0.0 and toy.reward(e, "0+7+7+9") == 0.0
    free = ex(toy, "17:3=")  # no bound: digits 1-9
    assert toy.reward(free, "9+6+2") == 1.0 and toy.reward(free, "9+8+0") == 0.0


def test_digit_sum_solutions_are_exactly_the_correct_answers(toy):
    for e in (toy.train + toy.eval)[::7]:
        sols = toy.solutions(e)
        assert len(sols) == e.meta["num_solutions"] >= 8
        assert len(set(sols)) == len(sols)
        k = e.reference[1]
        if k <= 4:  # brute force over every k-digit answer: exactly the listed ones are correct
            every = ["+".join(t) for t in itertools.product("0123456789", repeat=k)]
            assert sorted(s for s in every if toy.reward(e, s) == 1.0) == sorted(sols)


def test_digit_sum_split_is_fixed_disjoint_and_many_answered(toy):
    train, held = {e.prompt for e in toy.train}, {e.prompt for e in toy.eval}
    assert not train & held
    assert len(train) + len(held) == 346 and len(held) == 86
    again = DigitSumTask(DigitSumConfig())
    assert [e.prompt for e in again.eval] == [e.prompt for e in toy.eval]
    counts = sorted(e.meta["num_solutions"] for e in toy.eval)
    assert counts[len(counts) // 2] > 32  # the median held-out prompt has more correct answers than k samples
    # every k and every bound still occurs in training: only combinations are new
    assert {e.reference[1] for e in toy.train} == {2, 3, 4, 5}
    assert {max(e.reference[2]) for e in toy.train} == set(range(3, 10))


def test_sft_samples_are_uniform_over_correct_answers(toy):
    rng = random.Random(0)
    e = ex(toy, "8:3<5=")
    sols = toy.solutions(e)
    draws = [toy.sample_solution(e, rng) for _ in range(4000)]
    assert set(draws) == set(sols)
    expected = len(draws) / len(sols)
    assert all(abs(draws.count(s) - expected) < 5 * expected**0.5 for s in sols)
    for e in toy.train[:50]:
        assert toy.reward(e, toy.sample_solution(e, rng)) == 1.0


def test_digit_sum_variants():
    t = DigitSumTask(DigitSumConfig(num_terms=[3], max_digits=[9], num_forbidden=2, min_solutions=8))
    e = ex(t, "17!58=")  # one kind of prompt: no ":k" part; forbidden digits after "!"
    assert t.reward(e, "9+6+2") == 1.0 and t.reward(e, "9+5+3") == 0.0 and t.reward(e, "8+6+3") == 0.0
    with pytest.raises(ConfigError, match="num_forbidden"):
        DigitSumTask(DigitSumConfig(num_forbidden=9))


def write_jsonl(path, rows, raw_lines=()):
    with open(path, "w") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
        for line in raw_lines:
            fh.write(line + "\n")
    return path


def test_jsonl_and_parquet_records(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"problem": "1+1?", "answer": "2"}, {"problem": "2+2?", "answer": 4}]
    j = write_jsonl(tmp_path / "a.jsonl", rows)
    assert [r["fields"]["answer"] for r in read_records(j, ["problem", "answer"])] == ["2", 4]
    p = tmp_path / "a.parquet"
    pq.write_table(pa.Table.from_pylist([
        {"prompt": [{"role": "user", "content": "What is 3+3?"}], "reward_model": {"ground_truth": "6"}},
    ]), p)
    recs = read_records(p, ["prompt", "reward_model.ground_truth"])
    assert recs[0]["fields"]["reward_model.ground_truth"] == "6"


def test_math_task_from_files(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"q": "What is 1+1?", "a": "2"}])
    write_jsonl(tmp_path / "eval.jsonl", [{"q": [{"role": "user", "content": "Half of 1?"}], "a": "\\frac{1}{2}"}])
    cfg = DataConfig(task="math", train_files=[str(tmp_path / "train.jsonl")], eval_files=[str(tmp_path / "eval.jsonl")],
                     prompt_field="q", answer_field="a", prompt_template="{prompt} Answer in \\boxed{}.")
    task = MathTask(cfg)
    assert task.train[0].prompt == "What is 1+1? Answer in \\boxed{}."
    assert task.eval[0].prompt.startswith("Half of 1?")
    assert task.reward(task.eval[0], "so the answer is \\boxed{0.5}") == 1.0
    assert task.reward(task.eval[0], "\\boxed{2}") == 0.0
    assert task.reward(task.train[0], "1+1 = 2") == 1.0  # plain final answer


@pytest.mark.parametrize(
    "setup, fragments",
    [
        ("missing", ["does not exist", "nope.jsonl"]),
        ("malformed", ["bad.jsonl", "line 2", "not valid JSON"]),
        ("no_field", ["bad.jsonl", "line 1", "no field 'answer'", "question"]),
        ("null_field", ["bad.jsonl", "line 1", "empty (null) field 'answer'"]),
        ("not_object", ["bad.jsonl", "line 1", "list"]),
        ("bad_suffix", ["bad.csv", ".jsonl, .json, .parquet"]),
        ("parquet_column", ["bad.parquet", "no column 'answer'", "question"]),
        ("empty", ["bad.jsonl", "no records"]),
    ],
)
def test_bad_data_files_name_file_and_line(tmp_path, setup, fragments):
    path = tmp_path / "bad.jsonl"
    if setup == "missing":
        path = tmp_path / "nope.jsonl"
    elif setup == "malformed":
        write_jsonl(path, [{"prompt": "a", "answer": "1"}], raw_lines=['{"prompt": "b", "answer": '])
    elif setup == "no_field":
        write_jsonl(path, [{"prompt": "a", "question": "x"}])
    elif setup == "null_field":
        write_jsonl(path, [{"prompt": "a", "answer": None}])
    elif setup == "not_object":
        write_jsonl(path, [[1, 2]])
    elif setup == "bad_suffix":
        path = tmp_path / "bad.csv"
        path.write_text("prompt,answer\n")
    elif setup == "parquet_column":
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = tmp_path / "bad.parquet"
        pq.write_table(pa.Table.from_pylist([{"prompt": "a", "question": "1"}]), path)
    elif setup == "empty":
        path.write_text("\n")
    with pytest.raises(DataError) as e:
        read_records(path, ["prompt", "answer"])
    for frag in fragments:
        assert frag in str(e.value), str(e.value)


def test_build_task_checks_files_before_training(tmp_path):
    cfg = Config()
    cfg.data.task = "math"
    cfg.data.train_files = [str(tmp_path / "missing.jsonl")]
    cfg.data.eval_files = [str(tmp_path / "missing.jsonl")]
    validate(cfg)
    with pytest.raises(DataError, match="missing.jsonl' does not exist"):
        build_task(cfg)

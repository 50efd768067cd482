"""llm/recipes/verl/prepare_data.py: local files -> verl's RL parquet layout, with the trainer's reader."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pq = pytest.importorskip("pyarrow.parquet")

SCRIPT = Path(__file__).resolve().parents[1] / "llm" / "recipes" / "verl" / "prepare_data.py"


@pytest.fixture(scope="module")
def prep():
    spec = importlib.util.spec_from_file_location("prepare_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_math_rows_follow_the_verl_layout(prep, tmp_path):
    src = _jsonl(tmp_path / "math.jsonl", [
        {"prompt": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "1+1?"}],
         "reward_model": {"ground_truth": "2"}},
        {"prompt": "What is 3/6?", "reward_model": {"ground_truth": "\\frac{1}{2}"}},
    ])
    out = tmp_path / "out" / "train.parquet"
    assert prep.main(["--task", "math", "--input", str(src), "--output", str(out),
                      "--answer-field", "reward_model.ground_truth", "--prompt-template", "Q: {prompt}"]) == 0
    rows = pq.read_table(out).to_pylist()
    assert [r["prompt"][0]["content"] for r in rows] == ["Q: 1+1?", "Q: What is 3/6?"]
    assert [r["reward_model"]["ground_truth"] for r in rows] == ["2", "\\frac{1}{2}"]
    assert {r["data_source"] for r in rows} == {"lad_ref/math"} and {r["ability"] for r in rows} == {"math"}
    assert [r["extra_info"]["source"] for r in rows] == ["math.jsonl:1", "math.jsonl:2"]


def test_code_keeps_every_gradable_layout_and_drops_unreadable_tests(prep, tmp_path):
    functional = [{"input": "1", "output": "1", "testtype": "functional", "metadata": {"func_name": "f"}}]
    src = _jsonl(tmp_path / "code.jsonl", [
        {"problem": "echo", "tests": [{"input": "a\n", "output": "a\n"}]},
        {"problem": "apps", "tests": json.dumps({"inputs": ["1\n", "2\n"], "outputs": ["1\n", "2\n"]})},
        {"problem": "leetcode", "tests": functional},
        {"problem": "broken", "tests": [{"input": "f(1)", "output": "1", "testtype": "functional"}]},  # no name
    ])
    args = prep.argparse.Namespace(task="code", input=[str(src)], prompt_field="problem", answer_field="tests",
                                   prompt_template="{prompt}", max_records=None)
    rows, dropped = prep.convert(args)
    assert dropped == 1 and [r["prompt"][0]["content"] for r in rows] == ["echo", "apps", "leetcode"]
    assert json.loads(rows[1]["reward_model"]["ground_truth"]) == {"inputs": ["1\n", "2\n"], "outputs": ["1\n", "2\n"]}
    args.max_records = 1
    assert len(prep.convert(args)[0]) == 1


def test_bad_input_names_file_line_and_field(prep, tmp_path):
    src = _jsonl(tmp_path / "bad.jsonl", [{"prompt": "ok", "answer": "1"}, {"prompt": "no answer"}])
    with pytest.raises(SystemExit, match=r"bad\.jsonl' line 2 has no field 'answer'"):
        prep.main(["--task", "math", "--input", str(src), "--output", str(tmp_path / "o.parquet")])
    chat = _jsonl(tmp_path / "chat.jsonl", [{"prompt": {"text": "not a chat"}, "answer": "1"}])
    with pytest.raises(SystemExit, match=r"chat\.jsonl' line 1 field 'prompt' holds a dict"):
        prep.main(["--task", "math", "--input", str(chat), "--output", str(tmp_path / "o.parquet")])
    with pytest.raises(SystemExit, match="does not exist"):
        prep.main(["--task", "math", "--input", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "o")])
    assert not (tmp_path / "o.parquet").exists()  # nothing written on bad input

"""Convert local question files into verl's RL parquet layout (no hub access).

    python llm/recipes/verl/prepare_data.py --task math \\
        --input /data/dapo-math-17k.parquet --output /data/verl/dapo_math_train.parquet \\
        --prompt-field prompt --answer-field reward_model.ground_truth

    python llm/recipes/verl/prepare_data.py --task code \\
        --input /data/deepcoder_train.jsonl --output /data/verl/deepcoder_train.parquet \\
        --prompt-field problem --answer-field tests --prompt-template "$(cat code_prompt.txt)"

Input: ``.jsonl``/``.json`` (one JSON object per line) or ``.parquet``. ``--prompt-field`` holds the
question (a string, or a chat list whose last user turn is the question); ``--answer-field`` holds the
math reference answer, or the code tests: a list of ``{"input", "output"}`` stdin/stdout records (or a
JSON string of one). Dotted paths reach nested fields (``reward_model.ground_truth``).

Output rows (what ``verl.trainer.main_ppo`` and ``llm/recipes/verl/reward.py`` read)::

    data_source   "lad_ref/math" or "lad_ref/code"     (selects the reward in reward.py)
    prompt        [{"role": "user", "content": <template applied to the question>}]
    ability       "math" or "code"
    reward_model  {"style": "rule", "ground_truth": <answer text, or the tests as a JSON string>}
    extra_info    {"index": i, "source": "<file>:<record>"}

Records are read by lad_ref's own reader (``lad_ref.llm.tasks.read_records``: errors name the file and
the line or row), so lad_ref must be installed where this runs, as it is wherever verl loads its loss.

Code records keep their tests in their own layout (stdin/stdout lists, APPS/TACO dicts with ``fn_name``,
LiveCodeBench rows, HumanEval-style test code: everything ``lad_ref.rewards.code`` grades); a record whose
tests it cannot read is dropped and counted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lad_ref.llm.tasks import DataError, question_text, read_records  # the trainer's own reader

TASKS = ("math", "code")


def usable_tests(value) -> str | None:
    """The tests as a JSON string if lad_ref.rewards.code can read their layout, else None."""
    from lad_ref.rewards.code_tests import parse_tests

    tests = value
    if isinstance(value, str):
        try:
            tests = json.loads(value)
        except ValueError:
            return None
    try:
        parse_tests(tests)
    except ValueError:
        return None
    return json.dumps(tests)


def convert(args: argparse.Namespace) -> tuple[list[dict], int]:
    rows, dropped = [], 0
    for path in args.input:
        try:
            records = read_records(path, [args.prompt_field, args.answer_field])
            for rec in records:
                rec["question"] = question_text(rec["fields"][args.prompt_field])
        except DataError as e:
            raise SystemExit(f"error: {e}") from None
        except ValueError as e:  # question_text: a prompt field that is neither a string nor a chat
            raise SystemExit(f"error: {rec['where']} field {args.prompt_field!r} {e}.") from None
        for rec in records:
            question, answer = rec["question"], rec["fields"][args.answer_field]
            if args.task == "code":
                truth = usable_tests(answer)
                if truth is None:
                    dropped += 1
                    continue
            else:
                truth = str(answer)
            rows.append(
                {
                    "data_source": f"lad_ref/{args.task}",
                    "prompt": [
                        {"role": "user", "content": args.prompt_template.replace("{prompt}", question)}
                    ],
                    "ability": args.task,
                    "reward_model": {"style": "rule", "ground_truth": truth},
                    "extra_info": {"index": len(rows), "source": rec["source"]},
                }
            )
            if args.max_records is not None and len(rows) >= args.max_records:
                return rows, dropped
    return rows, dropped


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="prepare_data.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--task", required=True, choices=TASKS, help="math or code (selects the reward).")
    p.add_argument("--input", required=True, nargs="+", help="Local .jsonl/.json/.parquet files.")
    p.add_argument("--output", required=True, help="Output .parquet file.")
    p.add_argument("--prompt-field", default="prompt", help="Field with the question (dotted paths allowed).")
    p.add_argument("--answer-field", default="answer", help="math: reference answer; code: tests.")
    p.add_argument("--prompt-template", default="{prompt}", help="Format string; {prompt} is the question.")
    p.add_argument("--max-records", type=int, default=None, help="Keep at most this many records.")
    args = p.parse_args(argv)
    rows, dropped = convert(args)
    if not rows:
        raise SystemExit("error: no usable records (code: are the tests in a layout lad_ref.rewards.code reads?).")
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), out)
    print(
        f"wrote {len(rows)} records to {out}"
        + (f" ({dropped} dropped: tests in no layout lad_ref.rewards.code reads)" if dropped else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How tests/data/heldout_math_cases.jsonl was built (kept for provenance; needs the three repositories'
snapshots, which are not part of lad_ref).

Every (prediction, gold, verdict) is read mechanically, with ``ast``, from other open projects' grader
tests, with the verdict those tests assert; nothing is written or edited by hand:

* huggingface/Math-Verify ``tests/*.py``: every ``@pytest.mark.parametrize("gold,pred,expected", ...)``
  row of test functions that call ``compare_strings``/``verify`` with the default comparison settings
  (rows of functions that pass ``strict=False``, a ``precision`` or ``allow_set_relation_comp`` are left
  out: they test another setting, not the verdict a careful grader gives);
* NVIDIA/NeMo-Skills ``tests/test_math_equal.py``: each pair of ``test_correct_examples`` /
  ``test_incorrect_examples`` in both orders, as that test checks it (``None`` left out);
* inclusionAI/AReaL ``tests/test_math_verify_reward.py``: each ``*_reward_fn(completions=..., answer=...)``
  call with the reward its ``assert`` states (``answer=None`` left out).

The file was written before lad_ref's gold normalisation (issue 22) and is not used to tune it.
Usage: ``python tests/data/build_heldout_math_cases.py MATH_VERIFY_GIT NEMO_SKILLS_GIT AREAL_GIT``.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).with_name("heldout_math_cases.jsonl")


def _files(git_dir: str, prefix: str) -> list[tuple[str, str, str]]:
    commit = subprocess.run(["git", "-C", git_dir, "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    names = subprocess.run(["git", "-C", git_dir, "ls-tree", "-r", "--name-only", "HEAD"], capture_output=True,
                           text=True, check=True).stdout.split()
    out = []
    for name in names:
        if name.startswith(prefix) and name.endswith(".py"):
            text = subprocess.run(["git", "-C", git_dir, "show", f"HEAD:{name}"], capture_output=True, text=True,
                                  check=True).stdout
            out.append((name, commit, text))
    return out


def _literal(node):
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return None


def _parametrize_rows(func: ast.FunctionDef):
    for deco in func.decorator_list:
        if isinstance(deco, ast.Call) and getattr(deco.func, "attr", "") == "parametrize" and len(deco.args) >= 2:
            names = _literal(deco.args[0])
            rows = deco.args[1]
            if isinstance(names, str) and isinstance(rows, (ast.List, ast.Tuple)):
                yield [n.strip() for n in names.split(",")], rows.elts


_NON_DEFAULT = {"strict", "precision", "allow_set_relation_comp", "float_rounding"}


def math_verify_cases(git_dir: str) -> list[dict]:
    cases = []
    for name, commit, text in _files(git_dir, "tests/"):
        for func in ast.walk(ast.parse(text)):
            if not isinstance(func, ast.FunctionDef):
                continue
            calls = [c for c in ast.walk(func) if isinstance(c, ast.Call)]
            if any(kw.arg in _NON_DEFAULT for c in calls for kw in c.keywords):
                continue
            for names, rows in _parametrize_rows(func):
                if not {"gold", "pred", "expected"} <= set(names):
                    continue
                for row in rows:
                    values = _literal(row)
                    if not isinstance(values, tuple) or len(values) != len(names):
                        continue
                    v = dict(zip(names, values))
                    if not isinstance(v["gold"], str) or not isinstance(v["pred"], str):
                        continue
                    if v["expected"] not in (0, 1, True, False):
                        continue
                    cases.append({"prediction": v["pred"], "gold": v["gold"], "verdict": int(bool(v["expected"])),
                                  "source": f"huggingface/Math-Verify@{commit[:12]}:{name}::{func.name}"})
    return cases


def nemo_skills_cases(git_dir: str) -> list[dict]:
    cases = []
    for name, commit, text in _files(git_dir, "tests/test_math_equal.py"):
        for func in ast.walk(ast.parse(text)):
            if not isinstance(func, ast.FunctionDef) or func.name not in ("test_correct_examples",
                                                                          "test_incorrect_examples"):
                continue
            verdict = int(func.name == "test_correct_examples")
            for _names, rows in _parametrize_rows(func):
                for row in rows:
                    pair = _literal(row)
                    if not isinstance(pair, tuple) or len(pair) != 2 or None in pair:
                        continue
                    a, b = (str(x) for x in pair)
                    for pred, gold in ((a, b), (b, a)):
                        cases.append({"prediction": pred, "gold": gold, "verdict": verdict,
                                      "source": f"NVIDIA/NeMo-Skills@{commit[:12]}:{name}::{func.name}"})
    return cases


def areal_cases(git_dir: str) -> list[dict]:
    cases = []
    for name, commit, text in _files(git_dir, "tests/test_math_verify_reward.py"):
        for func in ast.walk(ast.parse(text)):
            if not isinstance(func, ast.FunctionDef):
                continue
            call = next((c for c in ast.walk(func) if isinstance(c, ast.Call)
                         and getattr(c.func, "id", "").endswith("_reward_fn")), None)
            check = next((a for a in ast.walk(func) if isinstance(a, ast.Assert)
                          and isinstance(a.test, ast.Compare)), None)
            if call is None or check is None:
                continue
            kw = {k.arg: _literal(k.value) for k in call.keywords}
            want = _literal(check.test.comparators[0])
            if not isinstance(kw.get("completions"), str) or not isinstance(kw.get("answer"), str):
                continue
            if want not in (0.0, 1.0):
                continue
            cases.append({"prediction": kw["completions"], "gold": kw["answer"], "verdict": int(want),
                          "source": f"inclusionAI/AReaL@{commit[:12]}:{name}::{func.name}"})
    return cases


def main(argv: list[str]) -> None:
    math_verify, nemo, areal = argv
    cases = math_verify_cases(math_verify) + nemo_skills_cases(nemo) + areal_cases(areal)
    fd, tmp = tempfile.mkstemp(dir=OUT.parent, prefix=".heldout")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        for case in cases:
            fh.write(json.dumps(case, ensure_ascii=False) + "\n")
    os.replace(tmp, OUT)
    print(f"{len(cases)} cases -> {OUT}")


if __name__ == "__main__":
    main(sys.argv[1:])

"""verl custom reward for the lad_ref recipes: ``reward.custom_reward_function.path=llm/recipes/verl/reward.py``.

Two entry points:

* ``compute_score_batch`` (what the recipes use, with ``reward.reward_manager.name=batch``): verl's
  batch reward manager passes the whole batch (``data_sources``, ``solution_strs``, ``ground_truths``,
  ``extra_infos``), graded across the node's cores by lad_ref.rewards.batch;
* ``compute_score`` for verl's default per-response ("naive") manager.

Rows written by ``prepare_data.py`` carry ``data_source`` ``lad_ref/math`` (ground truth: the reference
answer) or ``lad_ref/code`` (ground truth: the tests as a JSON string, in any layout lad_ref.rewards.code
accepts). The scores are lad_ref's own rewards:

* math: :func:`lad_ref.rewards.math.math_reward` (1.0 iff the final answer is equivalent; math-verify);
* code: :func:`lad_ref.rewards.code.code_reward` (1.0 iff every test passes in the sandbox: Linux, root
  or bubblewrap).
"""

from __future__ import annotations

CODE_TIMEOUT_S = 6.0  # per test case, as LiveCodeBench's harness


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs) -> float:
    """1.0 for a correct response, else 0.0 (verl logs it as ``acc`` too)."""
    if data_source == "lad_ref/math":
        from lad_ref.rewards.math import math_reward

        return float(math_reward(solution_str, str(ground_truth)))
    if data_source == "lad_ref/code":
        from lad_ref.rewards.code import code_reward

        return float(code_reward(solution_str, ground_truth, timeout_s=CODE_TIMEOUT_S))
    raise ValueError(_unknown(data_source))


def _unknown(data_source) -> str:
    return (
        f"unknown data_source {data_source!r}; valid choices are lad_ref/math, lad_ref/code "
        "(write the data with llm/recipes/verl/prepare_data.py)."
    )


def compute_score_batch(data_sources, solution_strs, ground_truths, extra_infos=None, **kwargs) -> list[float]:
    """Scores of a whole batch, math and code rows each graded in parallel across the node's cores."""
    from lad_ref.rewards.batch import grade_code, grade_math

    sources = list(data_sources)
    for source in set(sources) - {"lad_ref/math", "lad_ref/code"}:
        raise ValueError(_unknown(source))
    scores = [0.0] * len(sources)
    for source, grade, extra in (("lad_ref/math", grade_math, {}),
                                 ("lad_ref/code", grade_code, {"timeout_s": CODE_TIMEOUT_S})):
        rows = [i for i, s in enumerate(sources) if s == source]
        if rows:
            got = grade([solution_strs[i] for i in rows], [ground_truths[i] for i in rows], **extra)
            for i, score in zip(rows, got):
                scores[i] = float(score)
    return scores

"""verl custom reward for the lad_ref recipes: ``reward.custom_reward_function.path=llm/recipes/verl/reward.py``.

verl's reward manager calls ``compute_score(data_source=..., solution_str=..., ground_truth=...,
extra_info=...)`` once per response (in a worker thread). Rows written by ``prepare_data.py`` carry
``data_source`` ``lad_ref/math`` (ground truth: the reference answer) or ``lad_ref/code`` (ground
truth: the stdin/stdout tests as a JSON string). The scores are lad_ref's own rewards:

* math: :func:`lad_ref.rewards.math.math_reward` (1.0 iff the final answer is equivalent; math-verify);
* code: :func:`lad_ref.rewards.code.code_reward` (1.0 iff every test passes in the sandbox; Linux + root).
"""

from __future__ import annotations

import json

CODE_TIMEOUT_S = 6.0  # per test case, as LiveCodeBench's harness


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs) -> float:
    """1.0 for a correct response, else 0.0 (verl logs it as ``acc`` too)."""
    if data_source == "lad_ref/math":
        from lad_ref.rewards.math import math_reward

        return float(math_reward(solution_str, str(ground_truth)))
    if data_source == "lad_ref/code":
        from lad_ref.rewards.code import code_reward

        tests = json.loads(ground_truth) if isinstance(ground_truth, str) else ground_truth
        return float(code_reward(solution_str, tests, timeout_s=CODE_TIMEOUT_S))
    raise ValueError(
        f"unknown data_source {data_source!r}; valid choices are lad_ref/math, lad_ref/code "
        "(write the data with llm/recipes/verl/prepare_data.py)."
    )

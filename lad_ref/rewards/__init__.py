"""Verifiable rewards for RL on reasoning tasks: pure Python, no torch.

* :func:`math_reward` / :func:`extract_answer` -- final-answer equivalence checked with math-verify
  (:mod:`lad_ref.rewards.math`).
* :func:`code_reward` / :func:`run_tests` -- stdin/stdout unit tests run in a sandboxed subprocess
  (:mod:`lad_ref.rewards.code`).
"""

from lad_ref.rewards.code import CodeResult, SandboxError, code_reward, extract_program, run_tests
from lad_ref.rewards.math import extract_answer, math_reward

__all__ = [
    "CodeResult",
    "SandboxError",
    "code_reward",
    "extract_answer",
    "extract_program",
    "math_reward",
    "run_tests",
]

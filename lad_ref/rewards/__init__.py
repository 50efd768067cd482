"""Verifiable rewards for RL on reasoning tasks: pure Python, no torch.

* :func:`math_reward` / :func:`extract_answer` -- final-answer equivalence by math-verify's own parser
  and verifier (:mod:`lad_ref.rewards.math`).
* :func:`code_reward` / :func:`run_tests` -- a program against its tests, in each dataset's own layout
  (:mod:`lad_ref.rewards.code_tests`), in a sandboxed subprocess: root launcher or bubblewrap
  (:mod:`lad_ref.rewards.code`).
* :func:`grade_math` / :func:`grade_code` -- a batch across every core with a deadline per item
  (:mod:`lad_ref.rewards.batch`).
"""

from lad_ref.rewards.batch import grade_code, grade_math
from lad_ref.rewards.code import (
    CodeResult,
    SandboxError,
    code_reward,
    extract_program,
    run_tests,
    sandbox_mode,
)
from lad_ref.rewards.math import extract_answer, math_reward

__all__ = [
    "CodeResult",
    "SandboxError",
    "code_reward",
    "extract_answer",
    "extract_program",
    "grade_code",
    "grade_math",
    "math_reward",
    "run_tests",
    "sandbox_mode",
]

"""lm-eval's `!function hooks.NAME` loads this file by path: it only points at the package's scoring."""
from llm_platform.evaluation.suites import score_golden, score_instructions, score_safety  # noqa: F401

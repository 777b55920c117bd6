"""The evaluator's one error type, so the CLI can turn any bad input into a clear message."""

from __future__ import annotations

__all__ = ["EvaluationError"]

from edge_agent.errors import EdgeAgentError


class EvaluationError(EdgeAgentError):
    """Input the evaluator cannot use. The message names the file, column, field or option,
    says what was expected and what to do about it."""

"""``--model`` text: a baseline model written as its terms, e.g. ``production+on+3P-heating``.

Tokens (joined by ``+``): ``mean``, ``production``, ``hours`` (operating hours),
``idle-hours`` (hours switched on without producing), ``on`` (an
extra constant while production > 0), ``day-type`` (a separate weekend value of that
constant), ``tow`` (168 hour-of-week constants, hourly data), and one temperature shape of
``2P``, ``3P-heating``, ``3P-cooling``, ``4P``, ``5P``.
"""

from __future__ import annotations

__all__ = ["MODEL_TOKENS", "parse_model_spec"]

from edge_agent.evaluation._channels import ACTIVITY_ROLES, LINEAR_ROLES, Role
from edge_agent.evaluation._errors import EvaluationError
from edge_agent.evaluation._spec import ModelSpec, Shape

_SHAPES = {
    "2p": Shape.TWO_P,
    "3p-heating": Shape.HEATING_3P,
    "3p-cooling": Shape.COOLING_3P,
    "4p": Shape.FOUR_P,
    "5p": Shape.FIVE_P,
}
_DENSE = {"production": Role.PRODUCTION, "hours": Role.OPERATING_HOURS, "idle-hours": Role.IDLE_HOURS}
_FLAGS = ("on", "day-type", "tow", "mean")
MODEL_TOKENS = (*_DENSE, *_FLAGS[:3], "2P", "3P-heating", "3P-cooling", "4P", "5P")


def parse_model_spec(text: str, option: str = "--model") -> ModelSpec:
    """Parse a model; every problem names the token and lists what is allowed."""
    tokens = [t.strip().lower() for t in text.split("+") if t.strip()]
    allowed = ", ".join(MODEL_TOKENS)
    if not tokens:
        raise EvaluationError(f"{option} {text!r}: expected terms joined by '+' from: mean, {allowed}")
    if tokens == ["mean"]:
        return ModelSpec()
    dense: list[Role] = []
    shapes: list[Shape] = []
    for t in tokens:
        if t in _DENSE:
            dense.append(_DENSE[t])
        elif t in _SHAPES:
            shapes.append(_SHAPES[t])
        elif t not in _FLAGS[:3]:
            raise EvaluationError(f"{option} {text!r}: unknown term {t!r}; use terms from: {allowed}")
    if len(shapes) > 1:
        raise EvaluationError(f"{option} {text!r}: at most one temperature shape, got {len(shapes)}")
    if len(set(dense)) != len(dense):
        raise EvaluationError(f"{option} {text!r}: a term appears twice")
    on = "on" in tokens or "day-type" in tokens
    order = [r for r in LINEAR_ROLES if r in dense]
    active = [r for r in order if r in ACTIVITY_ROLES]
    if on and not active:
        raise EvaluationError(f"{option} {text!r}: 'on' and 'day-type' need a production or hours term")
    return ModelSpec(
        dense=tuple(order),
        shape=shapes[0] if shapes else Shape.NONE,
        time_of_week="tow" in tokens,
        on_off=active[0] if on else None,
        weekend_on="day-type" in tokens,
    )

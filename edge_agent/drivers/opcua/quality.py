"""OPC UA StatusCode → :class:`~edge_agent.batch.Quality`, and raw values → numbers.

The severity lives in the top two bits of a StatusCode (Part 4, 7.39): 00 Good,
01 Uncertain, 10 Bad (11 is reserved and treated as Bad). A value is only usable as a
number if its status allows it *and* it actually is a finite number; anything else is
Bad, so a Bad sample can never reach analytics looking like a good one.
"""

from __future__ import annotations

__all__ = ["as_float", "as_int", "qualities"]

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_agent.batch import Quality

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def qualities(status: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint8]:
    """Vectorised severity → GOOD / UNCERTAIN / BAD."""
    severity = np.right_shift(status, np.uint32(30))
    return np.minimum(severity, np.uint32(Quality.BAD)).astype(np.uint8)


def as_float(value: Any) -> float:
    """A number as float, NaN for anything that is not a finite real number."""
    kind = type(value)
    if kind is float:
        return value if math.isfinite(value) else math.nan
    if kind is int or kind is bool:
        return float(value)
    if isinstance(value, int | float | np.integer | np.floating):
        f = float(value)
        return f if math.isfinite(f) else math.nan
    return math.nan


def as_int(value: Any) -> int | None:
    """An exact integer (counters), or None when the value is not integral or out of int64 range."""
    if type(value) is int:
        return value if _INT64_MIN <= value <= _INT64_MAX else None
    if isinstance(value, bool | int | np.integer):
        i = int(value)
        return i if _INT64_MIN <= i <= _INT64_MAX else None
    if isinstance(value, float | np.floating) and math.isfinite(value) and float(value).is_integer():
        return as_int(int(value))
    return None

"""Cumulative counters to exact integer deltas: rollover or reset, told apart physically.

When a counter falls, the wrapped delta ``M + 1 − v_prev + v`` is a rollover only if it
could have been drawn at the plausible maximum rate within the elapsed time; otherwise the
meter was reset (or swapped) and the delta is ``v`` itself. All arithmetic is uint64, so
the deltas of a series telescope exactly to its total.
"""

from __future__ import annotations

__all__ = ["CounterDeltas", "as_raw_counts", "counter_deltas"]

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class CounterDeltas:
    """Deltas between consecutive usable samples (``delta[i]`` spans sample i−1 → i)."""

    delta: npt.NDArray[np.uint64]
    rollover: npt.NDArray[np.bool_]
    reset: npt.NDArray[np.bool_]


def as_raw_counts(values: np.ndarray, maximum: int, where: str) -> npt.NDArray[np.uint64]:
    """Validate raw counter readings and widen them to uint64 without losing a count."""
    kind = values.dtype.kind  # "i"/"u": integers (cheaper than np.issubdtype on every update)
    if kind not in "iu":
        raise ValueError(
            f"{where}: counters must arrive as raw integers, got {values.dtype}; decode the "
            "register as an integer type so totals stay exact (the spec holds the scale)"
        )
    if values.size and kind == "i" and values.min() < 0:
        raise ValueError(
            f"{where}: negative counter reading {int(values.min())}; counters "
            "count up from 0 — check the register's data type"
        )
    raw = values.astype(np.uint64, copy=False)
    if raw.size and maximum < (1 << 64) - 1 and int(raw.max()) > maximum:
        raise ValueError(
            f"{where}: reading {int(raw.max())} exceeds the configured counter maximum "
            f"{maximum}; set bits/max_value in the counter spec to the meter's real width"
        )
    return raw


def counter_deltas(
    raw: npt.NDArray[np.uint64],
    t_ns: npt.NDArray[np.int64],
    *,
    maximum: int,
    scale: float,
    max_rate_per_s: float,
) -> CounterDeltas:
    """Deltas between consecutive readings ``raw`` taken at ``t_ns`` (both length n ≥ 1).

    Returns n − 1 deltas. A fall is a rollover iff ``(M + 1 − v_prev + v)·scale`` is at most
    ``max_rate_per_s·Δt``; otherwise it is a reset and the delta is ``v``.
    """
    v0 = raw[:-1]
    v1 = raw[1:]
    fall = v1 < v0
    delta = v1 - v0  # uint64 wraps on a fall; fixed below
    if not fall.any():
        return CounterDeltas(delta, fall, fall)  # all False: no rollover, no reset
    idx = np.flatnonzero(fall)
    a = v0[idx]
    b = v1[idx]
    wrapped = (np.uint64(maximum) - a) + b + np.uint64(1)  # exact: < 2**64 since b < a
    dt_s = (t_ns[1:][idx] - t_ns[:-1][idx]) / 1e9
    plausible = wrapped.astype(np.float64) * scale <= max_rate_per_s * dt_s
    delta[idx] = np.where(plausible, wrapped, b)
    rollover = np.zeros_like(fall)
    rollover[idx] = plausible
    reset = np.zeros_like(fall)
    reset[idx] = ~plausible
    return CounterDeltas(delta, rollover, reset)

"""Cumulative counters to exact integer deltas: every step checked against physics.

Each delta, rise or fall, must fit what the asset could have drawn or made in the elapsed
time: ``limit = max_rate·(Δt + slack) / scale + step`` raw counts, where ``step`` is the
counter's resolution in counts (one step of a coarse counter is always plausible: a 1 kWh
meter may tick once in any interval, however short) and ``slack`` the time a reading may
lag the count it shows (a meter that updates its register once a second, a gateway cache,
a server that publishes late): counts of up to that long may show up in a short interval.

* a rise within the limit is booked as it is;
* a fall whose wrapped delta ``M + 1 − v_prev + v`` fits is a **rollover**;
* a fall to a value that itself fits is a **reset** (meter restarted from 0): the delta is
  the count since the reset, ``v``;
* anything else — a rise above the limit, or a fall to an implausible non-zero value (a PLC
  restart that reloads an old or garbage count) — is a **jump**: nothing is booked.

All arithmetic is uint64, so the deltas of a series telescope exactly to the sum of its
plausible steps. The test oracle applies the same rules one sample at a time.
"""

from __future__ import annotations

__all__ = ["CounterDeltas", "as_raw_counts", "counter_deltas", "limit_counts"]

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class CounterDeltas:
    """Deltas between consecutive usable samples (``delta[i]`` spans sample i−1 → i).

    ``limit`` is the plausible maximum of each delta in raw counts; a ``jump`` books 0.
    """

    delta: npt.NDArray[np.uint64]
    rollover: npt.NDArray[np.bool_]
    reset: npt.NDArray[np.bool_]
    jump: npt.NDArray[np.bool_]
    limit: npt.NDArray[np.float64]


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


def limit_counts(
    dt_ns: float, *, scale: float, max_rate_per_s: float, step_counts: int = 1, slack_ns: int = 0
) -> float:
    """Plausible maximum delta in raw counts over ``dt_ns``: rate·(Δt + slack) plus one step."""
    return (dt_ns + slack_ns) * (max_rate_per_s / scale) / 1e9 + step_counts


def counter_deltas(
    raw: npt.NDArray[np.uint64],
    t_ns: npt.NDArray[np.int64],
    *,
    maximum: int,
    scale: float,
    max_rate_per_s: float,
    step_counts: int = 1,
    slack_ns: int = 0,
) -> CounterDeltas:
    """Deltas between consecutive readings ``raw`` taken at ``t_ns`` (both length n ≥ 1).

    Returns n − 1 deltas classified as in the module docstring.
    """
    v0 = raw[:-1]
    v1 = raw[1:]
    dt_ns: npt.NDArray[np.float64] = (t_ns[1:] - t_ns[:-1] + slack_ns).astype(np.float64)
    limit: npt.NDArray[np.float64] = dt_ns * (max_rate_per_s / scale) / 1e9 + float(step_counts)
    fall = v1 < v0
    delta = v1 - v0  # uint64 wraps on a fall; fixed below
    big = delta > limit  # every fall is "big" here (wrapped uint64): sorted out below
    if not big.any():
        return CounterDeltas(delta, fall, fall, fall, limit)  # all False: plain rises
    rollover = np.zeros_like(fall)
    reset = np.zeros_like(fall)
    jump = big & ~fall
    idx = np.flatnonzero(fall)
    if idx.size:
        a = v0[idx]
        b = v1[idx]
        lim = limit[idx]
        wrapped = (np.uint64(maximum) - a) + b + np.uint64(1)  # exact: < 2**64 since b < a
        wrap_ok = wrapped <= lim
        reset_ok = ~wrap_ok & (b <= lim)
        delta[idx] = np.where(wrap_ok, wrapped, np.where(reset_ok, b, np.uint64(0)))
        rollover[idx] = wrap_ok
        reset[idx] = reset_ok
        jump[idx] = ~(wrap_ok | reset_ok)
    delta[jump] = 0
    return CounterDeltas(delta, rollover, reset, jump, limit)

"""Machine state from power: hysteresis and minimum dwell, without a per-sample loop.

Power is mapped to five zones by the four hysteresis edges (T1 ∓ h/2, T2 ∓ h/2). Zones 0, 2
and 4 decide the level (off, idle, producing); the bands 1 and 3 only clamp it: in band 1 a
producing machine drops to idle, in band 3 an off machine rises to idle, otherwise the level
holds. Only the *runs* of equal zones are processed (forward fills on run indices with
``np.maximum.accumulate``), so the cost is one pass over the samples plus work per change.

The dwell is a debounce: a new level takes effect at the first sample where it has
persisted ``min_dwell_s``; shorter excursions never show. The first sample ever is accepted
at once. A carry makes batch-by-batch classification equal to one pass over the series.
"""

from __future__ import annotations

__all__ = ["LEVEL_STATE", "PowerCarry", "StateRuns", "classify_power", "forward_fill", "zones"]

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .spec import MachineState, StateThresholds

LEVEL_STATE = np.array([MachineState.OFF, MachineState.IDLE, MachineState.PRODUCING], np.int8)
"""Hysteresis level (0, 1, 2) → :class:`MachineState` code."""

_DECISIVE = np.array([0, -1, 1, -1, 2], np.int8)  # zone → level it forces, −1 for the bands


@dataclass(frozen=True, slots=True)
class PowerCarry:
    """What the classifier remembers between batches."""

    level: int  # hysteresis level after the last usable sample
    run_start_ns: int  # when the current level run began
    effective: int  # debounced level in force


@dataclass(frozen=True, slots=True)
class StateRuns:
    """Effective level as runs: from ``start[i]`` (sample index) on, the level is ``level[i]``.

    ``start[0]`` is always 0.
    """

    start: npt.NDArray[np.intp]
    level: npt.NDArray[np.int8]

    def dense(self, n: int) -> npt.NDArray[np.int8]:
        """Per-sample level (for n samples)."""
        return np.repeat(self.level, np.diff(np.append(self.start, n)))


def forward_fill(
    values: npt.NDArray[np.int8], valid: npt.NDArray[np.bool_], initial: int
) -> npt.NDArray[np.int8]:
    """``values`` with invalid entries replaced by the last valid one (``initial`` if none)."""
    idx = np.where(valid, np.arange(valid.shape[0]), -1)
    np.maximum.accumulate(idx, out=idx)
    out = values[np.maximum(idx, 0)]
    out[idx < 0] = initial
    return out


def zones(
    p: np.ndarray, th: StateThresholds, out: npt.NDArray[np.uint8] | None = None
) -> npt.NDArray[np.uint8]:
    """Zone 0–4 of each power value: the number of hysteresis edges it reaches."""
    h = th.hysteresis_kw / 2.0
    edges = (th.off_below_kw - h, th.off_below_kw + h, th.idle_below_kw - h, th.idle_below_kw + h)
    z = np.zeros(p.shape, np.uint8) if out is None else out
    buf = np.empty(p.shape, np.bool_)
    for edge in edges:
        np.greater_equal(p, _edge(p.dtype, edge), out=buf)
        np.add(z, buf, out=z, casting="unsafe")
    return z


def _edge(dtype: np.dtype, edge: float) -> np.floating:  # type: ignore[type-arg]
    """Edge in the array's own precision with the same verdict as an exact comparison.

    For float32 ``x``: ``x >= e`` exactly iff ``x >= ceil32(e)``; comparing in float32 keeps
    the pass at full SIMD speed.
    """
    if dtype == np.float32:
        f = np.float32(edge)
        return np.nextafter(f, np.float32(np.inf)) if f < edge else f
    return np.float64(edge)


def plain_level(p0: float, th: StateThresholds) -> int:
    """Level of a first-ever sample, which has no history to hold: plain thresholds."""
    return int(p0 >= th.off_below_kw) + int(p0 >= th.idle_below_kw)


def classify_power(
    t_ns: npt.NDArray[np.int64],
    p: np.ndarray,
    th: StateThresholds,
    carry: PowerCarry | None,
    z: npt.NDArray[np.uint8] | None = None,
) -> tuple[StateRuns, PowerCarry | None]:
    """Effective level of each usable power sample, as runs, plus the carry for next time.

    ``z`` may pass precomputed zones (the fleet path computes them in bulk).
    """
    n = t_ns.shape[0]
    if n == 0:
        empty = StateRuns(np.zeros(0, np.intp), np.zeros(0, np.int8))
        return empty, carry
    if z is None:
        z = zones(p, th)
    # Runs of equal zone.
    zstart = np.flatnonzero(z[1:] != z[:-1]) + 1
    zstart = np.concatenate(([0], zstart))
    zr = z[zstart]
    init = carry.level if carry is not None else plain_level(float(p[0]), th)
    dec = _DECISIVE[zr]
    vd = forward_fill(dec, dec >= 0, init)
    ev = dec.copy()
    ev[(zr == 1) & (vd == 2)] = 1  # band 1 pulls a producing machine down to idle
    ev[(zr == 3) & (vd == 0)] = 1  # band 3 lifts an off machine up to idle
    lvl = forward_fill(ev, ev >= 0, init)
    # Runs of equal level (the raw, undebounced state).
    keep = np.ones(lvl.shape[0], np.bool_)
    keep[1:] = lvl[1:] != lvl[:-1]
    rs = zstart[keep]
    rl = lvl[keep]
    rs_t = t_ns[rs].copy()
    continuing = carry is not None and int(rl[0]) == carry.level
    if continuing:
        assert carry is not None
        rs_t[0] = carry.run_start_ns
    # Debounce: a run takes effect at its first sample at least min_dwell after its start.
    dwell = int(round(th.min_dwell_s * 1e9))
    ci = np.maximum(np.searchsorted(t_ns, rs_t + dwell, side="left"), rs)
    nxt = np.append(rs[1:], n)
    ok = ci < nxt
    first_eff = carry.effective if carry is not None else int(rl[0])
    start = np.concatenate(([0], ci[ok])).astype(np.intp)
    level = np.concatenate(([first_eff], rl[ok])).astype(np.int8)
    # Several changes at one sample: the last wins; then merge equal neighbours.
    last_at = np.ones(start.shape[0], np.bool_)
    last_at[:-1] = start[1:] != start[:-1]
    start, level = start[last_at], level[last_at]
    change = np.ones(start.shape[0], np.bool_)
    change[1:] = level[1:] != level[:-1]
    runs = StateRuns(start[change], level[change])
    new_carry = PowerCarry(level=int(rl[-1]), run_start_ns=int(rs_t[-1]), effective=int(level[-1]))
    return runs, new_carry

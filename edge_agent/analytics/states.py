"""Machine state from power: hysteresis and minimum dwell, without a per-sample loop.

Power is mapped to five zones by the four hysteresis edges (T1 ∓ h/2, T2 ∓ h/2). Zones 0, 2
and 4 decide the level (off, idle, producing); the bands 1 and 3 only clamp it: in band 1 a
producing machine drops to idle, in band 3 an off machine rises to idle, otherwise the level
holds. Only the *runs* of equal zones are processed (forward fills on run indices with
``np.maximum.accumulate``), so the cost is one pass over the samples plus work per change.

The dwell is a debounce: a new level takes effect at the first sample where it has
persisted ``min_dwell_s``; shorter excursions never show. The first sample ever is accepted
at once. A carry makes batch-by-batch classification equal to one pass over the series.

Each debounced change also says *when* it happened: the dwell timer of its level run expired at
the run's first sample + ``min_dwell_s``, an instant between the change's sample and the one
before. Without a dwell that instant is unknown (:data:`state_change.NO_SWITCH`) and :mod:`state_change`
estimates it from the interval's energy.
"""

from __future__ import annotations

__all__ = [
    "LEVEL_STATE",
    "PowerCarry",
    "RowRuns",
    "StateRuns",
    "classify_power",
    "classify_rows",
    "edges",
    "plain_level",
    "zones",
]

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .spec import MachineState, StateThresholds
from .state_change import NO_SWITCH

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

    ``start[0]`` is always 0. ``switch[i]`` is when run i's level took effect (its dwell timer
    expired) or ``NO_SWITCH`` when that instant is unknown or the run is no change.
    """

    start: npt.NDArray[np.intp]
    level: npt.NDArray[np.int8]
    switch: npt.NDArray[np.int64]

    def dense(self, n: int) -> npt.NDArray[np.int8]:
        """Per-sample level (for n samples)."""
        return np.repeat(self.level, np.diff(np.append(self.start, n)))


def edges(th: StateThresholds) -> tuple[float, float, float, float]:
    """The four hysteresis edges T1 − h/2, T1 + h/2, T2 − h/2, T2 + h/2."""
    h = th.hysteresis_kw / 2.0
    return (th.off_below_kw - h, th.off_below_kw + h, th.idle_below_kw - h, th.idle_below_kw + h)


def zones(
    p: np.ndarray,
    edge_rows: npt.NDArray[np.float64],
    out: npt.NDArray[np.uint8] | None = None,
    buf: npt.NDArray[np.bool_] | None = None,
) -> npt.NDArray[np.uint8]:
    """Zone 0–4 of each power value of R rows (R×T), row r with edges ``edge_rows[r]``.

    Comparisons run in the array's own precision yet give the exact verdict: for float32
    ``x``, ``x >= e`` iff ``x >= ceil32(e)``. The first comparison writes straight into
    the result, the others add a bool view — four SIMD passes in all. ``out`` and ``buf``
    (same shape as ``p``) let a caller reuse memory across calls.
    """
    e: np.ndarray = edge_rows
    if p.dtype == np.float32:
        e32 = edge_rows.astype(np.float32)
        bump = e32.astype(np.float64) < edge_rows
        e32[bump] = np.nextafter(e32[bump], np.float32(np.inf))
        e = e32
    z = np.empty(p.shape, np.uint8) if out is None else out
    np.greater_equal(p, e[:, 0:1], out=z.view(np.bool_))
    if buf is None:
        buf = np.empty(p.shape, np.bool_)
    for j in range(1, 4):
        np.greater_equal(p, e[:, j : j + 1], out=buf)
        np.add(z, buf.view(np.uint8), out=z)
    return z


def plain_level(p0: float, th: StateThresholds) -> int:
    """Level of a first-ever sample, which has no history to hold: plain thresholds."""
    return int(p0 >= th.off_below_kw) + int(p0 >= th.idle_below_kw)


@dataclass(frozen=True, slots=True)
class RowRuns:
    """Effective levels of several rows as runs: row ``row[i]`` has level ``level[i]`` from
    sample ``start[i]`` on (sorted by row, then start; every row's first run starts at 0), in
    effect since ``switch[i]`` (see :class:`StateRuns`)."""

    row: npt.NDArray[np.intp]
    start: npt.NDArray[np.intp]
    level: npt.NDArray[np.int8]
    switch: npt.NDArray[np.int64]


def _row_fill(
    values: npt.NDArray[np.int8],
    valid: npt.NDArray[np.bool_],
    row_first: npt.NDArray[np.intp],
    initial: npt.NDArray[np.int8],
) -> npt.NDArray[np.int8]:
    """Forward fill that restarts at each row from ``initial[row]``."""
    idx = np.where(valid, np.arange(valid.shape[0]), -1)
    np.maximum.accumulate(idx, out=idx)
    out = values[np.maximum(idx, 0)]
    stale = idx < row_first
    out[stale] = initial[stale]
    return out


def classify_rows(
    t_ns: npt.NDArray[np.int64],
    z: npt.NDArray[np.uint8],
    init_level: npt.NDArray[np.int8],
    dwell_ns: npt.NDArray[np.int64],
    *,
    run_start_ns: npt.NDArray[np.int64] | None = None,
    init_effective: npt.NDArray[np.int8] | None = None,
    scratch: npt.NDArray[np.bool_] | None = None,
) -> tuple[RowRuns, npt.NDArray[np.int8], npt.NDArray[np.int64], npt.NDArray[np.int8]]:
    """Debounced levels of R rows of zones ``z`` (R×T) sharing the time axis ``t_ns``.

    ``init_level[r]`` is the level before the row's first sample (the carry, or the plain
    level of the first sample for a fresh start). With ``run_start_ns``/``init_effective``
    (a carry) a first run equal to the carried level continues the carried run. Returns the
    runs and, per row, the last raw level, when its run began and the final level in force.
    """
    R, T = z.shape
    zf = z.reshape(-1)
    brk = np.empty(zf.shape[0], np.bool_) if scratch is None else scratch.reshape(-1)
    brk[0] = True
    np.not_equal(zf[1:], zf[:-1], out=brk[1:])
    brk[::T] = True
    zstart = np.flatnonzero(brk)
    zrow = zstart // T
    row_first = np.searchsorted(zstart, np.arange(R) * T)[zrow]
    init = init_level[zrow]
    zr = zf[zstart]
    dec = _DECISIVE[zr]
    vd = _row_fill(dec, dec >= 0, row_first, init)
    ev = dec.copy()
    ev[(zr == 1) & (vd == 2)] = 1  # band 1 pulls a producing machine down to idle
    ev[(zr == 3) & (vd == 0)] = 1  # band 3 lifts an off machine up to idle
    lvl = _row_fill(ev, ev >= 0, row_first, init)
    # runs of equal level: the raw, undebounced state
    keep = np.empty(lvl.shape[0], np.bool_)
    keep[0] = True
    np.not_equal(lvl[1:], lvl[:-1], out=keep[1:])
    keep |= np.arange(lvl.shape[0]) == row_first
    rs = zstart[keep]
    rrow = zrow[keep]
    rpos = rs - rrow * T
    rl = lvl[keep]
    rs_t = t_ns[rpos]
    first = rpos == 0
    if run_start_ns is not None:
        cont = first & (rl == init_level[rrow])
        rs_t[cont] = run_start_ns[rrow[cont]]
    # debounce: a run takes effect at its first sample at least min_dwell after its start
    ci = np.maximum(np.searchsorted(t_ns, rs_t + dwell_ns[rrow], side="left"), rpos)
    nxt = np.append(rpos[1:], T)
    nxt[np.append(first[1:], True)] = T  # the last run of a row ends with the row
    ok = ci < nxt
    eff0 = rl[first] if init_effective is None else init_effective
    rows_all = np.arange(R)
    row = np.concatenate((rows_all, rrow[ok]))
    pos = np.concatenate((np.zeros(R, np.intp), ci[ok]))
    level = np.concatenate((eff0, rl[ok])).astype(np.int8)
    # a debounced change took effect when its dwell timer expired; without a dwell: unknown
    d_ok = dwell_ns[rrow[ok]]
    sw = np.concatenate((np.full(R, NO_SWITCH, np.int64), np.where(d_ok > 0, rs_t[ok] + d_ok, NO_SWITCH)))
    key = (row * (T + 1) + pos) * 2 + np.concatenate((np.zeros(R, np.intp), np.ones(int(ok.sum()), np.intp)))
    order = np.argsort(key, kind="stable")
    row, pos, level, sw = row[order], pos[order], level[order], sw[order]
    # several changes at one sample: the last wins; then merge equal neighbours in a row
    last_at = np.ones(row.shape[0], np.bool_)
    last_at[:-1] = (row[1:] != row[:-1]) | (pos[1:] != pos[:-1])
    row, pos, level, sw = row[last_at], pos[last_at], level[last_at], sw[last_at]
    change = np.ones(row.shape[0], np.bool_)
    change[1:] = (level[1:] != level[:-1]) | (row[1:] != row[:-1])
    row, pos, level, sw = row[change], pos[change], level[change], sw[change]
    sw[(pos == 0) & (level == eff0[row])] = NO_SWITCH  # a row's first run is no change
    runs = RowRuns(row, pos, level, sw)
    last_run = np.append(np.flatnonzero(rrow[1:] != rrow[:-1]), rrow.shape[0] - 1)
    last_eff = np.append(np.flatnonzero(runs.row[1:] != runs.row[:-1]), runs.row.shape[0] - 1)
    return runs, rl[last_run], rs_t[last_run], runs.level[last_eff]


def classify_power(
    t_ns: npt.NDArray[np.int64],
    p: np.ndarray,
    th: StateThresholds,
    carry: PowerCarry | None,
) -> tuple[StateRuns, PowerCarry | None]:
    """Effective level of each usable power sample of one asset, plus the carry."""
    n = t_ns.shape[0]
    if n == 0:
        return StateRuns(np.zeros(0, np.intp), np.zeros(0, np.int8), np.zeros(0, np.int64)), carry
    if n == 1:
        return _classify_one(int(t_ns[0]), float(p[0]), th, carry)
    z = zones(p.reshape(1, n), np.array([edges(th)]))
    dwell = np.array([round(th.min_dwell_s * 1e9)], np.int64)
    if carry is None:
        init = np.array([plain_level(float(p[0]), th)], np.int8)
        runs, lvl, rs, eff = classify_rows(t_ns, z, init, dwell)
    else:
        runs, lvl, rs, eff = classify_rows(
            t_ns,
            z,
            np.array([carry.level], np.int8),
            dwell,
            run_start_ns=np.array([carry.run_start_ns], np.int64),
            init_effective=np.array([carry.effective], np.int8),
        )
    new = PowerCarry(level=int(lvl[0]), run_start_ns=int(rs[0]), effective=int(eff[0]))
    return StateRuns(runs.start, runs.level, runs.switch), new


def _classify_one(
    t: int, p: float, th: StateThresholds, carry: PowerCarry | None
) -> tuple[StateRuns, PowerCarry]:
    """:func:`classify_rows` for a single sample, in plain Python.

    A stream fed one poll at a time classifies one sample per update; the array machinery
    would cost some fifty times the arithmetic. The rules are those of :func:`classify_rows`
    (a test holds the two to each other): the zone (compared exactly, also for float32),
    decisive zones set the level and the bands only clamp it, a run equal to the carried
    level continues the carried run, and the level takes effect once its run has lasted the
    dwell.
    """
    zone = sum(p >= e for e in edges(th))
    init = plain_level(p, th) if carry is None else carry.level
    dec = int(_DECISIVE[zone])
    level = dec if dec >= 0 else init
    if (zone == 1 and init == 2) or (zone == 3 and init == 0):
        level = 1  # a band clamps the level it holds (the raw level before this sample: init)
    run_start = carry.run_start_ns if carry is not None and level == carry.level else t
    dwell = round(th.min_dwell_s * 1e9)
    before = level if carry is None else carry.effective
    effective = level if run_start + dwell <= t else before
    switch = run_start + dwell if dwell > 0 and effective != before else NO_SWITCH
    runs = StateRuns(np.zeros(1, np.intp), np.array([effective], np.int8), np.array([switch], np.int64))
    return runs, PowerCarry(level=level, run_start_ns=run_start, effective=effective)

"""Book quantities into windows: spans apportioned exactly by time, points where they fall.

Time-continuous quantities (seconds in a state, power integrated with the trapezoid rule)
are spread over their interval and split exactly at window boundaries — a linear density
is integrated piecewise, so a window gets precisely its share of the trapezoid. Counter
increments stay whole integers and are booked at one instant, so they telescope exactly.
"""

from __future__ import annotations

__all__ = ["Booked", "Points", "SpanSet", "Target", "book", "totals"]

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .arrays import bin_index
from .sum_columns import N_COUNT_SUMS, N_FLOAT_SUMS

Field = int | npt.NDArray[np.intp]
Mult = float | npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Target:
    """Add ``mult`` × (integral over the piece) to column ``field``."""

    field: Field
    mult: Mult = 1.0


@dataclass(frozen=True, slots=True)
class SpanSet:
    """Intervals ``[t0, t1]`` with a linear density ``v0 → v1`` (None: density 1, i.e. time).

    Integrals are in density·seconds.
    """

    t0: npt.NDArray[np.int64]
    t1: npt.NDArray[np.int64]
    targets: tuple[Target, ...]
    v0: npt.NDArray[np.float64] | None = None
    v1: npt.NDArray[np.float64] | None = None


@dataclass(frozen=True, slots=True)
class Points:
    """Amounts booked at instants ``t`` into column ``field`` (float or exact uint64)."""

    t: npt.NDArray[np.int64]
    field: Field
    w: npt.NDArray[np.float64] | npt.NDArray[np.uint64] | float


def _pick(x: Field | Mult, src: npt.NDArray[np.intp] | None) -> Field | Mult:
    if isinstance(x, np.ndarray) and src is not None:
        return x[src]
    return x


def _fill(x: Field | Mult | npt.NDArray[np.uint64], n: int, dtype: npt.DTypeLike) -> np.ndarray:
    """``x`` as an array of n values (a scalar repeated). Cheaper than ``np.broadcast_to``,
    which costs more than the arithmetic of a small batch."""
    if isinstance(x, np.ndarray) and x.shape == (n,):
        return x.astype(dtype, copy=False)
    return np.full(n, x, dtype)


def _split(
    s: SpanSet, b: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64], npt.NDArray[np.intp] | None]:
    """Window index, integral (density·s) and source span of each piece."""
    i0 = bin_index(b, s.t0, "right") - 1
    i1 = bin_index(b, s.t1, "left") - 1
    cnt = i1 - i0 + 1
    if s.t0.size == 0 or int(cnt.max()) == 1:
        dt = (s.t1 - s.t0) / 1e9
        if s.v0 is None or s.v1 is None:
            return i0, dt, None
        return i0, (s.v0 + s.v1) * 0.5 * dt, None
    src = np.repeat(np.arange(s.t0.size), cnt)
    first = np.cumsum(cnt) - cnt
    w = i0[src] + (np.arange(src.size) - first[src])
    t0 = s.t0[src]
    t1 = s.t1[src]
    x0 = np.maximum(t0, b[w])
    x1 = np.minimum(t1, b[w + 1])
    if s.v0 is None or s.v1 is None:
        return w, (x1 - x0) / 1e9, src
    span = (t1 - t0).astype(np.float64)
    f0 = (x0 - t0) / span
    f1 = (x1 - t0) / span
    v0 = s.v0[src]
    dv = s.v1[src] - v0
    integral = span / 1e9 * ((f1 - f0) * v0 + dv * (f1 * f1 - f0 * f0) * 0.5)
    return w, integral, src


@dataclass(frozen=True, slots=True)
class Booked:
    """Everything a batch contributes, cut into pieces that no cut crosses.

    Float amounts ``fw`` go to columns ``ff`` in cut cells ``fc`` (cell i is
    ``[cuts[i], cuts[i+1])``); exact counter amounts likewise (``uc``, ``uf``, ``uw``). Any
    window scheme whose boundaries are among the cuts gets its sums by mapping cells to
    windows (``StreamingAnalytics._advance_windows`` does it for all schemes at once).
    """

    cuts: npt.NDArray[np.int64]
    fc: npt.NDArray[np.intp]
    ff: npt.NDArray[np.intp]
    fw: npt.NDArray[np.float64]
    uc: npt.NDArray[np.intp]
    uf: npt.NDArray[np.intp]
    uw: npt.NDArray[np.uint64]


def book(
    cuts: npt.NDArray[np.int64],
    spans: Sequence[SpanSet],
    fpoints: Sequence[Points],
    upoints: Sequence[Points],
) -> Booked:
    """Cut spans at ``cuts`` (sorted, covering everything) and flatten all contributions."""
    fc: list[np.ndarray] = []
    ff: list[np.ndarray] = []
    fw: list[np.ndarray] = []
    for s in spans:
        if s.t0.size == 0:
            continue
        cell, amount, src = _split(s, cuts)
        for tg in s.targets:
            fc.append(cell)
            ff.append(_fill(_pick(tg.field, src), cell.shape[0], np.intp))
            fw.append(amount * _pick(tg.mult, src))
    for p in fpoints:
        if p.t.size:
            fc.append(bin_index(cuts, p.t, "right") - 1)
            ff.append(_fill(p.field, p.t.shape[0], np.intp))
            fw.append(_fill(p.w, p.t.shape[0], np.float64))
    up = [p for p in upoints if p.t.size]
    uc = [bin_index(cuts, p.t, "right") - 1 for p in up]
    uf = [_fill(p.field, p.t.shape[0], np.intp) for p in up]
    uw = [_fill(p.w, p.t.shape[0], np.uint64) for p in up]

    def cat(parts: list[np.ndarray], dtype: npt.DTypeLike) -> np.ndarray:
        return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)

    return Booked(
        cuts,
        cat(fc, np.intp),
        cat(ff, np.intp),
        cat(fw, np.float64),
        cat(uc, np.intp),
        cat(uf, np.intp),
        cat(uw, np.uint64),
    )


def totals(booked: Booked) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.uint64]]:
    """Sums over everything, regardless of windows."""
    f: npt.NDArray[np.float64] = np.bincount(booked.ff, weights=booked.fw, minlength=N_FLOAT_SUMS).astype(
        np.float64
    )
    u = np.zeros(N_COUNT_SUMS, np.uint64)
    np.add.at(u, booked.uf, booked.uw)
    return f, u

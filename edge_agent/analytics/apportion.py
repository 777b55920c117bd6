"""Book quantities into windows: spans apportioned exactly by time, points where they fall.

Time-continuous quantities (seconds in a state, power integrated with the trapezoid rule)
are spread over their interval and split exactly at window boundaries — a linear density
is integrated piecewise, so a window gets precisely its share of the trapezoid. Counter
increments stay whole integers and are booked at one instant, so they telescope exactly.
"""

from __future__ import annotations

__all__ = ["Points", "SpanSet", "Target", "accumulate"]

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .arrays import bin_index
from .layout import NF, NU, empty_acc

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


def accumulate(
    b: npt.NDArray[np.int64],
    spans: Sequence[SpanSet],
    fpoints: Sequence[Points],
    upoints: Sequence[Points],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.uint64], npt.NDArray[np.float64]]:
    """Sums per window ``[b[i], b[i+1])`` of everything given (all of it inside ``b``)."""
    nw = b.shape[0] - 1
    f, u, m = empty_acc(nw)
    flat = f.reshape(-1)
    for s in spans:
        if s.t0.size == 0:
            continue
        w, amount, src = _split(s, b)
        for tg in s.targets:
            idx = w * NF + _pick(tg.field, src)
            flat += np.bincount(idx, weights=amount * _pick(tg.mult, src), minlength=flat.size)
    for p in fpoints:
        if p.t.size == 0:
            continue
        w = bin_index(b, p.t, "right") - 1
        weights = np.broadcast_to(np.asarray(p.w, np.float64), p.t.shape)
        flat += np.bincount(w * NF + p.field, weights=weights, minlength=flat.size)
    uflat = u.reshape(-1)
    for p in upoints:
        if p.t.size == 0:
            continue
        w = bin_index(b, p.t, "right") - 1
        np.add.at(uflat, w * NU + p.field, np.asarray(p.w, np.uint64))
    return f, u, m

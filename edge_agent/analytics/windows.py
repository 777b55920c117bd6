"""Window schemes: fixed epoch-aligned, calendar (local day / shifts) and rolling.

A scheme only answers one question: where are the window boundaries between two instants.
Everything else (apportioning, closing, KPIs) works on those boundaries, so a new scheme
needs no change elsewhere. Windows are half-open, ``[start, end)``.
"""

from __future__ import annotations

__all__ = ["DEFAULT_WINDOWS", "CalendarWindow", "FixedWindow", "RollingWindow", "WindowSpec", "bounds"]

import datetime as dt
import functools
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt

_NS = 1_000_000_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ONE_US = dt.timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class FixedWindow:
    """Windows of ``length_s`` aligned to the Unix epoch (1 min, 15 min, 1 h, UTC day)."""

    name: str
    length_s: int


@dataclass(frozen=True, slots=True)
class CalendarWindow:
    """Windows starting at given local hours every day: ``(0,)`` is the local day,
    ``(6, 14, 22)`` three shifts. DST days are 23 or 25 h long, as the plant lives them."""

    name: str
    start_hours: tuple[float, ...] = (0.0,)
    tz: str = "UTC"

    def problems(self) -> list[str]:
        out = []
        if not self.start_hours or any(not 0 <= h < 24 for h in self.start_hours):
            out.append(f"start_hours must be non-empty hours in [0, 24), got {self.start_hours}")
        elif len(set(self.start_hours)) != len(self.start_hours):
            out.append(f"start_hours must be distinct, got {self.start_hours}")
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError):
            out.append(f"unknown time zone {self.tz!r}; use an IANA name such as 'Europe/Berlin'")
        return out


@dataclass(frozen=True, slots=True)
class RollingWindow:
    """Rolling windows of ``length_s`` emitted every ``step_s`` (e.g. 1 h every 15 min).

    They are built from step-long fixed buckets, so ``length_s`` must be a multiple of
    ``step_s``.
    """

    name: str
    length_s: int
    step_s: int


WindowSpec = FixedWindow | CalendarWindow | RollingWindow

DEFAULT_WINDOWS: tuple[WindowSpec, ...] = (
    FixedWindow("1min", 60),
    FixedWindow("15min", 900),
    FixedWindow("1h", 3600),
    CalendarWindow("day"),
)


def bounds(w: WindowSpec, lo_ns: int, hi_ns: int) -> npt.NDArray[np.int64]:
    """Sorted boundaries ``b`` with ``b[0] <= lo_ns`` and ``b[-1] > hi_ns``.

    Window i is ``[b[i], b[i+1])``; every instant in ``[lo_ns, hi_ns]`` falls in one.
    A rolling window's boundaries are those of its step buckets.
    """
    if isinstance(w, CalendarWindow):
        return _calendar_bounds(w, lo_ns, hi_ns)
    step = (w.length_s if isinstance(w, FixedWindow) else w.step_s) * _NS
    first = (lo_ns // step) * step
    last = (hi_ns // step + 1) * step
    return np.arange(first, last + step, step, dtype=np.int64)


def _calendar_bounds(w: CalendarWindow, lo_ns: int, hi_ns: int) -> npt.NDArray[np.int64]:
    tz = ZoneInfo(w.tz)
    first = dt.datetime.fromtimestamp(lo_ns // _NS, tz).date().toordinal() - 1
    last = dt.datetime.fromtimestamp(hi_ns // _NS, tz).date().toordinal() + 2
    b = _day_starts(w, first, last)
    i0 = int(np.searchsorted(b, lo_ns, side="right")) - 1  # >= 0: we started a day early
    i1 = int(np.searchsorted(b, hi_ns, side="right"))
    return b[i0 : i1 + 1]


@functools.lru_cache(maxsize=64)
def _day_starts(w: CalendarWindow, first: int, last: int) -> npt.NDArray[np.int64]:
    """Window starts of local days ``first``..``last`` (proleptic ordinals), sorted.

    Cached: a stream fed row by row asks for the same few days on every update, and building
    zone-aware datetimes is most of what a small update would otherwise cost.
    """
    tz = ZoneInfo(w.tz)
    out: list[int] = []
    for ordinal in range(first, last + 1):
        day = dt.date.fromordinal(ordinal)
        midnight = dt.datetime(day.year, day.month, day.day)
        for h in w.start_hours:
            local = (midnight + dt.timedelta(hours=h)).replace(tzinfo=tz)
            out.append((local - _EPOCH) // _ONE_US * 1000)
    b = np.unique(np.asarray(out, dtype=np.int64))
    b.flags.writeable = False  # shared by every caller
    return b

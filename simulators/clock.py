"""Local calendar arithmetic on epoch-second arrays (vectorised, DST-aware per day).

The shift schedule and the weather are defined in local time; the model runs on epoch
seconds. Offsets are looked up once per distinct UTC day, so a 56-day history costs 56
``utcoffset`` calls, not one per sample.
"""

from __future__ import annotations

__all__ = ["DAY_S", "LocalClock"]

from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

DAY_S = 86_400

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


class LocalClock:
    """Converts epoch seconds to local day numbers (days since 1970-01-01 local)."""

    def __init__(self, tz: str | tzinfo = "UTC") -> None:
        if isinstance(tz, str):
            try:
                tz = ZoneInfo(tz)
            except (KeyError, ValueError) as exc:  # ZoneInfoNotFoundError is a KeyError
                raise ValueError(
                    f"unknown time zone {tz!r}: use an IANA name such as 'Europe/Berlin' or 'UTC'"
                ) from exc
        self.tz: tzinfo = tz
        self._offsets: dict[int, float] = {}

    def _offset(self, utc_day: int) -> float:
        off = self._offsets.get(utc_day)
        if off is None:
            noon = datetime.fromtimestamp(utc_day * DAY_S + DAY_S // 2, UTC)
            delta = self.tz.utcoffset(noon.astimezone(self.tz))
            off = delta.total_seconds() if delta is not None else 0.0
            self._offsets[utc_day] = off
        return off

    def local_seconds(self, t: F64) -> F64:
        """Epoch seconds shifted so that floor(x / DAY_S) is the local day number."""
        utc_day = np.floor(t / DAY_S).astype(np.int64)
        first, last = int(utc_day[0]), int(utc_day[-1])
        if first == last:  # the common case: a block inside one day
            return t + self._offset(first)
        uniq, inv = np.unique(utc_day, return_inverse=True)
        offs = np.array([self._offset(int(d)) for d in uniq], dtype=np.float64)
        return t + offs[inv]

    def day_and_second(self, t: F64) -> tuple[I64, F64]:
        """(local day number, seconds since local midnight) for each epoch second."""
        local = self.local_seconds(t)
        day = np.floor(local / DAY_S).astype(np.int64)
        return day, local - day.astype(np.float64) * DAY_S

    def local_midnight(self, day: int) -> float:
        """Epoch seconds of local midnight starting local day ``day``."""
        guess = float(day * DAY_S)
        return guess - self._offset(day)

    def weekday(self, day: int) -> int:
        """Monday = 0 … Sunday = 6 (1970-01-01 was a Thursday)."""
        return (day + 3) % 7

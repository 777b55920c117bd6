"""Periods, time zones and bucket edges.

Buckets are local-calendar hours, days or 7-day blocks: a "day" is the site's day, so a
DST day lasts 23 or 25 hours and its expected sample count follows. Hourly buckets are
real hours (the repeated autumn hour stays two buckets).
"""

from __future__ import annotations

__all__ = [
    "Period",
    "Resolution",
    "bucket_edges",
    "hour_of_week",
    "local_midnight_ns",
    "local_ns",
    "parse_period",
    "parse_timezone",
]

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from edge_agent.evaluation._arrays import IntArray
from edge_agent.evaluation._errors import EvaluationError

_NS_PER_S = 1_000_000_000
_HOUR_NS = 3600 * _NS_PER_S
_QUARTER_NS = 900 * _NS_PER_S


class Resolution(StrEnum):
    """Bucket size the baseline model works on."""

    HOUR = "hour"
    DAY = "day"
    WEEK = "week"

    @property
    def adjective(self) -> str:
        return {"hour": "hourly", "day": "daily", "week": "weekly"}[self.value]


@dataclass(frozen=True, slots=True)
class Period:
    """An inclusive range of local calendar dates."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise EvaluationError(f"period {self}: the end date is before the start date")

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def __str__(self) -> str:
        return f"{self.start.isoformat()}/{self.end.isoformat()}"


def parse_period(text: str, name: str) -> Period:
    """Parse ``START/END`` or ``START..END`` (ISO dates, both inclusive)."""
    parts = re.split(r"/|\.\.", text.strip())
    if len(parts) != 2:
        raise EvaluationError(
            f"--{name} {text!r}: expected two ISO dates like 2024-01-01/2024-01-28 (both inclusive)"
        )
    try:
        start, end = (date.fromisoformat(p.strip()) for p in parts)
    except ValueError as exc:
        raise EvaluationError(
            f"--{name} {text!r}: {exc}; write dates as YYYY-MM-DD, e.g. 2024-01-01/2024-01-28"
        ) from None
    if end < start:
        raise EvaluationError(f"--{name} {text!r}: the end date is before the start date")
    return Period(start, end)


def parse_timezone(text: str) -> tzinfo:
    """``UTC``, a fixed offset like ``+01:00``, or an IANA name like ``Europe/Berlin``."""
    t = text.strip()
    if t.upper() in ("UTC", "Z"):
        return UTC
    m = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", t)
    if m:
        sign = 1 if m.group(1) == "+" else -1
        return timezone(sign * timedelta(hours=int(m.group(2)), minutes=int(m.group(3))))
    try:
        return ZoneInfo(t)
    except (ZoneInfoNotFoundError, ValueError):
        raise EvaluationError(
            f"--timezone {text!r}: not a known time zone; use UTC, an offset like +01:00 "
            "or an IANA name like Europe/Berlin"
        ) from None


def local_midnight_ns(day: date, tz: tzinfo) -> int:
    """UTC ns of the local midnight that starts ``day``."""
    dt = datetime(day.year, day.month, day.day, tzinfo=tz)
    return int((dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)) * 1000


def _utc_offsets_ns(utc_ns: IntArray, tz: tzinfo) -> IntArray:
    """Local UTC offset at each instant; zone rules are looked up once per quarter hour."""
    if isinstance(tz, timezone):
        off = tz.utcoffset(None)
        return np.full(utc_ns.shape, int(off.total_seconds()) * _NS_PER_S, dtype=np.int64)
    quarters, inverse = np.unique(utc_ns // _QUARTER_NS, return_inverse=True)
    offsets = np.array(
        [
            int(datetime.fromtimestamp(int(q) * 900, tz).utcoffset().total_seconds())  # type: ignore[union-attr]
            for q in quarters
        ],
        dtype=np.int64,
    )
    return offsets[inverse.reshape(utc_ns.shape)] * _NS_PER_S


def local_ns(utc_ns: IntArray, tz: tzinfo) -> IntArray:
    """Local wall-clock time as ns since 1970-01-01 00:00 local (for labels and plots)."""
    return np.asarray(utc_ns + _utc_offsets_ns(utc_ns, tz), dtype=np.int64)


def hour_of_week(utc_ns: IntArray, tz: tzinfo) -> IntArray:
    """Local hour of the week, 0 = Monday 00:00 (1970-01-01 was a Thursday)."""
    local_hours = local_ns(utc_ns, tz) // _HOUR_NS
    return ((local_hours + 72) % 168).astype(np.int64)


def bucket_edges(period: Period, resolution: Resolution, tz: tzinfo) -> IntArray:
    """UTC ns edges of the period's buckets (n + 1 values). A trailing partial week is left out."""
    days = [period.start + timedelta(days=i) for i in range(period.days + 1)]
    day_edges = np.array([local_midnight_ns(d, tz) for d in days], dtype=np.int64)
    if resolution is Resolution.DAY:
        return day_edges
    if resolution is Resolution.WEEK:
        if period.days < 7:
            raise EvaluationError(
                f"period {period} is {period.days} day(s) long: weekly resolution needs at least "
                "7 days; use --resolution day"
            )
        return day_edges[::7][: period.days // 7 + 1]
    hours = int(day_edges[-1] - day_edges[0]) // _HOUR_NS  # integer maths: arange's float length drops one
    return np.asarray(day_edges[0] + _HOUR_NS * np.arange(hours + 1, dtype=np.int64), dtype=np.int64)

"""Ingest's trust boundary: a payload from the broker becomes a Record, or a PayloadError with a reason.

``decode_payload`` checks the schema; this module adds what a schema cannot say and what
ingest must never let through to line protocol:

- every name (window, tag names) is one line protocol can carry exactly;
- timestamps fit int64 and lie in a plausible range around now (``max_age`` before,
  ``max_ahead`` after), so a year-2100 or negative stamp is refused with its reason;
- integer values fit int64;
- any exception while decoding becomes a PayloadError, so one poison message can never
  crash ingest (the broker would redeliver it forever).
"""

from __future__ import annotations

__all__ = ["Checked", "TimeWindow", "decode_message"]

import re
import time
from dataclasses import dataclass

import numpy as np

from edge_agent.delivery.lineprotocol import record_lines
from edge_agent.delivery.payload import PayloadError, decode_payload
from edge_agent.delivery.record import Record

_WINDOW = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Plausible timestamps: from ``max_age_s`` before now to ``max_ahead_s`` after it."""

    max_age_s: float
    max_ahead_s: float

    def bounds(self, now_ns: int | None = None) -> tuple[int, int]:
        now = time.time_ns() if now_ns is None else now_ns
        return now - int(self.max_age_s * 1e9), now + int(self.max_ahead_s * 1e9)


def _iso(ns: int) -> str:
    try:
        return str(np.datetime64(ns, "ns")) + "Z"
    except (OverflowError, ValueError):
        return f"{ns} ns"


def _check_ts(ts: np.ndarray, window: TimeWindow, now_ns: int | None) -> None:
    if not len(ts):
        return
    lo, hi = window.bounds(now_ns)
    first, last = int(ts.min()), int(ts.max())
    if first < lo:
        raise PayloadError(
            f"timestamp {first} ({_iso(first)}) is older than the plausible range "
            f"(max_age {window.max_age_s:.0f} s before now); check the producer's clock"
        )
    if last > hi:
        raise PayloadError(
            f"timestamp {last} ({_iso(last)}) is ahead of now by more than max_ahead "
            f"{window.max_ahead_s:.0f} s; check the producer's clock"
        )


def _prescan_ts(data: bytes) -> None:
    """Say clearly when a timestamp cannot be an int64 (decode_payload would overflow)."""
    # Cheap: only parse again when decoding already failed with an overflow.
    import json

    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return
    ts = doc.get("ts") if isinstance(doc, dict) else None
    if isinstance(ts, list):
        for v in ts:
            if isinstance(v, int) and not _INT64_MIN <= v <= _INT64_MAX:
                raise PayloadError(f"timestamp {v} is outside the int64 range of ns timestamps")


@dataclass(frozen=True, slots=True)
class Checked:
    """A valid message with its line protocol, built once here and reused for the write."""

    record: Record
    lines: str
    fields: int


def decode_message(data: bytes, *, max_bytes: int, window: TimeWindow, now_ns: int | None = None) -> Checked:
    """Decode and validate one message; every failure is a PayloadError naming what is wrong."""
    try:
        d = decode_payload(data, max_bytes=max_bytes)
    except PayloadError:
        raise
    except (OverflowError, ValueError, TypeError) as exc:
        _prescan_ts(data)
        raise PayloadError(f"payload cannot be decoded: {exc}") from None
    except RecursionError:
        raise PayloadError("payload is nested too deeply") from None
    if d.placement.window is not None and not _WINDOW.fullmatch(d.placement.window):
        raise PayloadError(
            f"window {d.placement.window[:80]!r} is not a window name (letters, digits, '_.:-', at most 64)"
        )
    _check_ts(d.batch.ts, window, now_ns)
    record = Record(0, d.kind, d.placement, d.batch)
    try:
        lines, fields = record_lines(record)  # every name and value writable exactly, or refused
    except ValueError as exc:
        raise PayloadError(str(exc)) from None
    return Checked(record, lines, fields)

"""Counters the operator sees: per sink, in samples (one tag at one timestamp)."""

from __future__ import annotations

__all__ = ["BufferStats", "DeliveryStats", "SinkStats"]

from dataclasses import dataclass, field


@dataclass(slots=True)
class SinkStats:
    """``delivered + quarantined + dropped + backlog`` = every sample submitted while this sink existed."""

    delivered: int = 0
    retried: int = 0  # failed send attempts that will be (or were) retried
    quarantined: int = 0
    dropped: int = 0
    backlog: int = 0  # samples stored and not yet confirmed by this sink
    backlog_bytes: int = 0  # stored bytes of that backlog (what SinkLimits.max_backlog_bytes caps)
    connected: bool = False
    last_error: str | None = None


@dataclass(slots=True)
class BufferStats:
    records: int = 0
    bytes: int = 0  # stored batch bytes (capped at max_bytes minus SQLite's own pages and WAL budget)
    file_bytes: int = 0  # database + WAL (+ shm) on disk, what max_bytes caps
    dropped: int = 0  # samples dropped by the cap policy (or refused on a full disk)
    blocked: int = 0  # submits that had to wait for room (policy block)


@dataclass(slots=True)
class DeliveryStats:
    buffer: BufferStats = field(default_factory=BufferStats)
    sinks: dict[str, SinkStats] = field(default_factory=dict)

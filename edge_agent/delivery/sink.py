"""The sink contract and the replay loop that feeds a sink from its buffer cursor.

Sinks only deliver and classify failures (TransientSinkError: retry with capped jittered
backoff; PermanentSinkError: quarantine). Everything about retrying, splitting a rejected
group to find the bad batch, confirming and logging once lives here, once for all sinks.
"""

from __future__ import annotations

__all__ = ["Sink", "replay"]

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from edge_agent.config import SinkLimits
from edge_agent.delivery.buffer import DurableBuffer
from edge_agent.delivery.record import Record
from edge_agent.delivery.stats import SinkStats
from edge_agent.errors import PermanentSinkError, SinkError
from edge_agent.retry import Backoff, retry

log = logging.getLogger("edge_agent.delivery")


class Sink(ABC):
    """A destination. ``send`` returns only once the destination confirmed every record."""

    name: str
    max_inflight: int = 1  # concurrent send() calls
    max_records: int = 1  # records per send()
    max_samples: int = 2**62  # samples per send() (a single larger record is still sent alone)
    backoff_max: float = 30.0
    limits: SinkLimits | None = None  # this sink's own backlog limit in the shared buffer

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:  # noqa: B027  (optional hook)
        """Open connections; must not wait for the destination to be reachable."""

    async def stop(self) -> None:  # noqa: B027  (optional hook)
        """Close connections; unconfirmed records stay in the buffer for the next start."""

    @property
    def connected(self) -> bool:
        return True

    @abstractmethod
    async def send(self, records: Sequence[Record]) -> None:
        """Deliver; raise TransientSinkError or PermanentSinkError on failure."""


class _Health:
    """Log a failing sink once at error level, then at debug until it recovers."""

    def __init__(self, sink: Sink, stats: SinkStats) -> None:
        self.sink, self.stats, self.failing = sink, stats, False

    def failed(self, exc: Exception, delay: float) -> None:
        self.stats.retried += 1
        self.stats.last_error = str(exc)
        level = logging.DEBUG if self.failing else logging.ERROR
        log.log(
            level,
            "sink %s: %s; retrying with backoff, data stays in the buffer",
            self.sink.name,
            exc,
            exc_info=not isinstance(exc, SinkError) and not self.failing,
        )
        self.failing = True

    def ok(self) -> None:
        if self.failing:
            log.warning("sink %s delivers again (backlog %d samples)", self.sink.name, self.stats.backlog)
            self.failing = False
            self.stats.last_error = None


def _retryable(exc: Exception) -> bool:
    """Anything but a permanent refusal is worth retrying (cancellation never is)."""
    return not isinstance(exc, PermanentSinkError)


async def _deliver(sink: Sink, buffer: DurableBuffer, health: _Health, records: Sequence[Record]) -> None:
    try:
        await retry(
            lambda: sink.send(records),
            backoff=Backoff(0.2, sink.backoff_max),
            retryable=_retryable,
            on_retry=health.failed,
        )
    except PermanentSinkError as exc:
        if len(records) > 1:  # find the bad batch; the good ones are rewritten idempotently
            half = len(records) // 2
            await _deliver(sink, buffer, health, records[:half])
            await _deliver(sink, buffer, health, records[half:])
            return
        rec = records[0]
        log.error(
            "sink %s rejected batch %d (%s, asset %r, %d samples) for good: %s; quarantined",
            sink.name,
            rec.id,
            rec.kind,
            rec.placement.asset,
            rec.samples,
            exc,
        )
        await buffer.quarantine(sink.name, rec, str(exc))
        return
    health.ok()
    await buffer.confirm(sink.name, [r.id for r in records])


async def replay(sink: Sink, buffer: DurableBuffer, stats: SinkStats) -> None:
    """Feed ``sink`` from its cursor forever, with at most ``max_inflight`` sends in flight."""
    slots = asyncio.Semaphore(sink.max_inflight)
    health = _Health(sink, stats)

    async def one(records: Sequence[Record]) -> None:
        try:
            await _deliver(sink, buffer, health, records)
        finally:
            slots.release()

    async with asyncio.TaskGroup() as tg:
        while True:
            await slots.acquire()
            try:
                records = await buffer.fetch(sink.name, sink.max_records, sink.max_samples)
            except BaseException:
                slots.release()
                raise
            tg.create_task(one(records))

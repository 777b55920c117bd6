"""The one retry/backoff mechanism: device reconnects, sink deliveries and ingest writes.

Capped exponential backoff with full jitter (AWS-style): the n-th wait is uniform in
``[0, min(maximum, initial * 2**n)]``, so many agents restarting together do not hammer a
broker or PLC in lockstep. :class:`Backoff` is the state (reset after a success);
:func:`retry` runs an operation until it succeeds or fails with an error not worth retrying.
"""

from __future__ import annotations

__all__ = ["Backoff", "retry"]

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class Backoff:
    """Waits of a retry sequence; ``attempt`` counts the waits handed out since the last reset."""

    initial: float = 0.2
    maximum: float = 30.0
    attempt: int = 0

    def next_delay(self) -> float:
        ceiling = min(self.maximum, self.initial * 2.0 ** min(self.attempt, 60))
        self.attempt += 1
        return random.uniform(0.0, ceiling)

    def reset(self) -> None:
        self.attempt = 0

    async def wait(self) -> float:
        """Sleep the next delay; returns how long it slept."""
        delay = self.next_delay()
        await asyncio.sleep(delay)
        return delay


async def retry(
    operation: Callable[[], Awaitable[T]],
    *,
    backoff: Backoff,
    retryable: Callable[[Exception], bool],
    on_retry: Callable[[Exception, float], None] | None = None,
) -> T:
    """Await ``operation()`` until it returns; re-raise the first error ``retryable`` rejects.

    ``on_retry(error, delay)`` runs before each wait (count it, log it once). Cancellation is
    never retried. The backoff is reset after a success so the next outage starts short.
    """
    while True:
        try:
            result = await operation()
        except Exception as exc:
            if not retryable(exc):
                raise
            delay = backoff.next_delay()
            if on_retry is not None:
                on_retry(exc, delay)
            await asyncio.sleep(delay)
        else:
            backoff.reset()
            return result

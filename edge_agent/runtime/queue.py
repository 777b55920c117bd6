"""The bounded hand-off between acquisition and processing.

Pollers ``offer`` a batch and return at once, whatever analytics, disk or network are doing.
The queue is bounded in samples; when it is full the *oldest* batch is dropped (the newest
data is the most useful to an operator), every dropped sample is counted, and the episode is
logged once when it starts and once when the queue has room again.
"""

from __future__ import annotations

__all__ = ["BatchQueue", "QueueStats"]

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

from edge_agent.batch import SampleBatch

log = logging.getLogger("edge_agent.runtime.queue")


@dataclass(slots=True)
class QueueStats:
    """Depth and losses of the poll → processing queue, in samples (one tag at one timestamp)."""

    capacity: int = 0  # samples the queue holds at most
    depth: int = 0  # samples waiting now
    high_water: int = 0  # largest depth seen
    dropped_batches: int = 0
    dropped_samples: int = 0


def _samples(batch: SampleBatch) -> int:
    return len(batch) * len(batch.values)


class BatchQueue:
    """FIFO of device batches, bounded in samples, never blocking the producer."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"queue capacity must be at least 1 sample, got {capacity}")
        self.stats = QueueStats(capacity=capacity)
        self._items: deque[tuple[SampleBatch, int]] = deque()
        self._ready = asyncio.Event()
        self._episode = 0  # samples dropped in the current full spell
        self.closed = False

    def close(self) -> None:
        """No more batches will come: wake the consumer so it can drain and finish."""
        self.closed = True
        self._ready.set()

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, batch: SampleBatch) -> None:
        """Enqueue without waiting; drops the oldest batches while over capacity."""
        n = _samples(batch)
        st = self.stats
        self._items.append((batch, n))
        st.depth += n
        while st.depth > st.capacity and len(self._items) > 1:
            old, m = self._items.popleft()
            st.depth -= m
            st.dropped_batches += 1
            st.dropped_samples += m
            if not self._episode:
                log.warning(
                    "processing is behind: the poll queue is full (%d samples); dropping the oldest "
                    "batches (first from device %r). Analytics or the buffer are too slow for the "
                    "poll rate; raise poll intervals or check the disk.",
                    st.capacity,
                    old.device,
                )
            self._episode += m
        st.high_water = max(st.high_water, st.depth)
        self._ready.set()

    async def take_all(self, within: float | None = None) -> list[SampleBatch]:
        """Everything queued, waiting up to ``within`` s (forever if None) for at least one batch."""
        if not self._items and not self.closed:
            self._ready.clear()
            try:
                async with asyncio.timeout(within):
                    await self._ready.wait()
            except TimeoutError:
                return []
        out = [b for b, _ in self._items]
        self._items.clear()
        self.stats.depth = 0
        if self._episode:
            log.warning(
                "poll queue has room again: %d samples were dropped during this spell (%d since start)",
                self._episode,
                self.stats.dropped_samples,
            )
            self._episode = 0
        return out

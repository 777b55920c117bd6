"""One poll loop per device: cadence, reconnect backoff, Bad-quality gaps, log-once.

Drivers stay small because everything about *when* and *what if it fails* lives here.
A failing device is logged once at error level, then at debug level until it recovers,
and its failures never delay other devices (each poller is its own task).
"""

from __future__ import annotations

__all__ = ["BatchHandler", "DevicePoller", "PollerStats"]

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_random_exponential

from edge_agent.batch import SampleBatch, cause_of, now_ns
from edge_agent.drivers.base import Driver
from edge_agent.errors import DeviceConnectError, DriverError

BatchHandler = Callable[[SampleBatch], Awaitable[None]]
log = logging.getLogger("edge_agent.poller")


@dataclass(slots=True)
class PollerStats:
    polls: int = 0
    failed_polls: int = 0
    reconnects: int = 0
    last_error: str | None = None
    down_since: float | None = None

    @property
    def healthy(self) -> bool:
        return self.down_since is None


class _SessionEnded(Exception):
    """The link dropped after a good session: start a fresh backoff sequence."""


class DevicePoller:
    """Poll one driver at its configured interval until cancelled."""

    def __init__(
        self,
        driver: Driver[Any],
        handler: BatchHandler,
        *,
        limiter: asyncio.Semaphore | None = None,
        backoff_initial: float = 0.5,
    ) -> None:
        self.driver = driver
        self.handler = handler
        self.limiter = limiter or asyncio.Semaphore(1)
        self.stats = PollerStats()
        self._backoff_initial = backoff_initial
        self._tag_names = [t.name for t in driver.tags]

    @property
    def name(self) -> str:
        return self.driver.name

    async def run(self) -> None:
        cfg = self.driver.config
        while True:
            retrying = AsyncRetrying(
                wait=wait_random_exponential(multiplier=self._backoff_initial, max=cfg.backoff_max),
                retry=retry_if_exception_type(DriverError),
                before_sleep=self._before_retry,
                reraise=True,
            )
            try:
                async for attempt in retrying:
                    with attempt:
                        await self._session()
            except _SessionEnded:
                continue

    async def _session(self) -> None:
        """Connect and poll until the link fails.

        A failure before the first good read raises (and backs off further); a failure after
        a good session ends it normally so the next outage starts with a short backoff.
        """
        read_any = False
        try:
            async with self.driver:
                async for _ in self._polls():
                    read_any = True
        except DeviceConnectError as exc:
            await self._failed(exc)
            if not read_any:
                raise
            raise _SessionEnded from exc

    async def _polls(self) -> AsyncIterator[None]:
        """Read at the poll interval; yields after every good read."""
        interval = self.driver.config.poll_interval
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            try:
                async with self.limiter:
                    batch = await self.driver.read()
            except DeviceConnectError:
                raise
            except DriverError as exc:
                await self._failed(exc)
            else:
                self.stats.polls += 1
                self._recovered()
                if len(batch):
                    await self.handler(batch)
                yield
            next_at += interval
            now = loop.time()
            if next_at < now:  # overran: skip missed ticks instead of bursting
                next_at = now + interval - ((now - next_at) % interval)
            await asyncio.sleep(next_at - now)

    async def _failed(self, exc: DriverError) -> None:
        """Mark the gap with a Bad row; log at error once per outage, then at debug."""
        self.stats.failed_polls += 1
        self.stats.last_error = str(exc)
        if self.stats.down_since is None:
            self.stats.down_since = time.monotonic()
            log.error("%s", exc)
        else:
            log.debug("%s (still failing)", exc)
        if self._tag_names:
            await self.handler(SampleBatch.bad(self.name, now_ns(), self._tag_names, cause_of(exc)))

    def _recovered(self) -> None:
        if self.stats.down_since is not None:
            outage = time.monotonic() - self.stats.down_since
            log.info(
                "device %r recovered after %.1f s (%d failed polls)",
                self.name,
                outage,
                self.stats.failed_polls,
            )
            self.stats.down_since = None

    async def _before_retry(self, state: RetryCallState) -> None:
        self.stats.reconnects += 1
        wait = state.next_action.sleep if state.next_action else 0.0
        log.debug("device %r: reconnecting in %.2f s", self.name, wait)

"""One poll loop per device: cadence, containment, reconnect backoff, Bad-quality gaps, log-once.

Drivers stay small because everything about *when* and *what if it fails* lives here.
Whatever a driver or plugin raises (a ``DriverError``, or a ``KeyError``/``TypeError`` from a
bug) stays with its device: logged once per outage (with a traceback when it is not a
``DriverError``), the device's tags get a Bad row, and the device restarts with backoff.
Only cancellation leaves :meth:`DevicePoller.run`, so one device can never stop the others.

The handler must not block: the runtime hands it a bounded queue, so the cadence never
waits for analytics, disk or network. A tick that could not run on time counts as skipped.
"""

from __future__ import annotations

__all__ = ["BatchHandler", "DevicePoller", "PollObserver", "PollerStats"]

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from edge_agent.batch import Quality, SampleBatch, cause_of, joined_bytes, now_ns
from edge_agent.drivers.base import Driver
from edge_agent.errors import DeviceConnectError, DriverError
from edge_agent.retry import Backoff

BatchHandler = Callable[[SampleBatch], Awaitable[None]]
#: Called after every read attempt with (device, seconds the read took, whether it succeeded).
PollObserver = Callable[[str, float, bool], None]
log = logging.getLogger("edge_agent.poller")
_QUALITY_NAMES = {q: q.name.lower() for q in Quality}
_CODES = np.dtype(np.uint8)


@dataclass(slots=True)
class PollerStats:
    """What one device did since start; read by status pages, never written outside the poller.

    ``quality`` counts samples (tag values) by quality name: ``good``, ``uncertain``, ``bad``,
    ``missing``. Times are wall-clock seconds since the epoch.
    """

    polls: int = 0  # reads that returned data
    failed_polls: int = 0  # reads (or connects) that failed and produced a Bad row
    skipped_polls: int = 0  # ticks that could not run on time (the previous poll overran)
    reconnects: int = 0  # restarts of the device session after a failure
    last_good_poll: float | None = None
    last_error: str | None = None  # plain words, names the device
    down_since: float | None = None  # monotonic time of the first failure of the current outage
    started: float = field(default_factory=time.time)  # when this poller was created
    quality: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_QUALITY_NAMES.values(), 0))

    @property
    def healthy(self) -> bool:
        return self.down_since is None


def _describe(exc: BaseException, device: str) -> str:
    """A driver's own error speaks for itself; anything else is a bug: say so and name its type."""
    if isinstance(exc, DriverError):
        return str(exc)
    return (
        f"device {device!r}: the driver raised {type(exc).__name__}: {exc} (a driver or plugin bug); "
        "its tags are marked Bad and the device is restarted with backoff"
    )


class DevicePoller:
    """Poll one driver at its configured interval until cancelled."""

    def __init__(
        self,
        driver: Driver[Any],
        handler: BatchHandler,
        *,
        limiter: asyncio.Semaphore | None = None,
        backoff_initial: float = 0.5,
        on_poll: PollObserver | None = None,
    ) -> None:
        self.driver = driver
        self.on_poll = on_poll
        self.handler = handler
        self.limiter = limiter or asyncio.Semaphore(1)
        self.stats = PollerStats()
        self._backoff = Backoff(backoff_initial, driver.config.backoff_max)
        self._tag_names = [t.name for t in driver.tags]
        self._late = 0  # ticks skipped in the current overrun episode
        self._session_good = False  # the current session read at least once
        self._last_quality: tuple[Mapping[str, np.ndarray], np.ndarray] | None = None
        # The task running run() and its cancelling() count when run() began (see
        # _stop_if_cancelled).
        self._task: asyncio.Task[Any] | None = None
        self._cancels = 0

    @property
    def name(self) -> str:
        return self.driver.name

    async def run(self) -> None:
        """Sessions forever: a session ends on any failure; the next starts after a backoff."""
        self._task = asyncio.current_task()
        self._cancels = self._task.cancelling() if self._task is not None else 0
        while True:
            good = await self._session()
            if good:
                self._backoff.reset()  # the link worked: the next outage starts with a short wait
            self._stop_if_cancelled()
            self.stats.reconnects += 1
            delay = await self._backoff.wait()
            log.debug("device %r: reconnected after %.2f s", self.name, delay)

    async def _session(self) -> bool:
        """Connect and poll until something fails; True if at least one read was good."""
        self._session_good = False
        try:
            async with self.driver:
                await self._polls()
        except Exception as exc:  # containment: any driver/plugin error ends only this session
            await self._failed(exc)
        return self._session_good

    async def _polls(self) -> None:
        """Read at the poll interval until the link drops (raises) or the driver misbehaves."""
        interval = self.driver.config.poll_interval
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            started = loop.time()
            try:
                async with self.limiter:
                    batch = await self.driver.read()
            except DeviceConnectError:
                self._observe(loop.time() - started, False)
                raise
            except DriverError as exc:  # the device answered badly; the link is fine
                self._observe(loop.time() - started, False)
                await self._failed(exc)
            else:
                self._observe(loop.time() - started, True)
                self._session_good = True
                self._count(batch)
                self._recovered()
                if len(batch):
                    await self.handler(batch)
            next_at += interval
            now = loop.time()
            if next_at < now:  # overran: skip missed ticks instead of bursting
                missed = int((now - next_at) // interval) + 1
                next_at += missed * interval
                self._skipped(missed)
            elif self._late:
                self._on_time()
            self._stop_if_cancelled()
            await asyncio.sleep(next_at - now)

    def _stop_if_cancelled(self) -> None:
        """End the poller if it was cancelled but the driver swallowed the CancelledError.

        Python 3.11's ``asyncio.wait_for`` (inside pymodbus and asyncua) loses a cancellation
        that arrives as the awaited operation completes; a poller that then polled on would
        keep whoever cancelled it (a TaskGroup, a stop, a reload) waiting forever.
        """
        if self._task is not None and self._task.cancelling() > self._cancels:
            raise asyncio.CancelledError

    def _observe(self, seconds: float, ok: bool) -> None:
        if self.on_poll is not None:
            self.on_poll(self.name, seconds, ok)

    def _count(self, batch: SampleBatch) -> None:
        st = self.stats
        st.polls += 1
        st.last_good_poll = time.time()
        if not batch.quality:
            return
        last = self._last_quality
        if last is not None and last[0] is batch.quality:
            counts = last[1]  # the same read-only all-Good mapping as last poll: same counts
        else:
            cols = list(batch.quality.values())
            codes = np.frombuffer(joined_bytes(cols, len(batch), _CODES), np.uint8)
            counts = np.bincount(codes, minlength=len(Quality))
            # The Modbus codec hands out one read-only mapping of read-only arrays for every
            # all-Good poll; its counts cannot change, so the common case costs O(1) per poll.
            if isinstance(batch.quality, MappingProxyType) and not any(c.flags.writeable for c in cols):
                self._last_quality = (batch.quality, counts)
        for code, name in _QUALITY_NAMES.items():
            st.quality[name] += int(counts[code])

    def _skipped(self, missed: int) -> None:
        self.stats.skipped_polls += missed
        if not self._late:
            log.warning(
                "device %r: a poll took longer than poll_interval=%gs; %d poll(s) skipped. "
                "Raise poll_interval, read fewer tags, or check the link's latency.",
                self.name,
                self.driver.config.poll_interval,
                missed,
            )
        self._late += missed

    def _on_time(self) -> None:
        log.info("device %r: polling on time again (%d poll(s) were skipped)", self.name, self._late)
        self._late = 0

    async def _failed(self, exc: BaseException) -> None:
        """Mark the gap with a Bad row; log at error once per outage (with traceback for a bug)."""
        st = self.stats
        st.failed_polls += 1
        st.last_error = _describe(exc, self.name)
        if st.down_since is None:
            st.down_since = time.monotonic()
            log.error("%s", st.last_error, exc_info=not isinstance(exc, DriverError))
        else:
            log.debug("%s (still failing)", st.last_error)
        if self._tag_names:
            st.quality["bad"] += len(self._tag_names)
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

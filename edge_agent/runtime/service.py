"""The agent: device pollers → bounded queue → per-asset analytics → durable delivery.

Acquisition is apart from processing: pollers only ``offer`` their batches to a bounded
:class:`BatchQueue` and keep their cadence; one processing task coalesces each device's polls
for up to ``buffer.linger`` seconds (capped at the live KPI window; not at all for a device
polled no faster than that, whose next poll could not join), runs analytics once per asset
over those rows, and submits one record per asset. So a record, an MQTT message and an
analytics call each carry many rows, and raw data and KPIs are at most ``linger`` late.

Failures stay where they happen: a driver's in its poller, an asset's analytics in that
asset, a refused submit in a counter. Shutdown is structured: a stop event cancels the
pollers, the queue is drained, open KPI windows are closed, and delivery flushes.
"""

from __future__ import annotations

__all__ = ["Agent", "BatchSink", "RuntimeStats", "cancel_and_wait", "engineering_units"]

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from edge_agent.batch import SampleBatch
from edge_agent.config import AgentConfig, AssetConfig, DeviceConfig
from edge_agent.delivery.record import Submission
from edge_agent.delivery.units import EngineeringUnits
from edge_agent.drivers.base import Driver
from edge_agent.drivers.links import LinkHub
from edge_agent.errors import EdgeAgentError
from edge_agent.plugins import driver_registry
from edge_agent.retry import Backoff
from edge_agent.runtime.analytics_stage import AnalyticsStage, KpiBatch
from edge_agent.runtime.poller import DevicePoller, PollerStats, PollObserver
from edge_agent.runtime.queue import BatchQueue, QueueStats
from edge_agent.runtime.routing import AssetRoute, Router
from edge_agent.runtime.state_store import AnalyticsStateStore

log = logging.getLogger("edge_agent.agent")
#: Flush a device's coalesced rows early once they hold this many samples (bounds record size).
MAX_COALESCED_SAMPLES = 200_000
#: Processing gives the event loop a turn at least this often (s). One device round of a
#: large plant is 1,000 assets and up to a second of analytics; held that long, the loop
#: could not serve the pollers' request/answer turns, and every device skipped polls.
YIELD_EVERY_S = 0.002
#: KPI windows handed to delivery per buffer transaction when the agent stops.
_STOP_CHUNK = 1000


class BatchSink(Protocol):
    """Where the agent hands its output: the durable delivery layer, or a test collector."""

    async def submit(
        self,
        kind: Literal["raw", "kpi"],
        asset: AssetConfig,
        batch: SampleBatch,
        *,
        window: str | None = None,
    ) -> None: ...


@dataclass(slots=True)
class RuntimeStats:
    """The runtime's public counters (delivery has its own: ``Delivery.stats``).

    ``devices`` are live references to each poller's :class:`PollerStats`; ``queue`` is the
    poll → processing hand-off; ``refused_samples`` were processed but the sink refused them
    (e.g. ``BufferFullError`` after ``block_timeout``); ``analytics_errors`` maps an asset whose
    KPIs failed to the error in plain words (its raw samples keep flowing).
    """

    devices: dict[str, PollerStats] = field(default_factory=dict)
    queue: QueueStats = field(default_factory=QueueStats)
    refused_samples: int = 0
    last_refusal: str | None = None
    analytics_errors: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Pending:
    batches: list[SampleBatch]
    since: float
    samples: int


class Agent:
    """Poll every enabled device, compute KPIs live, and hand everything to ``sink``."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        sink: BatchSink | None = None,
        drivers: dict[str, type[Driver[Any]]] | None = None,
        persist_state: bool = True,
    ) -> None:
        # the drivers the config uses (a reload that adds another loads it then, make_poller)
        self._discover = drivers is None
        self.registry = dict(drivers) if drivers is not None else self._drivers_of(config)
        self.config = config
        self.sink = sink
        self.router = Router(config)
        self.analytics = AnalyticsStage(config)
        # analytics continuity across restarts (kill -9 included): state beside the buffer
        self.state_store = AnalyticsStateStore.beside_buffer(config) if persist_state else None
        self._replay: list[KpiBatch] = []
        if self.state_store is not None and (saved := self.state_store.load()) is not None:
            self._replay = self.analytics.restore(saved)
        # raw samples go out in engineering units, counters with their exact count beside
        self.units = engineering_units(config)
        self.linger = min(config.buffer.linger, config.analytics.kpi_interval)
        self.queue = BatchQueue(config.buffer.queue_samples)
        self.limiter = asyncio.Semaphore(config.agent.max_concurrent_polls)
        self.links = LinkHub()  # devices on one serial line or gateway share its connection
        # Operations hooks (status page, metrics, reload): observers see every read and batch.
        self.poll_observers: list[PollObserver] = []
        self.batch_observers: list[Callable[[SampleBatch], None]] = []
        self.analytics_seconds = 0.0  # CPU spent in analytics.update, for /metrics
        self.tasks: dict[str, asyncio.Task[None]] = {}  # device name -> poll task, while running
        self.started = asyncio.Event()  # set once every poll task exists
        self._tg: asyncio.TaskGroup | None = None
        #: Held while a device round is processed: it yields to the pollers between assets,
        #: and a reload swaps the router and analytics only between rounds.
        self.round_lock = asyncio.Lock()
        # devices whose driver marks NaN/±Inf Bad itself (Driver.marks_nonfinite)
        self._marks_nonfinite: dict[str, bool] = {}
        #: How long each device's polls wait to be joined (make_poller): the linger, or 0 when
        #: the device is polled no faster than it (its next poll could not join anyway).
        self._waits: dict[str, float] = {}
        self.pollers = [self.make_poller(dev) for dev in config.devices if dev.enabled]
        self.stats = RuntimeStats(devices={p.name: p.stats for p in self.pollers}, queue=self.queue.stats)
        self._pending: dict[str, _Pending] = {}
        self._refusing = False

    def make_poller(self, dev: DeviceConfig) -> DevicePoller:
        """A poller for ``dev`` on the agent's shared links, limiter and observers (run and reload)."""
        if dev.driver not in self.registry and self._discover:
            self.registry.update(driver_registry(frozenset({dev.driver})))
        cls = self.registry[dev.driver]
        # a registry entry may be any factory; only an explicit True skips the runtime's check
        self._marks_nonfinite[dev.name] = getattr(cls, "marks_nonfinite", False) is True
        # A device polled every second gained nothing from waiting half a second for a poll
        # that could not come within it, but the wait: half a second on every sample's age.
        self._waits[dev.name] = self.linger if dev.poll_interval < self.linger else 0.0
        driver = _create(cls, dev, self.links)
        return DevicePoller(driver, self._offer, limiter=self.limiter, on_poll=self._on_poll)

    @staticmethod
    def _drivers_of(config: AgentConfig) -> dict[str, type[Driver[Any]]]:
        return dict(driver_registry(frozenset(d.driver for d in config.devices) or None))

    def start_poller(self, poller: DevicePoller) -> None:
        """Start one poll task inside the running agent's task group (used by run and by reload)."""
        assert self._tg is not None, "start_poller before run()"
        self.stats.devices[poller.name] = poller.stats
        self.tasks[poller.name] = self._tg.create_task(
            _supervised(f"poller {poller.name!r}", poller.run), name=f"poll:{poller.name}"
        )

    def _on_poll(self, device: str, seconds: float, ok: bool) -> None:
        for obs in self.poll_observers:
            obs(device, seconds, ok)

    async def _offer(self, batch: SampleBatch) -> None:
        self.queue.offer(batch)

    # -- processing ------------------------------------------------------------------------------
    async def _process(self) -> None:
        """Coalesce, analyse and submit until the queue is closed and drained."""
        loop = asyncio.get_running_loop()
        while True:
            due = min((self._due_at(d, p) for d, p in self._pending.items()), default=None)
            timeout = None if due is None else max(0.0, due - loop.time())
            batches = await self.queue.take_all(timeout)
            now = loop.time()
            for b in batches:
                p = self._pending.get(b.device)
                if p is None:
                    p = self._pending[b.device] = _Pending([], now, 0)
                p.batches.append(b)
                p.samples += len(b) * len(b.values)
            closing = self.queue.closed and not batches
            for device in [d for d, p in self._pending.items() if closing or self._due(d, p, now)]:
                async with self.round_lock:
                    await self._handle(SampleBatch.concat(self._pending.pop(device).batches))
            if closing:
                return

    def _due_at(self, device: str, p: _Pending) -> float:
        return p.since + self._waits.get(device, self.linger)

    def _due(self, device: str, p: _Pending, now: float) -> bool:
        return now >= self._due_at(device, p) or p.samples >= MAX_COALESCED_SAMPLES

    async def _handle(self, batch: SampleBatch) -> None:
        """One device's coalesced rows: analytics per asset, failures contained; one submit for all."""
        if not self._marks_nonfinite.get(batch.device, False):
            batch = batch.with_nonfinite_bad()
        for obs in self.batch_observers:
            obs(batch)
        to_units = self.units.get(batch.device)
        if to_units is None:  # polled just before a reload removed its device: nowhere to route it
            log.debug("dropping %d row(s) of device %r, removed by a reload", len(batch), batch.device)
            return
        out: list[Submission] = []
        closed: list[KpiBatch] = []
        turn = time.perf_counter()
        # in engineering units once for the whole round (each counter's exact count beside
        # it, which the analytics read): per asset it cost three times as much
        for route, part in self.router.split(to_units(batch)):
            if time.perf_counter() - turn > YIELD_EVERY_S:  # the pollers' turn (round_lock held)
                await asyncio.sleep(0)
                turn = time.perf_counter()
            kpis = self._analyse(route, part)
            closed.extend(kpis)
            raw = self.analytics.numeric_states(route, part)  # a PLC's text states as codes
            out.append(Submission("raw", route.asset, raw))
            out += _submissions(kpis)
        if self.state_store is not None:
            # once per device round, and only the assets that need it: a plant is thousands
            chunk = self.state_store.periodic_chunk(self.analytics.changed)
            if chunk:  # closed windows ride along until delivery has them
                await self._save_state(closed, {*chunk, *(k.asset.id for k in closed)}, periodic=True)
            elif closed:
                await self._save_state(closed, {k.asset.id for k in closed})
        await self._submit_all(out)

    def _analyse(self, route: AssetRoute, part: SampleBatch) -> list[KpiBatch]:
        asset = route.asset
        started = time.perf_counter()
        try:
            return self.analytics.update(route, part)
        except Exception as exc:
            # Raw data still flows: a KPI defect must never cost the plant its measurements.
            if asset.id not in self.stats.analytics_errors:
                log.exception("analytics for asset %r failed; raw samples keep flowing", asset.id)
            self.stats.analytics_errors[asset.id] = f"{type(exc).__name__}: {exc}"
            return []
        finally:
            self.analytics_seconds += time.perf_counter() - started

    async def _save_state(
        self, outbox: list[KpiBatch] | None = None, assets: set[str] | None = None, *, periodic: bool = False
    ) -> None:
        """Save ``assets`` (default: every asset, and forget the ones no longer configured);
        ``periodic``: they include a chunk of the periodic pass."""
        assert self.state_store is not None
        keep = self.analytics.asset_ids if assets is None else None
        try:
            state = self.analytics.state(outbox, assets=assets, streams_of=self.state_store.missing_streams)
            await self.state_store.save_async(state, keep_only=keep, periodic=periodic)
        except Exception:  # continuity is a comfort: losing it must not stop the data
            log.exception("could not save the analytics state; KPIs go on, a restart starts afresh")

    async def _submit_all(self, items: list[Submission]) -> None:
        """Hand ``items`` to the sink in one call where it takes many; a refusal is counted, not raised."""
        if self.sink is None or not items:
            return
        try:
            many = getattr(self.sink, "submit_many", None)
            if many is not None:
                await many(items)
            else:
                for it in items:
                    await self.sink.submit(it.kind, it.asset, it.batch, window=it.window)
        except Exception as exc:  # e.g. BufferFullError: count it, keep processing
            refused = getattr(exc, "samples", None)  # BufferFullError: what the buffer did not take
            if refused is None:
                refused = sum(len(it.batch) * len(it.batch.values) for it in items)
            self.stats.refused_samples += refused
            assets = sorted({it.asset.id for it in items})
            self.stats.last_refusal = f"asset(s) {', '.join(assets[:5])}: {exc}"
            if not self._refusing:
                log.error(
                    "delivery refused samples of asset(s) %s: %s; processing goes on, refusals are counted",
                    ", ".join(repr(a) for a in assets[:5]) + (" …" if len(assets) > 5 else ""),
                    exc,
                    exc_info=not isinstance(exc, EdgeAgentError),
                )
                self._refusing = True
            return
        if self._refusing:
            log.warning("delivery accepts samples again (%d refused so far)", self.stats.refused_samples)
            self._refusing = False

    # -- lifecycle -------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then shut down in order and close open KPI windows."""
        log.info(
            "agent %r starting: %d device(s), %d asset(s), linger %.3g s",
            self.config.agent.name,
            len(self.pollers),
            len(self.config.assets),
            self.linger,
        )
        # windows closed just before a crash, maybe never handed over
        await self._submit_all(_submissions(self._replay))
        self._replay = []
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            processor = tg.create_task(_supervised("processing", self._process), name="processing")
            for p in self.pollers:
                self.start_poller(p)
            self.started.set()
            await stop.wait()
            await cancel_and_wait(list(self.tasks.values()))
            self.links.close()
            self.queue.close()
            # Drain, but never hang the stop on a delivery that does not take data (policy block).
            limit = self.config.agent.stop_timeout
            done, _ = await asyncio.wait({processor}, timeout=limit)
            if not done:
                left = self.queue.stats.depth + sum(p.samples for p in self._pending.values())
                processor.cancel()
                log.warning(
                    "stopping: delivery did not take the last polls within agent.stop_timeout=%gs; "
                    "about %d samples were not stored",
                    limit,
                    left,
                )
        self._tg = None
        await self._close_analytics()
        log.info("agent %r stopped", self.config.agent.name)

    async def _close_analytics(self) -> None:
        """At the stop: held rows booked, open windows as they stand, handed to delivery in
        chunks (one buffer transaction each: a plant is thousands of windows), then the state
        saved. Windows not handed over within ``stop_timeout`` go into the saved state's
        outbox and are handed over at the next start; assets not reached keep their held rows
        and open windows in the saved state."""
        chunk: list[KpiBatch] = []
        limit = self.config.agent.stop_timeout
        try:
            async with asyncio.timeout(limit):
                for k in self.analytics.flush():
                    chunk.append(k)
                    if len(chunk) >= _STOP_CHUNK:
                        await self._submit_all(_submissions(chunk))
                        chunk = []
                await self._submit_all(_submissions(chunk))
                chunk = []
        except TimeoutError:
            log.warning(
                "stopping: the open KPI windows were not all handed to delivery within "
                "agent.stop_timeout=%gs; the rest are saved with the analytics state and published "
                "after the next start (raise stop_timeout to publish them at the stop)",
                limit,
            )
        if self.state_store is not None:
            await self._save_state(chunk)
            self.state_store.close()


def _submissions(kpis: list[KpiBatch]) -> list[Submission]:
    """Closed KPI windows as what delivery takes."""
    return [Submission("kpi", k.asset, k.batch, k.window) for k in kpis]


class _Deferred(Driver[DeviceConfig]):
    """Stands in for a driver whose constructor raised: each connect tries to create it again.

    So a plugin bug at start-up is contained like one at connect: logged with its traceback,
    Bad rows for the device's tags, retried with backoff, and the other devices run.
    """

    def __init__(
        self, cls: type[Driver[Any]], config: DeviceConfig, error: Exception, links: LinkHub
    ) -> None:
        super().__init__(config)
        self.links = links
        self._cls = cls
        self._error: Exception | None = error
        self._inner: Driver[Any] | None = None

    async def connect(self) -> None:
        if self._inner is None:
            if self._error is not None:
                error, self._error = self._error, None  # the first attempt's error, reported once
                raise error
            inner = self._cls(self.config)
            inner.links = self.links
            self._inner = inner
        await self._inner.connect()

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()

    async def read(self) -> SampleBatch:
        assert self._inner is not None
        return await self._inner.read()


def _create(cls: type[Driver[Any]], config: DeviceConfig, links: LinkHub) -> Driver[Any]:
    """The device's driver, on the agent's shared links (one serial line or gateway, one connection)."""
    try:
        driver = cls(config)
    except Exception as exc:  # a plugin bug: contained in the device's poller, see _Deferred
        return _Deferred(cls, config, exc, links)
    driver.links = links
    return driver


def engineering_units(config: AgentConfig) -> dict[str, EngineeringUnits]:
    """Each device's raw-sample conversion to engineering units (scale and offset applied)."""
    return {dev.name: EngineeringUnits(dev.tag_configs()) for dev in config.devices}


async def cancel_and_wait(tasks: list[asyncio.Task[Any]], *, repeat: float = 0.5) -> None:
    """Cancel ``tasks`` and wait until they have ended, cancelling again while one runs on.

    Python 3.11's ``asyncio.wait_for`` (used inside pymodbus and asyncua) loses a cancellation
    that arrives as the awaited operation completes, so a single cancel can leave a poller
    running and a stop or reload waiting forever.
    """
    for task in tasks:
        task.cancel()
    pending = {t for t in tasks if not t.done()}
    while pending:
        _, pending = await asyncio.wait(pending, timeout=repeat)
        for task in pending:
            task.cancel()


async def _supervised(what: str, run: Callable[[], Awaitable[None]]) -> None:
    """Belt and braces: a task that should never fail is logged and restarted if it does."""
    backoff = Backoff(0.5, 30.0)
    while True:
        try:
            await run()
            return
        except Exception:
            log.exception("%s failed unexpectedly (a bug); restarting it", what)
            await backoff.wait()

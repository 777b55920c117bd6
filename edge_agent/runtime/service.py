"""The agent: device pollers → per-asset analytics → durable delivery, under one TaskGroup.

Shutdown is structured: a stop event cancels the pollers, the analytics stage closes its
open windows, and delivery flushes before the process exits, so SIGINT/SIGTERM loses nothing.
"""

from __future__ import annotations

__all__ = ["Agent", "BatchSink", "run_until_signal"]

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol

from edge_agent.batch import SampleBatch
from edge_agent.config import AgentConfig, AssetConfig, DeviceConfig
from edge_agent.drivers.base import Driver
from edge_agent.runtime.analytics_stage import AnalyticsStage
from edge_agent.runtime.poller import DevicePoller, PollObserver
from edge_agent.runtime.routing import Router

log = logging.getLogger("edge_agent.agent")


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


class Agent:
    """Poll every enabled device, compute KPIs live, and hand everything to ``sink``."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        sink: BatchSink | None = None,
        drivers: dict[str, type[Driver[Any]]] | None = None,
    ) -> None:
        from edge_agent.plugins import driver_registry

        registry = drivers if drivers is not None else driver_registry()
        self.config = config
        self.sink = sink
        self.router = Router(config)
        self.analytics = AnalyticsStage(config)
        self._analytics_failed: set[str] = set()
        self.registry = registry
        self.limiter = asyncio.Semaphore(config.agent.max_concurrent_polls)
        # Operations hooks (status page, metrics, reload): observers see every read and batch.
        self.poll_observers: list[PollObserver] = []
        self.batch_observers: list[Callable[[SampleBatch], None]] = []
        self.analytics_seconds = 0.0  # CPU spent in analytics.update, for /metrics
        self.tasks: dict[str, asyncio.Task[None]] = {}  # device name -> poll task, while running
        self._tg: asyncio.TaskGroup | None = None
        self.started = asyncio.Event()  # set once every poll task exists
        self.pollers = [self.make_poller(dev) for dev in config.devices if dev.enabled]

    def make_poller(self, dev: DeviceConfig) -> DevicePoller:
        return DevicePoller(
            self.registry[dev.driver](dev), self._on_batch, limiter=self.limiter, on_poll=self._on_poll
        )

    def start_poller(self, poller: DevicePoller) -> None:
        """Start one poll task inside the running agent's task group (used by run and by reload)."""
        assert self._tg is not None, "start_poller before run()"
        self.tasks[poller.name] = self._tg.create_task(poller.run(), name=f"poll:{poller.name}")

    def _on_poll(self, device: str, seconds: float, ok: bool) -> None:
        for obs in self.poll_observers:
            obs(device, seconds, ok)

    async def _on_batch(self, batch: SampleBatch) -> None:
        batch = batch.with_nonfinite_bad()
        for obs in self.batch_observers:
            obs(batch)
        for route, part in self.router.split(batch):
            try:
                t0 = time.perf_counter()
                kpis = self.analytics.update(route, part)
                self.analytics_seconds += time.perf_counter() - t0
            except Exception:
                # Raw data still flows: a KPI defect must never cost the plant its measurements.
                if route.asset.id not in self._analytics_failed:
                    log.exception("analytics for asset %r failed; raw samples keep flowing", route.asset.id)
                self._analytics_failed.add(route.asset.id)
                kpis = []
            if self.sink is not None:
                await self.sink.submit("raw", route.asset, part)
                for k in kpis:
                    await self.sink.submit("kpi", k.asset, k.batch, window=k.window)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then shut down in order and close open KPI windows."""
        log.info(
            "agent %r starting: %d device(s), %d asset(s)",
            self.config.agent.name,
            len(self.pollers),
            len(self.config.assets),
        )
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            for p in self.pollers:
                self.start_poller(p)
            self.started.set()
            await stop.wait()
            for task in self.tasks.values():
                task.cancel()
        self._tg = None
        for k in self.analytics.flush():
            if self.sink is not None:
                await self.sink.submit("kpi", k.asset, k.batch, window=k.window)
        log.info("agent %r stopped", self.config.agent.name)


async def run_until_signal(config: AgentConfig) -> None:
    """`edge-agent run`: the agent with its configured delivery, until SIGINT or SIGTERM."""
    from edge_agent.delivery import Delivery

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Delivery(config) as delivery:
        await Agent(config, sink=delivery).run(stop)

"""The agent: device pollers → per-asset analytics → durable delivery, under one TaskGroup.

Shutdown is structured: a stop event cancels the pollers, the analytics stage closes its
open windows, and delivery flushes before the process exits, so SIGINT/SIGTERM loses nothing.
"""

from __future__ import annotations

__all__ = ["Agent", "BatchSink", "run_until_signal"]

import asyncio
import logging
import signal
from typing import Any, Literal, Protocol

from edge_agent.batch import SampleBatch
from edge_agent.config import AgentConfig, AssetConfig
from edge_agent.delivery.units import EngineeringUnits
from edge_agent.drivers.base import Driver
from edge_agent.runtime.analytics_stage import AnalyticsStage, KpiBatch
from edge_agent.runtime.poller import DevicePoller
from edge_agent.runtime.routing import Router
from edge_agent.runtime.state_store import AnalyticsStateStore

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
        persist_state: bool = True,
    ) -> None:
        from edge_agent.plugins import driver_registry

        registry = drivers if drivers is not None else driver_registry()
        self.config = config
        self.sink = sink
        self.router = Router(config)
        self.analytics = AnalyticsStage(config)
        # analytics continuity across restarts (kill -9 included): state beside the buffer
        self.state_store = AnalyticsStateStore.beside_buffer(config) if persist_state else None
        self._replay: list[KpiBatch] = []
        if self.state_store is not None and (saved := self.state_store.load()) is not None:
            self._replay = self.analytics.restore(saved)
        self._analytics_failed: set[str] = set()
        # raw samples go out in engineering units, counters with their exact count beside
        self._units = {dev.name: EngineeringUnits(dev.tag_configs()) for dev in config.devices}
        limiter = asyncio.Semaphore(config.agent.max_concurrent_polls)
        self.pollers = [
            DevicePoller(registry[dev.driver](dev), self._on_batch, limiter=limiter)
            for dev in config.devices
            if dev.enabled
        ]

    async def _on_batch(self, batch: SampleBatch) -> None:
        for route, part in self.router.split(batch.with_nonfinite_bad()):
            try:
                kpis = self.analytics.update(route, part)
            except Exception:
                # Raw data still flows: a KPI defect must never cost the plant its measurements.
                if route.asset.id not in self._analytics_failed:
                    log.exception("analytics for asset %r failed; raw samples keep flowing", route.asset.id)
                self._analytics_failed.add(route.asset.id)
                kpis = []
            if self.state_store is not None and (kpis or self.state_store.due()):
                self.state_store.save(self.analytics.state(kpis))  # closed windows ride along
            if self.sink is not None:
                await self.sink.submit("raw", route.asset, self._units[batch.device](part))
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
        for k in self._replay:  # windows closed just before a crash, maybe never handed over
            if self.sink is not None:
                await self.sink.submit("kpi", k.asset, k.batch, window=k.window)
        self._replay = []
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(p.run(), name=f"poll:{p.name}") for p in self.pollers]
            await stop.wait()
            for task in tasks:
                task.cancel()
        for k in self.analytics.flush():
            if self.sink is not None:
                await self.sink.submit("kpi", k.asset, k.batch, window=k.window)
        if self.state_store is not None:
            self.state_store.save(self.analytics.state())
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

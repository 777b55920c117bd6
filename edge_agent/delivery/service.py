"""Delivery: the durable buffer plus one replay task per sink, as one async context manager.

The runtime calls ``submit`` and nothing else on the hot path; once it returns the batch is
on disk. Sinks catch up from their own cursors whenever their destination is reachable.
"""

from __future__ import annotations

__all__ = ["Delivery"]

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from edge_agent.batch import SampleBatch
from edge_agent.config import AgentConfig, AssetConfig
from edge_agent.delivery.buffer import DurableBuffer, Entry
from edge_agent.delivery.influx import InfluxSink
from edge_agent.delivery.mqtt import MqttSink
from edge_agent.delivery.record import Kind, Submission, placement_of
from edge_agent.delivery.sink import Sink, replay
from edge_agent.delivery.stats import DeliveryStats, SinkStats
from edge_agent.delivery.store import StoreSink
from edge_agent.retry import Backoff

log = logging.getLogger("edge_agent.delivery")


def _window_name(seconds: float) -> str:
    return f"{seconds:g}s"


class Delivery:
    """Buffer + sinks. ``async with Delivery(config) as d: await d.submit("raw", asset, batch)``.

    Sinks: MQTT if ``config.mqtt``, InfluxDB if ``config.influxdb``, a local SQLite store if
    ``store`` is a path, plus any ``extra_sinks`` (plugins). On exit it waits up to
    ``buffer.flush_timeout`` for the sinks to drain; whatever is left is sent after restart.
    """

    def __init__(
        self, config: AgentConfig, *, store: Path | None = None, extra_sinks: Sequence[Sink] = ()
    ) -> None:
        self.config = config
        sinks: list[Sink] = []
        if config.mqtt is not None:
            site = config.assets[0].site if config.assets else "site"
            sinks.append(MqttSink(config.mqtt, agent=config.agent.name, site=site))
        if config.influxdb is not None:
            sinks.append(InfluxSink(config.influxdb))
        if config.sparkplug is not None:
            from edge_agent.delivery.sparkplug import SparkplugSink

            sinks.append(SparkplugSink.from_config(config))
        if store is not None:
            sinks.append(StoreSink(store))
        sinks.extend(extra_sinks)
        names = [s.name for s in sinks]
        if len(set(names)) != len(names):
            raise ValueError(f"delivery: sink names must be unique, got {names}")
        self.sinks = sinks
        self._stats = DeliveryStats(sinks={n: SinkStats() for n in names})
        limits = {s.name: s.limits for s in sinks if s.limits is not None}
        self.buffer = DurableBuffer(config.buffer, names, self._stats.sinks, limits)
        self._stats.buffer = self.buffer.stats  # one object: the status page reads what the buffer counts
        self._stack = contextlib.AsyncExitStack()
        self._tasks: list[asyncio.Task[None]] = []
        self._tg: asyncio.TaskGroup | None = None
        self._kpi_window = _window_name(config.analytics.kpi_interval)

    async def __aenter__(self) -> Self:
        await self.buffer.open()
        self._stack.push_async_callback(self.buffer.close)
        try:
            for sink in self.sinks:
                await self._stack.enter_async_context(sink)
            self._tg = asyncio.TaskGroup()
            await self._tg.__aenter__()
            self._tasks = [self._tg.create_task(self._replay(s), name=f"replay-{s.name}") for s in self.sinks]
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def _replay(self, sink: Sink) -> None:
        """One sink's delivery loop; if it ever fails (a bug), it restarts from its cursor."""
        backoff = Backoff(0.5, 30.0)
        while True:
            try:
                await replay(sink, self.buffer, self._stats.sinks[sink.name])
                return
            except Exception:
                log.exception(
                    "sink %s: delivery loop failed (a bug); restarting it, unconfirmed data is resent",
                    sink.name,
                )
                await self.buffer.rewind(sink.name)
                await backoff.wait()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if et is None:
                await self.flush(self.config.buffer.flush_timeout)
            for t in self._tasks:
                t.cancel()
            if self._tg is not None:
                await self._tg.__aexit__(None, None, None)
        finally:
            await self._stack.aclose()
        left = {n: s.backlog for n, s in self._stats.sinks.items() if s.backlog}
        if left:
            log.info("delivery stopped with a backlog %s (samples); it is sent after the next start", left)

    async def submit(
        self, kind: Kind, asset: AssetConfig, batch: SampleBatch, *, window: str | None = None
    ) -> None:
        """Durable once this returns. ``window`` names a KPI batch's window (default: kpi_interval).

        Under policy ``block`` this waits for room and raises BufferFullError after
        ``block_timeout``; on a full disk it raises BufferFullError (nothing stored is lost).
        """
        await self.submit_many([Submission(kind, asset, batch, window)])

    async def submit_many(self, items: Sequence[Submission]) -> None:
        """Like ``submit`` for many batches at once: one buffer transaction for a device's round."""
        entries: list[Entry] = []
        kpis: list[Entry] = []  # after the raw rounds, so that KPIs never split a round in two
        round_: list[Submission] = []  # raw parts of one device round, stored as one record
        for it in items:
            if it.kind not in ("raw", "kpi"):
                raise ValueError(f"submit: kind must be 'raw' or 'kpi', got {it.kind!r}")
            if it.kind == "kpi":
                kpis.append((it.kind, placement_of(it.asset, it.window or self._kpi_window), it.batch))
                continue
            if round_ and not _same_round(round_[-1].batch, it.batch):
                entries.append(_round_entry(round_))
                round_ = []
            round_.append(it)
        if round_:
            entries.append(_round_entry(round_))
        entries += kpis
        await self.buffer.append_many(entries)

    async def flush(self, within: float) -> bool:
        """Wait until every sink confirmed everything buffered; False if ``within`` s passed first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while any(s.backlog for s in self._stats.sinks.values()):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    def publish_status(self, asset: AssetConfig, state: str, **details: Any) -> None:
        """Retained ``.../{asset}/status`` message on every MQTT sink (no-op without MQTT)."""
        for s in self.sinks:
            if isinstance(s, MqttSink):
                s.publish_status(placement_of(asset), state, **details)

    @property
    def stats(self) -> DeliveryStats:
        for s in self.sinks:
            self._stats.sinks[s.name].connected = s.connected
        return self._stats


def _same_round(a: SampleBatch, b: SampleBatch) -> bool:
    """Parts of one device batch: same device, the very same timestamps, no tag in both."""
    return a.device == b.device and a.ts is b.ts and a.values.keys().isdisjoint(b.values)


def _round_entry(parts: list[Submission]) -> Entry:
    """One device round's raw parts as one buffer entry: one encode and one row for every asset
    instead of one each (the sinks still send one message per asset)."""
    if len(parts) == 1:
        return ("raw", placement_of(parts[0].asset), parts[0].batch)
    segments = tuple((placement_of(p.asset), len(p.batch.values)) for p in parts)
    return ("raw", segments, tuple(p.batch for p in parts))

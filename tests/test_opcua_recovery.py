"""Recovery: server restarts, a half-open link, and one dead device among live ones.

The devices run under the real runtime (DevicePoller in a TaskGroup), so what is checked
is what an operator would see: gaps marked Bad, one log line per outage, subscriptions
back after every restart, and never a Good sample carrying a value from before the gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from test_opcua_support import (
    EXTRA_NAMESPACES,
    FreezableProxy,
    PlantServer,
    free_port,
    node_id,
    start_plant_server,
)

from edge_agent.batch import Quality, SampleBatch, now_ns
from edge_agent.drivers.opcua import OpcUaDeviceConfig, OpcUaDriver
from edge_agent.drivers.opcua._ua import ua
from edge_agent.runtime.poller import DevicePoller


def device(name: str, endpoint: str, tags: list[dict[str, Any]], **extra: Any) -> OpcUaDeviceConfig:
    return OpcUaDeviceConfig.model_validate(
        {
            "name": name,
            "driver": "opcua",
            "endpoint": endpoint,
            "poll_interval": "100ms",
            "timeout": "1s",
            "keepalive": "500ms",
            "backoff_max": "300ms",
            **extra,
            "tags": tags,
        }
    )


@dataclass
class Sink:
    """What the runtime hands downstream, per device."""

    batches: dict[str, list[SampleBatch]] = field(default_factory=dict)

    def handler(self, name: str) -> Any:
        async def handle(batch: SampleBatch) -> None:
            self.batches.setdefault(name, []).append(batch)

        return handle

    def joined(self, name: str) -> SampleBatch:
        return SampleBatch.concat(self.batches[name])


@contextlib.asynccontextmanager
async def running(pollers: list[DevicePoller]) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(p.run()) for p in pollers]
    try:
        yield
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        for p in pollers:
            await p.driver.close()


async def ticker(plant: PlantServer, incarnation: int) -> None:
    """Server-side process value: incarnation * 1000 + count, so staleness is visible."""
    k = 0
    while True:
        k += 1
        await plant.cnc["power_kw"].write_value(float(incarnation * 1000 + k))
        await plant.cnc["parts"].write_value(ua.Variant(incarnation * 1000 + k, ua.VariantType.UInt32))
        await asyncio.sleep(0.05)


async def test_three_server_restarts_restore_polls_and_subscriptions(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="edge_agent")
    port = free_port()
    endpoint = f"opc.tcp://127.0.0.1:{port}"
    polled = device("polled", endpoint, [{"name": "parts", "asset": "cnc1", "node_id": node_id("parts")}])
    subscribed = device(
        "subscribed",
        endpoint,
        [{"name": "power", "asset": "cnc1", "role": "power", "unit": "kW", "node_id": node_id("power_kw")}],
        mode="subscribe",
        groups={},
    )
    sink = Sink()
    drivers = [OpcUaDriver(polled), OpcUaDriver(subscribed)]
    pollers = [DevicePoller(d, sink.handler(d.name), backoff_initial=0.05) for d in drivers]
    alive: list[tuple[int, int, int]] = []  # (incarnation, start ns, stop ns)
    ns_indexes = []
    async with running(pollers):
        for incarnation in range(1, 5):
            # Each incarnation registers a different number of namespaces first: the index moves.
            plant = await start_plant_server(port, extra_namespaces=EXTRA_NAMESPACES[: incarnation % 3])
            ns_indexes.append(plant.ns)
            started = now_ns()
            tick = asyncio.create_task(ticker(plant, incarnation))
            await asyncio.sleep(1.2)
            tick.cancel()
            await plant.server.stop()
            stopped = now_ns()  # the server answers reads until stop() has returned
            alive.append((incarnation, started, stopped))
            await asyncio.sleep(0.4)  # the outage (plus the next server's start-up time)

    assert len(set(ns_indexes)) == 3, ns_indexes
    for name, tagname in (("polled", "parts"), ("subscribed", "power")):
        batch = sink.joined(name)
        good = batch.good(tagname)
        ts, values = batch.ts[good], batch.values[tagname][good].astype(np.int64)
        for incarnation, start, stop in alive:
            inside = (ts >= start) & (ts <= stop)
            assert inside.sum() >= 3, f"{name}: too few good samples in incarnation {incarnation}"
            # No stale value: a Good sample always holds the value of the server alive at its time.
            assert np.all(values[inside] // 1000 == incarnation), (
                f"{name}: stale value in incarnation {incarnation}"
            )
        outside = np.ones(ts.shape, bool)
        for _, start, stop in alive:
            outside &= ~((ts >= start) & (ts <= stop))
        assert not outside.any(), f"{name}: Good samples while no server was running"
        bad_ts = batch.ts[batch.quality[tagname] == Quality.BAD]
        for (_, _, stop), (_, nxt, _) in itertools.pairwise(alive):
            assert ((bad_ts > stop) & (bad_ts < nxt)).any(), f"{name}: gap after {stop} not marked Bad"
    for poller in pollers:
        assert poller.stats.reconnects >= 3
    # One error line per outage and device; the retries in between log at debug level.
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("edge_agent")]
    # Outages: before the first start, three restarts, after the last stop.
    assert len(errors) == 2 * 5, [r.getMessage() for r in errors]
    recovered = [r for r in caplog.records if "recovered after" in r.getMessage()]
    assert len(recovered) == 2 * 4


async def test_half_open_link_is_detected_by_the_keepalive_watchdog() -> None:
    plant = await start_plant_server()
    proxy = FreezableProxy(plant.port)
    await proxy.start()
    cfg = device(
        "via-proxy",
        f"opc.tcp://127.0.0.1:{proxy.port}",
        [
            {"name": "parts", "asset": "cnc1", "node_id": node_id("parts")},
            {"name": "power", "asset": "cnc1", "node_id": node_id("power_kw"), "mode": "subscribe"},
        ],
        poll_interval="200ms",
    )
    sink = Sink()
    poller = DevicePoller(OpcUaDriver(cfg), sink.handler("via-proxy"), backoff_initial=0.05)
    try:
        async with running([poller]):
            await asyncio.sleep(0.8)
            frozen_at = now_ns()
            proxy.frozen = True  # packets vanish; no FIN, no RST: only a watchdog can tell
            await asyncio.sleep(2.0)
            thawed_at = now_ns()
            proxy.frozen = False
            await asyncio.sleep(2.0)
    finally:
        await proxy.stop()
        await plant.server.stop()
    batch = sink.joined("via-proxy")
    bad = batch.ts[batch.quality["parts"] == Quality.BAD]
    assert ((bad > frozen_at) & (bad < thawed_at)).any(), "the frozen link was never marked Bad"
    assert poller.stats.reconnects >= 1
    good_after = batch.ts[batch.good("parts")] > thawed_at
    assert good_after.sum() >= 3, "polling did not resume after the link came back"
    power_after = batch.ts[batch.good("power")] > thawed_at
    assert power_after.any(), "the subscription was not re-created"


async def test_a_dead_device_does_not_disturb_the_others() -> None:
    plant = await start_plant_server()
    live = device("live", plant.endpoint, [{"name": "parts", "asset": "cnc1", "node_id": node_id("parts")}])
    dead = device(
        "dead", f"opc.tcp://127.0.0.1:{free_port()}", [{"name": "x", "asset": "cnc1", "node_id": "i=1"}]
    )
    sink = Sink()
    pollers = [DevicePoller(OpcUaDriver(c), sink.handler(c.name), backoff_initial=0.05) for c in (live, dead)]
    try:
        async with running(pollers):
            await asyncio.sleep(1.5)
    finally:
        await plant.server.stop()
    good = sink.joined("live").good("parts")
    assert good.sum() >= 10 and good.all()  # 100 ms polls, none lost to the dead neighbour
    dead_batch = sink.joined("dead")
    assert len(dead_batch) >= 2 and (dead_batch.quality["x"] == Quality.BAD).all()
    assert pollers[1].stats.last_error is not None and "dead" in pollers[1].stats.last_error

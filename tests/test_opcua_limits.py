"""Operation limits: a server enforcing small MaxNodesPerRead / MaxMonitoredItemsPerCall.

asyncua's server never refuses large requests, so the support module makes it enforce the
limits the way PLC servers do (BadTooManyOperations), and records every request size.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from test_opcua_support import NS, Limits, PlantServer, advertise, plant_server

from edge_agent.batch import SampleBatch
from edge_agent.drivers.opcua import OpcUaDeviceConfig, OpcUaDriver

pytestmark = pytest.mark.asyncio(loop_scope="module")
N_POLLED, N_SUBSCRIBED = 40, 12
MAX_READ, MAX_ITEMS = 7, 5


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def limited() -> AsyncIterator[PlantServer]:
    limits = Limits(max_nodes_per_read=MAX_READ, max_monitored_items_per_call=MAX_ITEMS)
    async with plant_server(bulk=N_POLLED + N_SUBSCRIBED, limits=limits, first_value=1000.0) as plant:
        yield plant


def bulk_device(plant: PlantServer, **extra: Any) -> OpcUaDeviceConfig:
    tags = [
        {"name": f"v{i}", "asset": "cnc1", "node_id": f"nsu={NS};s=bulk.{i}"}
        | ({"mode": "subscribe"} if i >= N_POLLED else {})
        for i in range(N_POLLED + N_SUBSCRIBED)
    ]
    base = {"name": "big", "driver": "opcua", "endpoint": plant.endpoint, "poll_interval": "100ms"}
    return OpcUaDeviceConfig.model_validate({**base, **extra, "tags": tags})


async def read_all(driver: OpcUaDriver) -> SampleBatch:
    batches = [await driver.read()]
    await asyncio.sleep(0.4)  # initial notifications of the subscribed items
    batches.append(await driver.read())
    return SampleBatch.concat(batches)


def assert_every_node_read(batch: SampleBatch) -> None:
    for i in range(N_POLLED + N_SUBSCRIBED):
        good = batch.values[f"v{i}"][batch.good(f"v{i}")]
        assert good.size >= 1 and (good == 1000.0 + i).all(), f"v{i}: {good}"


async def test_advertised_limits_split_reads_and_monitored_items(limited: PlantServer) -> None:
    limits = limited.limits
    assert limits is not None
    limits.read_sizes.clear()
    limits.item_call_sizes.clear()
    async with OpcUaDriver(bulk_device(limited)) as driver:
        conn = driver.connection
        assert conn is not None and conn.limits.max_nodes_per_read == MAX_READ
        assert conn.limits.max_monitored_items_per_call == MAX_ITEMS
        batch = await read_all(driver)
        plan = driver.describe_plan()
    assert_every_node_read(batch)
    assert max(limits.read_sizes) <= MAX_READ and max(limits.item_call_sizes) <= MAX_ITEMS
    assert sum(limits.item_call_sizes) == N_SUBSCRIBED
    assert f"{N_POLLED} polled node(s) in 6 Read request(s) of <= {MAX_READ}" in plan


async def test_unadvertised_limits_are_found_by_halving(
    limited: PlantServer, caplog: pytest.LogCaptureFixture
) -> None:
    limits = limited.limits
    assert limits is not None
    limits.advertise = False
    await advertise(limited.server, limits)  # the server now claims no limit but still enforces it
    limits.read_sizes.clear()
    limits.item_call_sizes.clear()
    try:
        async with OpcUaDriver(bulk_device(limited)) as driver:
            assert driver.connection is not None and driver.connection.limits.max_nodes_per_read == 0
            batch = await read_all(driver)
            again = await driver.read()
    finally:
        limits.advertise = True
        await advertise(limited.server, limits)
    assert_every_node_read(batch)
    assert again.good("v0").all()
    # Refused requests were halved until accepted, then the smaller size stuck for the session.
    assert N_POLLED in limits.read_sizes and max(limits.read_sizes[-6:]) <= MAX_READ
    assert N_SUBSCRIBED in limits.item_call_sizes
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("BadTooManyOperations" in w and "max_nodes_per_read" in w for w in warnings)
    assert any("BadTooManyOperations" in w and "max_monitored_items_per_call" in w for w in warnings)


async def test_configured_cap_below_the_server_limit(limited: PlantServer) -> None:
    limits = limited.limits
    assert limits is not None
    limits.read_sizes.clear()
    limits.item_call_sizes.clear()
    async with OpcUaDriver(
        bulk_device(limited, max_nodes_per_read=3, max_monitored_items_per_call=2)
    ) as driver:
        batch = await read_all(driver)
    assert_every_node_read(batch)
    assert max(limits.read_sizes[1:]) <= 3  # [0] is the connect-time read of limits and namespaces
    assert max(limits.item_call_sizes) <= 2


async def test_a_server_allowing_one_node_per_read(limited: PlantServer) -> None:
    limits = limited.limits
    assert limits is not None
    limits.max_nodes_per_read = 1
    await advertise(limited.server, limits)
    limits.read_sizes.clear()
    try:
        cfg = bulk_device(limited)
        cfg = cfg.model_copy(update={"tags": cfg.tags[:3]})
        async with OpcUaDriver(cfg) as driver:  # even the connect-time read must respect it
            batch = await driver.read()
    finally:
        limits.max_nodes_per_read = MAX_READ
        await advertise(limited.server, limits)
    assert [float(batch.values[f"v{i}"][0]) for i in range(3)] == [1000.0, 1001.0, 1002.0]
    assert set(limits.read_sizes) <= {1, 6} and limits.read_sizes.count(6) == 1  # refused once, then 1 by 1

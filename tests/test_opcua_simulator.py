"""The OPC UA driver against the bundled plant simulator (simulators.Simulator).

The device config is built from ``simulators.opcua_nodes()``, the same catalogue the demo
config comes from, so every node the simulator serves is read here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import pytest_asyncio

import edge_agent_simulators as simulators
from edge_agent.batch import Quality, SampleBatch, now_ns
from edge_agent.config import parse_config
from edge_agent.drivers.opcua import OpcUaDeviceConfig, OpcUaDriver
from edge_agent.drivers.opcua._ua import ua
from edge_agent.opcua_tools import browse, config_yaml
from edge_agent.runtime.poller import DevicePoller

pytestmark = pytest.mark.asyncio(loop_scope="module")
NODES = simulators.opcua_nodes()
SIM_NS = NODES[0].node_id.split(";", 1)[0].removeprefix("nsu=")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sim() -> AsyncIterator[simulators.Simulator]:
    async with simulators.Simulator(seed=7, modbus_port=None, opcua_port=0, tick_s=0.1) as s:
        yield s


def plant_device(sim: simulators.Simulator, **extra: Any) -> OpcUaDeviceConfig:
    tags = [
        {
            "name": f"{n.asset}.{n.signal}",
            "asset": n.asset,
            "role": n.role,
            "unit": n.unit,
            "node_id": n.node_id,
            # Counters are raw UInt32 counts (scale for analytics); analog nodes are already in units.
            "scale": n.scale if n.role.endswith("_counter") else 1.0,
        }
        for n in NODES
    ]
    assert sim.opcua_endpoint is not None
    base = {"name": "plant-ua", "driver": "opcua", "endpoint": sim.opcua_endpoint, "poll_interval": "200ms"}
    return OpcUaDeviceConfig.model_validate({**base, **extra, "tags": tags})


async def test_every_node_matches_the_simulator_snapshot(sim: simulators.Simulator) -> None:
    await sim.pause()
    try:
        snapshot = sim.snapshot()
        async with OpcUaDriver(plant_device(sim)) as driver:
            batch = await driver.read()
    finally:
        await sim.resume()
    assert len(batch) == 1 and len(batch.tags) == len(NODES)
    for n in NODES:
        name = f"{n.asset}.{n.signal}"
        assert batch.quality[name][0] == Quality.GOOD, name
        expected = snapshot.values[f"{n.asset}.{n.signal}"]
        if n.role.endswith("_counter"):
            assert batch.values[name].dtype == np.int64 and int(batch.values[name][0]) == expected, name
        else:
            assert batch.values[name][0] == pytest.approx(expected, rel=1e-9, abs=1e-9), name


async def test_subscriptions_follow_the_simulator_with_its_timestamps(sim: simulators.Simulator) -> None:
    cfg = plant_device(sim, mode="subscribe", groups={})
    async with OpcUaDriver(cfg) as driver:
        start = now_ns()
        batches = []
        for _ in range(8):
            await asyncio.sleep(0.2)
            batches.append(await driver.read())
        end = now_ns()
    batch = SampleBatch.concat([b for b in batches if len(b)])
    assert len(batch) >= 5  # one row per simulator tick that changed something
    lag = round((cfg.poll_interval + cfg.poll_interval) * 1e9)  # publishing + sampling interval
    assert np.all(np.diff(batch.ts) >= 0) and batch.ts[-1] <= end and batch.ts[1] >= start - lag
    energy = batch.values["cnc1.energy_kwh"][batch.good("cnc1.energy_kwh")]
    assert energy.size >= 1 and np.all(np.diff(energy) >= 0)  # an energy counter only counts up
    for n in NODES:
        name = f"{n.asset}.{n.signal}"
        assert batch.good(name).any(), f"{name}: no initial value"


async def test_bad_status_from_the_simulator_is_never_a_number(sim: simulators.Simulator) -> None:
    cfg = plant_device(sim)
    async with OpcUaDriver(cfg) as driver:
        fault = sim.opcua_set_status("cnc1.power_kw", "BadSensorFailure")
        await asyncio.sleep(0.3)
        failed = await driver.read()
        fault.clear()
        await asyncio.sleep(0.3)
        recovered = await driver.read()
    assert failed.quality["cnc1.power_kw"][0] == Quality.BAD
    assert np.isnan(failed.values["cnc1.power_kw"][0])
    assert int(failed.status["cnc1.power_kw"][0]) == ua.StatusCodes.BadSensorFailure
    assert failed.quality["imm1.power_kw"][0] == Quality.GOOD  # only the faulted node
    assert recovered.quality["cnc1.power_kw"][0] == Quality.GOOD


async def test_browse_the_simulator_into_a_valid_config(sim: simulators.Simulator) -> None:
    assert sim.opcua_endpoint is not None
    root = await browse(sim.opcua_endpoint, depth=4)
    text = config_yaml(root, sim.opcua_endpoint)
    dev = parse_config(text).devices[0]
    assert isinstance(dev, OpcUaDeviceConfig)
    assert {t.node_id for t in dev.tags} >= {n.node_id for n in NODES}
    by_path = plant_device(sim).model_copy(
        update={
            "namespace": SIM_NS,
            "tags": [
                dev.tags[0].model_copy(
                    update={"name": "via_path", "node_id": None, "browse_path": "Plant/cnc1/power_kw"}
                )
            ],
        }
    )
    async with OpcUaDriver(by_path) as driver:
        batch = await driver.read()
    assert batch.quality["via_path"][0] == Quality.GOOD


async def test_simulator_restart_is_bridged_by_the_runtime(sim: simulators.Simulator) -> None:
    cfg = plant_device(sim, timeout="1s", keepalive="500ms", backoff_max="300ms", mode="subscribe", groups={})
    seen: list[SampleBatch] = []

    async def handle(batch: SampleBatch) -> None:
        seen.append(batch)

    poller = DevicePoller(OpcUaDriver(cfg), handle, backoff_initial=0.05)
    task = asyncio.create_task(poller.run())
    try:
        await asyncio.sleep(1.0)
        down = now_ns()
        await sim.restart_opcua(down_s=0.8)
        up = now_ns()
        await asyncio.sleep(1.5)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await poller.driver.close()
    batch = SampleBatch.concat(seen)
    name = "cnc1.power_kw"
    bad = batch.ts[batch.quality[name] == Quality.BAD]
    assert ((bad >= down) & (bad <= up)).any(), "the restart gap is not marked Bad"
    good = batch.ts[batch.good(name)]
    assert (good > up).any(), "the subscription did not come back after the restart"
    assert not ((good > down) & (good < up)).any(), "Good samples while the server was down"
    assert poller.stats.reconnects >= 1

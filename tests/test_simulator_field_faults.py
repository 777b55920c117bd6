"""Field faults of the simulator (issue #12): device restarts that reset counters to a
non-zero value or jump them, another PLC's state codes, OPC UA nodes that never change.
Each is checked through real clients, and the truth must keep counting through it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from asyncua import ua
from asyncua.client.client import Client
from pymodbus.exceptions import ModbusIOException
from test_simulator_servers import decode, holding, modbus_client, nid, opcua_session, read_block

from edge_agent_simulators.host import Simulator
from edge_agent_simulators.plant import PlantModel

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def sim() -> AsyncIterator[Simulator]:
    codes = {"imm1": {"off": 10, "idle": 11, "setup": 12, "producing": 2, "fault": 99}}
    async with Simulator(seed=5, time_scale=240.0, modbus_port=0, opcua_port=0, state_codes=codes) as s:
        yield s


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def opc(sim: Simulator) -> AsyncIterator[tuple[Client, int]]:
    async with opcua_session(sim) as session:
        yield session


async def test_restart_that_reloads_a_stale_non_zero_count(sim: Simulator, opc: tuple[Client, int]) -> None:
    client, ns = opc
    mb = await modbus_client(sim)
    try:
        before = sim.truth()["cnc1"]
        changed = await sim.restart_device("cnc1", counters="reset", down_s=0.3)
        assert set(changed) == {
            "energy_kwh",
            "reactive_energy_kvarh",
            "good_parts",
            "scrap_parts",
            "material_kg",
        }
        for name, (was, now) in changed.items():
            assert 0 < now < was, name  # a fall to a non-zero value, not to 0
        await sim.pause()
        try:
            t = sim.truth()["cnc1"]
            raw = decode(holding("cnc1", "energy_kwh"), await read_block(mb, 1, "holding"))
            assert raw == t.expected_counter("energy_kwh")
            assert await client.get_node(nid("cnc1.energy_kwh", ns)).read_value() == raw
            assert t.energy_kwh > before.energy_kwh  # the truth counted through the restart
        finally:
            await sim.resume()
    finally:
        mb.close()


async def test_restart_that_jumps_the_counters_and_is_silent_meanwhile(sim: Simulator) -> None:
    mb = await modbus_client(sim)
    try:
        task = asyncio.create_task(sim.restart_device("imm1", counters="jump", down_s=0.6))
        await asyncio.sleep(0.2)
        with pytest.raises(ModbusIOException):  # down: the unit does not answer
            await mb.read_holding_registers(0, count=2, device_id=2)
        changed = await task
        for was, now in changed.values():
            assert now >= 2**32 - 4 - 50 and was < now  # jumped up near the top
    finally:
        mb.close()


async def test_another_plcs_state_codes_are_served_and_the_truth_keeps_labels(sim: Simulator) -> None:
    served = {int(sim.snapshot().value("imm1", "state"))}
    for _ in range(20):
        await asyncio.sleep(0.1)
        served.add(int(sim.snapshot().value("imm1", "state")))
    assert served <= {10, 11, 12, 2, 99}
    assert set(sim.truth()["imm1"].seconds_by_state) == {"off", "idle", "setup", "producing", "fault"}
    with pytest.raises(ValueError, match="state_codes"):
        PlantModel(seed=1, state_codes={"cnc1": {"running": 3}})


async def test_a_frozen_opcua_node_never_changes_until_cleared(
    sim: Simulator, opc: tuple[Client, int]
) -> None:
    client, ns = opc
    node = client.get_node(nid("main.power_kw", ns))
    with sim.opcua_freeze("main.power_kw"):
        first = await node.read_data_value()
        await asyncio.sleep(0.5)
        second = await node.read_data_value()
        assert first.Value == second.Value and first.SourceTimestamp == second.SourceTimestamp
    await asyncio.sleep(0.3)
    third = await node.read_data_value()
    assert third.SourceTimestamp != first.SourceTimestamp
    assert third.StatusCode is not None and third.StatusCode.value == ua.StatusCodes.Good

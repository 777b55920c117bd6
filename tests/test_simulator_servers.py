"""The live simulator through real clients: pymodbus and asyncua against our servers.

One Simulator (both servers) serves the whole module, because asyncua takes ~1.5 s to
start. Tests that inject faults undo them before they finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.ua.uaerrors import UaError
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusIOException

from edge_agent_simulators.catalog import ASSETS, UNIT_IDS, RegisterEntry, opcua_nodes, register_map
from edge_agent_simulators.host import Simulator

pytestmark = pytest.mark.asyncio(loop_scope="module")

NS_URI = "urn:edge-agent:simulator"
T0 = time.time()


def decode(entry: RegisterEntry, words: list[int]) -> float | int:
    chunk = words[entry.address : entry.address + entry.count]
    raw = struct.pack(f">{entry.count}H", *chunk)
    if entry.data_type == "float32":
        return float(struct.unpack(">f", raw)[0])
    return int.from_bytes(raw, "big")


def nid(key: str, ns: int) -> ua.NodeId:
    return ua.NodeId(ua.String(key), ua.Int16(ns))


async def status_and_value(node: Node) -> tuple[ua.StatusCode, Any]:
    dv = await node.read_data_value(raise_on_bad_status=False)
    assert dv.StatusCode is not None and dv.Value is not None
    return dv.StatusCode, dv.Value.Value


def holding(asset: str, name: str) -> RegisterEntry:
    return next(e for e in register_map() if (e.asset, e.signal, e.register_type) == (asset, name, "holding"))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(seed=42, time_scale=240.0, modbus_port=0, opcua_port=0) as s:
        yield s


@contextlib.asynccontextmanager
async def opcua_session(sim: Simulator) -> AsyncIterator[tuple[Client, int]]:
    """An OPC UA client on the simulator and the index of its namespace."""
    assert sim.opcua_endpoint is not None
    client = Client(sim.opcua_endpoint, timeout=4)
    await client.connect()
    try:
        yield client, await client.get_namespace_index(NS_URI)
    finally:
        with contextlib.suppress(TimeoutError, ConnectionError, OSError, UaError):
            await client.disconnect()  # a restart test may have replaced the server under it


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def opc(sim: Simulator) -> AsyncIterator[tuple[Client, int]]:
    async with opcua_session(sim) as session:
        yield session


async def modbus_client(sim: Simulator, **kw: Any) -> AsyncModbusTcpClient:
    assert sim.modbus_port is not None
    args: dict[str, Any] = {"timeout": 0.5, "retries": 0, "reconnect_delay": 0.1}
    args.update(kw)
    client = AsyncModbusTcpClient("127.0.0.1", port=sim.modbus_port, **args)
    assert await client.connect()
    return client


async def read_block(client: AsyncModbusTcpClient, unit: int, kind: str) -> list[int]:
    words = sum(e.count for e in register_map() if e.unit_id == unit and e.register_type == "holding")
    read = client.read_holding_registers if kind == "holding" else client.read_input_registers
    rr = await read(0, count=words, device_id=unit)
    assert not rr.isError(), rr
    return list(rr.registers)


async def read_all_modbus(client: AsyncModbusTcpClient) -> dict[tuple[str, str, str], float | int]:
    blocks = {(u, k): await read_block(client, u, k) for u in UNIT_IDS.values() for k in ("holding", "input")}
    return {
        (e.asset, e.signal, e.register_type): decode(e, blocks[(e.unit_id, e.register_type)])
        for e in register_map()
    }


async def read_all_opcua(client: Client, ns: int) -> dict[tuple[str, str], Any]:
    nodes = opcua_nodes()
    values = await client.read_values([client.get_node(nid(f"{n.asset}.{n.signal}", ns)) for n in nodes])
    return {(n.asset, n.signal): v for n, v in zip(nodes, values, strict=True)}


# ---- one plant, two protocols ------------------------------------------------------------------------
async def test_modbus_and_opcua_show_the_same_plant_at_the_same_moment(
    sim: Simulator, opc: tuple[Client, int]
) -> None:
    client, ns = opc
    mb = await modbus_client(sim)
    try:
        for _ in range(3):  # three different moments
            await asyncio.sleep(0.7)
            await sim.pause()
            try:
                regs = await read_all_modbus(mb)
                nodes = await read_all_opcua(client, ns)
                snap = sim.snapshot().values
            finally:
                await sim.resume()
            for (asset, name), value in nodes.items():
                holding, inp = regs[(asset, name, "holding")], regs[(asset, name, "input")]
                assert holding == inp, (asset, name)  # input registers mirror holding registers
                if isinstance(value, float):
                    assert np.float32(value) == np.float32(holding), (asset, name)
                    assert value == snap[f"{asset}.{name}"]
                else:
                    assert value == holding == snap[f"{asset}.{name}"], (asset, name)
        assert regs[("main", "power_kw", "holding")] > regs[("cnc1", "power_kw", "holding")]
    finally:
        mb.close()


async def test_plant_moves_while_running_and_holds_while_paused(sim: Simulator) -> None:
    entry = holding("main", "energy_kwh")  # the main meter always draws > 10 kW
    mb = await modbus_client(sim)
    try:
        e1 = decode(entry, await read_block(mb, 4, "holding"))
        await asyncio.sleep(1.0)
        await sim.pause()
        try:
            e2 = decode(entry, await read_block(mb, 4, "holding"))
            t_paused = sim.truth().time
            await asyncio.sleep(0.5)
            e3 = decode(entry, await read_block(mb, 4, "holding"))
            assert sim.truth().time == t_paused
        finally:
            await sim.resume()
        assert e2 != e1 and e3 == e2
    finally:
        mb.close()


async def test_counters_match_the_truth_to_one_count(sim: Simulator) -> None:
    mb = await modbus_client(sim)
    try:
        await sim.pause()
        try:
            regs = await read_all_modbus(mb)
            truth = sim.truth()
        finally:
            await sim.resume()
        checked = 0
        for asset in ASSETS:
            for name in truth[asset].counter_initial or {}:
                assert abs(int(regs[(asset, name, "holding")]) - truth[asset].expected_counter(name)) <= 1
                checked += 1
        assert checked == 4 * 2 + 2 * 3  # kWh + kvarh everywhere, parts and material on machines
        for asset in ASSETS:
            t = truth[asset]
            assert sum(t.energy_kwh_by_state.values()) == pytest.approx(t.energy_kwh, rel=1e-12)
    finally:
        mb.close()


# ---- OPC UA address space ----------------------------------------------------------------------------
async def test_opcua_nodes_browse_types_units_and_timestamps(sim: Simulator, opc: tuple[Client, int]) -> None:
    client, ns = opc
    for n in opcua_nodes():
        node = client.get_node(nid(f"{n.asset}.{n.signal}", ns))
        assert (await node.read_data_type_as_variant_type()).name == n.data_type
        by_path = await client.nodes.objects.get_child([f"{ns}:Plant", f"{ns}:{n.asset}", f"{ns}:{n.signal}"])
        assert by_path.nodeid == node.nodeid
        props = {(await p.read_browse_name()).Name: p for p in await node.get_properties()}
        if n.unece_code is None:
            assert "EngineeringUnits" not in props
            continue
        eu = await props[ua.String("EngineeringUnits")].read_value()
        assert eu.NamespaceUri == "http://www.opcfoundation.org/UA/units/un/cefact"
        assert eu.UnitId == int.from_bytes(n.unece_code.encode(), "big")
    power = client.get_node(nid("cnc1.power_kw", ns))
    eu = await (await power.get_child(["0:EngineeringUnits"])).read_value()
    assert eu.DisplayName.Text == "kW" and eu.UnitId == 4937556  # "KWT"
    dv = await power.read_data_value()
    assert dv.SourceTimestamp is not None
    assert abs((datetime.now(UTC) - dv.SourceTimestamp.replace(tzinfo=UTC)).total_seconds()) < 3


async def test_opcua_bad_and_uncertain_status_then_good_again(
    sim: Simulator, opc: tuple[Client, int]
) -> None:
    client, ns = opc
    power = client.get_node(nid("cnc1.power_kw", ns))
    flow = client.get_node(nid("comp1.air_flow_m3min", ns))
    bad = sim.opcua_set_status("cnc1.power_kw", "BadSensorFailure")
    uncertain = sim.opcua_set_status(f"nsu={NS_URI};s=comp1.air_flow_m3min", 0x40920000)
    try:
        await asyncio.sleep(0.25)  # a few ticks: the fault must survive re-publishing
        status, value = await status_and_value(power)
        assert status.name == "BadSensorFailure" and value is None
        status, value = await status_and_value(flow)
        assert status.is_uncertain() and isinstance(value, float)
        status, _ = await status_and_value(client.get_node(nid("imm1.power_kw", ns)))
        assert status.is_good()
    finally:
        bad.clear()
        uncertain.clear()
    await asyncio.sleep(0.25)
    assert (await status_and_value(power))[0].is_good()
    assert (await status_and_value(flow))[0].is_good()
    with pytest.raises(KeyError, match="has no signal 'nope'"):
        sim.opcua_set_status("cnc1.nope", "BadSensorFailure")
    with pytest.raises(ValueError, match="unknown OPC UA status name 'Broken'"):
        sim.opcua_set_status("cnc1.power_kw", "Broken")


# ---- Modbus faults -------------------------------------------------------------------------------------
async def test_modbus_timeout_for_one_unit_only(sim: Simulator) -> None:
    mb = await modbus_client(sim)
    try:
        with sim.modbus_timeout("comp1"):
            t = time.monotonic()
            with pytest.raises(ModbusIOException, match="No response"):
                await mb.read_holding_registers(0, count=2, device_id=3)
            assert time.monotonic() - t >= 0.45  # the client waited for its timeout
            assert not (await mb.read_holding_registers(0, count=2, device_id=1)).isError()
        rr = await mb.read_holding_registers(0, count=2, device_id=3)
        assert not rr.isError()
    finally:
        mb.close()


async def test_modbus_exception_for_a_register_range(sim: Simulator) -> None:
    mb = await modbus_client(sim)
    try:
        fault = sim.modbus_exception("cnc1", 6, 4, code=0x02)  # good + scrap parts
        try:
            rr = await mb.read_holding_registers(0, count=13, device_id=1)
            assert rr.isError() and rr.exception_code == 0x02
            rr = await mb.read_input_registers(8, count=1, device_id=1)
            assert rr.isError() and rr.exception_code == 0x02
            assert not (await mb.read_holding_registers(0, count=6, device_id=1)).isError()
            assert not (await mb.read_holding_registers(10, count=3, device_id=1)).isError()
            assert not (await mb.read_holding_registers(0, count=13, device_id=2)).isError()
        finally:
            fault.clear()
        assert not (await mb.read_holding_registers(0, count=13, device_id=1)).isError()
        with sim.modbus_exception(4, 0, 2, code=0x04, register_type="input"):
            rr = await mb.read_input_registers(0, count=2, device_id=4)
            assert rr.isError() and rr.exception_code == 0x04
            assert not (await mb.read_holding_registers(0, count=2, device_id=4)).isError()
    finally:
        mb.close()


async def test_modbus_protocol_edges(sim: Simulator) -> None:
    mb = await modbus_client(sim)
    try:
        rr = await mb.read_holding_registers(0, count=2, device_id=9)
        assert rr.isError() and rr.exception_code == 0x0B  # unknown unit: gateway target failed
        rr = await mb.write_register(0, 1, device_id=1)
        assert rr.isError() and rr.exception_code == 0x02  # meters are read-only
        rr = await mb.read_holding_registers(12, count=2, device_id=1)
        assert rr.isError() and rr.exception_code == 0x02  # past the end of cnc1's map
        rr = await mb.read_coils(0, count=1, device_id=1)
        assert rr.isError() and rr.exception_code == 0x01
    finally:
        mb.close()


async def test_dropped_connections_are_seen_and_the_client_reconnects(sim: Simulator) -> None:
    mb = await modbus_client(sim)
    try:
        assert sim.drop_connections() >= 1
        await asyncio.sleep(0.05)
        with pytest.raises((ConnectionException, ModbusIOException)):
            await mb.read_holding_registers(0, count=2, device_id=1)
        await _reads_again(mb, "client did not reconnect")
    finally:
        mb.close()


async def test_modbus_restart_keeps_the_port(sim: Simulator) -> None:
    port = sim.modbus_port
    assert port is not None
    mb = await modbus_client(sim)
    try:
        restart = asyncio.create_task(sim.restart_modbus(down_s=0.5))
        await asyncio.sleep(0.2)
        probe = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=0.3, retries=0)
        assert not await probe.connect()  # down: connection refused
        probe.close()
        await restart
        assert sim.modbus_port == port
        fresh = await modbus_client(sim)
        assert not (await fresh.read_holding_registers(0, count=2, device_id=4)).isError()
        fresh.close()
        # the old client finds its way back by itself
        await _reads_again(mb, "client did not reconnect after restart")
    finally:
        mb.close()


async def test_counter_reset_shows_on_both_protocols_and_keeps_truth(
    sim: Simulator, opc: tuple[Client, int]
) -> None:
    client, ns = opc
    mb = await modbus_client(sim)
    node = client.get_node(nid("imm1.energy_kwh", ns))
    entry = holding("imm1", "energy_kwh")
    try:
        await sim.pause()
        try:
            before = sim.truth()["imm1"].energy_kwh
            assert decode(entry, await read_block(mb, 2, "holding")) > 0
            sim.counter_reset("imm1", "energy_kwh")
            assert decode(entry, await read_block(mb, 2, "holding")) == 0
            assert await node.read_value() == 0
            assert sim.truth()["imm1"].energy_kwh == before
        finally:
            await sim.resume()
        await asyncio.sleep(1.0)
        await sim.pause()
        try:
            raw = decode(entry, await read_block(mb, 2, "holding"))
            t = sim.truth()["imm1"]
            assert raw == t.expected_counter("energy_kwh")
            assert abs(raw - (t.energy_kwh - before) * 10_000) <= 1
        finally:
            await sim.resume()
    finally:
        mb.close()


async def test_opcua_restart_ends_sessions_and_serves_again(sim: Simulator) -> None:
    assert sim.opcua_endpoint is not None
    client = Client(sim.opcua_endpoint, timeout=2)
    await client.connect()
    ns = await client.get_namespace_index(NS_URI)
    node = client.get_node(nid("main.power_kw", ns))
    assert isinstance(await node.read_value(), float)
    await sim.restart_opcua()
    with pytest.raises((ConnectionError, asyncio.TimeoutError, UaError, OSError)):
        await node.read_value()  # the old session died with the server
    await client.disconnect()  # asyncua tolerates a dead connection here
    again = Client(sim.opcua_endpoint, timeout=2)
    await again.connect()
    try:
        value = await again.get_node(nid("main.power_kw", ns)).read_value()
        assert value == sim.snapshot().values["main.power_kw"] or value > 0
    finally:
        await again.disconnect()


# ---- runs last: by now the main meter has wrapped ---------------------------------------------------
async def test_main_meter_rolled_over_within_seconds_and_truth_is_continuous(sim: Simulator) -> None:
    mb = await modbus_client(sim)
    entry = next(
        e for e in register_map() if (e.asset, e.signal, e.register_type) == ("main", "energy_kwh", "input")
    )
    try:
        t = sim.truth()["main"]
        initial = t.counter_initial["energy_kwh"] if t.counter_initial else 0
        assert initial > 2**32 - 20_000  # it started just below 2^32
        wrap_kwh = (2**32 - initial) / 10_000  # truth energy at which the counter wraps
        assert wrap_kwh < 15 / 3600 * 40  # i.e. < 15 s at the plant's early load (< 40 kW)
        deadline = time.monotonic() + 15
        while sim.truth()["main"].energy_kwh <= wrap_kwh + 0.01:
            assert time.monotonic() < deadline, "main meter did not roll over"
            await asyncio.sleep(0.2)
        await sim.pause()
        try:
            raw = decode(entry, await read_block(mb, 4, "input"))
            t = sim.truth()["main"]
        finally:
            await sim.resume()
        assert raw < initial  # wrapped past 2^32 …
        assert raw == t.expected_counter("energy_kwh")  # … and still equals the truth
        assert raw == initial + int(t.energy_kwh * 10_000) - 2**32
    finally:
        mb.close()


async def test_serve_runs_until_cancelled_and_releases_the_port() -> None:
    from edge_agent_simulators.host import serve

    started: asyncio.Future[Simulator] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(modbus_port=0, opcua_port=None, seed=1, ready=started.set_result))
    live = await asyncio.wait_for(started, 10)
    assert live.opcua_port is None and live.modbus_port
    mb = await modbus_client(live)
    assert not (await mb.read_input_registers(0, count=8, device_id=4)).isError()
    mb.close()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    probe = AsyncModbusTcpClient("127.0.0.1", port=live.modbus_port, timeout=0.3, retries=0)
    assert not await probe.connect()
    probe.close()
    with pytest.raises(RuntimeError, match="without an OPC UA server"):
        live.opcua_set_status("cnc1.power_kw", "BadSensorFailure")


async def _reads_again(mb: AsyncModbusTcpClient, why: str, within: float = 5.0) -> None:
    """Poll until the client reads unit 1 again; fail with ``why`` after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        try:
            if not (await mb.read_holding_registers(0, count=2, device_id=1)).isError():
                return
        except (ConnectionException, ModbusIOException):
            pass
        assert time.monotonic() < deadline, why
        await asyncio.sleep(0.1)

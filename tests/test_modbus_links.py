"""Links shared between devices: units behind one Modbus TCP gateway, units on one serial line.

The runtime owns one LinkHub; devices on one host and port share a connection unless they opt
out, samples are stamped when their answer arrives (not before they waited for the line), and
a line on which no unit answers, or a port that cannot be configured, is explained as such.
"""

from __future__ import annotations

import asyncio
import types
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Literal

import pytest
from modbus_cases.harness import PlantServer
from pymodbus.client import AsyncModbusTcpClient
from test_modbus_serial import INTERVAL, on_one_hub, plant, poll_all, serial_pair, unit_config

from edge_agent.batch import Quality, SampleBatch
from edge_agent.config import AssetConfig
from edge_agent.config.loader import parse_config
from edge_agent.drivers.modbus import ModbusDriver, client_internals
from edge_agent.errors import DeviceConnectError, DriverError
from edge_agent.runtime.service import Agent

__all__ = ["serial_pair"]  # the socat fixture, re-exported for pytest


class Collector:
    """The agent's output, per device, as a sink would receive it."""

    def __init__(self) -> None:
        self.raw: dict[str, list[SampleBatch]] = defaultdict(list)

    async def submit(
        self,
        kind: Literal["raw", "kpi"],
        asset: AssetConfig,
        batch: SampleBatch,
        *,
        window: str | None = None,
    ) -> None:
        if kind == "raw":
            self.raw[batch.device].append(batch)


def gateway_config(port: int, units: list[int], **device: Any) -> str:
    devices = "\n".join(
        f"  - {{name: unit{u}, driver: modbus, host: 127.0.0.1, port: {port}, unit_id: {u}, "
        f"poll_interval: 50ms, timeout: 500ms, backoff_max: 1s, "
        + "".join(f"{k}: {v}, " for k, v in device.items())
        + f"tags: [{{name: v, asset: m{u}, address: 1}}]}}"
        for u in units
    )
    assets = "\n".join(
        f"  - {{id: m{u}, site: s, area: a, line: l, kind: meter, rated_power_kw: 10}}" for u in units
    )
    return f"agent: {{name: links-test}}\nassets:\n{assets}\ndevices:\n{devices}\n"


async def wait_until(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def run_agent(
    config: str, srv: PlantServer, check: Callable[[Collector], bool]
) -> tuple[int, Collector]:
    """Run an agent until ``check`` holds; return the server's connection count meanwhile."""
    out = Collector()
    agent = Agent(parse_config(config), sink=out)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await wait_until(lambda: check(out))
        connections = len(srv.server.active_connections)
    finally:
        stop.set()
        await task
    assert agent.links.open_links() == {}  # shutdown released every link
    return connections, out


def all_good(units: list[int], polls: int) -> Callable[[Collector], bool]:
    def check(out: Collector) -> bool:
        return all(
            sum(b.quality["v"][0] == Quality.GOOD for b in out.raw[f"unit{u}"]) >= polls for u in units
        )

    return check


async def test_four_unit_ids_behind_one_tcp_port_use_one_connection() -> None:
    units = [1, 2, 3, 4]
    srv = await PlantServer({u: {"holding": {0: [0, 100 * u]}} for u in units}).start()
    try:
        connections, out = await run_agent(gateway_config(srv.port, units), srv, all_good(units, 5))
    finally:
        await srv.stop()
    assert connections == 1
    for u in units:  # each unit got its own answers over the shared connection
        assert {
            float(b.values["v"][0]) for b in out.raw[f"unit{u}"] if b.quality["v"][0] == Quality.GOOD
        } == {100.0 * u}


async def test_a_gateway_with_parallel_connections_can_opt_out_of_sharing() -> None:
    units = [1, 2, 3]
    srv = await PlantServer({u: {"holding": {0: [0, 100 * u]}} for u in units}).start()
    try:
        config = gateway_config(srv.port, units, shared_connection="false")
        connections, _ = await run_agent(config, srv, all_good(units, 3))
    finally:
        await srv.stop()
    assert connections == 3


def test_shared_connection_false_is_refused_on_a_serial_line() -> None:
    with pytest.raises(ValueError, match="shared_connection: false applies to tcp only"):
        unit_config(1, {"transport": "serial", "serial_port": "/dev/ttyUSB0"}, shared_connection=False)


async def test_samples_on_a_shared_serial_line_are_stamped_after_their_value_existed(
    serial_pair: tuple[str, str],
) -> None:
    """A silent unit holds the line for its timeout; the others must not be stamped before they waited."""
    agent_end, plc_end = serial_pair
    srv = await plant([1, 2, 3, 4], serial_port=plc_end).start()
    srv.faults[4].silent = True
    line = {"transport": "serial", "serial_port": agent_end, "inter_frame_delay": "2ms"}
    drivers = on_one_hub([ModbusDriver(unit_config(u, line, timeout="150ms")) for u in (1, 2, 3, 4)])
    try:
        rows, _ = await poll_all(drivers, 2.0)
    finally:
        await srv.stop()
    checked = 0
    for u in (1, 2, 3):
        set_at = {value: t for t, value in srv.faults[u].counter_set}
        for b in rows[f"unit{u}"]:
            if b.quality["seq"][0] != Quality.GOOD:
                continue
            value = int(b.values["seq"][0])
            assert set_at[value] <= int(b.ts[0]), f"unit {u}: value {value} stamped before the device set it"
            checked += 1
    assert checked >= 0.5 * 3 * 2.0 / INTERVAL * 0.5  # the live units kept polling while unit 4 timed out


async def test_no_unit_answering_on_a_line_points_at_the_line(serial_pair: tuple[str, str]) -> None:
    agent_end, plc_end = serial_pair
    srv = await plant([1, 2], serial_port=plc_end).start()
    for u in (1, 2):
        srv.faults[u].silent = True
    line = {"transport": "serial", "serial_port": agent_end}
    drivers = on_one_hub([ModbusDriver(unit_config(u, line, timeout="100ms")) for u in (1, 2)])
    try:
        _, pollers = await poll_all(drivers, 1.0)
    finally:
        await srv.stop()
    errors = [p.stats.last_error or "" for p in pollers.values()]
    assert any("likely cause is the line's baud rate, parity or wiring" in e for e in errors), errors
    assert any("2 of 2 failing, silence" in e for e in errors), errors


async def test_garbled_replies_on_a_line_are_named_as_crc_or_framing_errors(
    serial_pair: tuple[str, str],
) -> None:
    """A line whose answers arrive with broken CRCs, as with noise or a wrong baud rate or parity."""
    agent_end, plc_end = serial_pair
    srv = await plant([1, 2], serial_port=plc_end).start()
    for u in (1, 2):
        srv.faults[u].corrupt = True
    line = {"transport": "serial", "serial_port": agent_end}
    drivers = on_one_hub([ModbusDriver(unit_config(u, line, timeout="100ms")) for u in (1, 2)])
    try:
        rows, pollers = await poll_all(drivers, 1.0)
    finally:
        await srv.stop()
    assert not any(b.quality["v"][0] == Quality.GOOD for batches in rows.values() for b in batches)
    errors = [p.stats.last_error or "" for p in pollers.values()]
    assert any("garbled replies (CRC or framing errors)" in e for e in errors), errors
    assert any("byte(s) received that were no valid answer" in e for e in errors), errors


async def test_a_port_that_cannot_be_configured_says_so() -> None:
    """/dev/null opens but is no terminal: configuring it fails with an OS error, as a bad parity does."""
    drv = ModbusDriver(unit_config(1, {"transport": "serial", "serial_port": "/dev/null", "parity": "E"}))
    with pytest.raises(DeviceConnectError) as info:
        await drv.connect()
    text = str(info.value)
    assert "cannot be configured for 19200 baud 8E1" in text and "Inappropriate ioctl" in text, text
    assert "refused, unreachable or port missing" not in text


# -- the pymodbus adapter -----------------------------------------------------------------------


async def test_pymodbus_internals_the_driver_relies_on_still_exist() -> None:
    """Fails on a pymodbus upgrade that moves them: update client_internals.py, then this test."""
    client = AsyncModbusTcpClient("127.0.0.1", port=1)
    client_internals.check_supported(client, "dev")  # raises on a missing attribute
    client_internals.set_request_limits(client, reply_timeout=0.25, retries=2)
    assert client_internals.connect_timeout(client) == 0.25
    assert client.ctx.retries == 2
    pending: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    client.ctx.response_future = pending
    client_internals.fail_pending_request(client, ConnectionError("gone"))
    assert isinstance(pending.exception(), ConnectionError)
    client_internals.fail_pending_request(client, ConnectionError("twice"))  # done: left alone


async def test_the_adapter_limits_apply_to_a_real_request() -> None:
    srv = await PlantServer({1: {"holding": {0: [1, 2]}}}).start()
    srv.faults[1].silent = True
    client = AsyncModbusTcpClient("127.0.0.1", port=srv.port, timeout=5, retries=3)
    try:
        assert await client.connect()
        client_internals.set_request_limits(client, reply_timeout=0.1, retries=0)
        start = asyncio.get_running_loop().time()
        with pytest.raises(Exception, match="No response"):
            await client.read_holding_registers(0, count=2, device_id=1)
        assert asyncio.get_running_loop().time() - start < 1.0  # not 5 s x 4 tries
    finally:
        client.close()
        await srv.stop()


def test_a_pymodbus_without_the_internals_is_refused_by_name() -> None:
    stripped = types.SimpleNamespace(ctx=types.SimpleNamespace(retries=0))  # a changed client shape
    with pytest.raises(
        DriverError, match=r"device 'press1'.*lacks client internals comm_params, response_future"
    ):
        client_internals.check_supported(stripped, "press1")

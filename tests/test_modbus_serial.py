"""Shared lines: several unit ids on one serial port (a socat virtual pair) and on RTU over TCP.

The line owner must serialise every frame of every unit, keep the inter-frame silence, and
keep a dead unit from starving the others.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import require
from modbus_cases.harness import PlantServer
from pymodbus import FramerType

from edge_agent.batch import Quality, SampleBatch
from edge_agent.drivers.links import LinkHub
from edge_agent.drivers.modbus import ModbusDeviceConfig, ModbusDriver
from edge_agent.errors import DeviceConnectError
from edge_agent.runtime import DevicePoller

INTERVAL = 0.05


@pytest.fixture
async def serial_pair(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """Two linked pseudo-terminals: the agent opens one end, the server the other."""
    require(shutil.which("socat") is not None, "socat (virtual serial pair)")
    a, b = tmp_path / "agent", tmp_path / "plc"
    proc = await asyncio.create_subprocess_exec(
        "socat", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}", stderr=asyncio.subprocess.DEVNULL
    )
    try:
        for _ in range(200):
            if a.exists() and b.exists():
                break
            await asyncio.sleep(0.01)
        assert a.exists() and b.exists(), "socat did not create the pty pair"
        yield str(a), str(b)
    finally:
        proc.terminate()
        await proc.wait()


def unit_config(unit: int, line: dict[str, Any], **extra: Any) -> ModbusDeviceConfig:
    return ModbusDeviceConfig.model_validate(
        {
            "name": f"unit{unit}",
            "driver": "modbus",
            "unit_id": unit,
            "poll_interval": INTERVAL,
            "timeout": "300ms",
            "retries": 0,
            "backoff_max": "1s",
            "tags": [{"name": "seq", "asset": "m", "address": 0}, {"name": "v", "asset": "m", "address": 1}],
            **line,
            **extra,
        }
    )


def on_one_hub(drivers: list[ModbusDriver]) -> list[ModbusDriver]:
    """Give the drivers one LinkHub, as the runtime does for every device of an agent."""
    hub = LinkHub()
    for d in drivers:
        d.links = hub
    return drivers


def plant(units: list[int], **kw: Any) -> PlantServer:
    srv = PlantServer({u: {"holding": {0: [0, 100 * u]}} for u in units}, **kw)
    for u in units:
        srv.faults[u].counter_address = 0
    return srv


async def poll_all(
    drivers: list[ModbusDriver], duration: float
) -> tuple[dict[str, list[SampleBatch]], dict[str, DevicePoller]]:
    rows: dict[str, list[SampleBatch]] = defaultdict(list)

    async def handler(batch: SampleBatch) -> None:
        rows[batch.device].append(batch)

    limiter = asyncio.Semaphore(8)  # let them contend for the line
    pollers = {d.name: DevicePoller(d, handler, limiter=limiter, backoff_initial=0.05) for d in drivers}
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(p.run()) for p in pollers.values()]
        await asyncio.sleep(duration)
        for t in tasks:
            t.cancel()
    for d in drivers:
        await d.close()
    return rows, pollers


def good_seq(batches: list[SampleBatch]) -> list[int]:
    return [int(b.values["seq"][0]) for b in batches if b.quality["seq"][0] == Quality.GOOD]


async def test_three_units_share_one_serial_line(serial_pair: tuple[str, str]) -> None:
    agent_end, plc_end = serial_pair
    srv = await plant([1, 2, 3], serial_port=plc_end).start()
    line = {"transport": "serial", "serial_port": agent_end, "baudrate": 19200, "inter_frame_delay": "10ms"}
    drivers = on_one_hub([ModbusDriver(unit_config(u, line)) for u in (1, 2, 3)])
    hub = drivers[0].links
    try:
        for d in drivers:
            await d.connect()
        (owner,) = hub.open_links().values()  # one owner for the port, shared by all three
        assert owner.users == 3 and owner.shared
        rows, pollers = await poll_all(drivers, 1.0)
    finally:
        await srv.stop()
    for u in (1, 2, 3):
        batches = rows[f"unit{u}"]
        assert batches and all(b.quality["v"][0] == Quality.GOOD for b in batches)
        assert {float(b.values["v"][0]) for b in batches} == {100.0 * u}  # no unit got another's answer
        seq = good_seq(batches)
        assert all(b > a for a, b in itertools.pairwise(seq))
        assert pollers[f"unit{u}"].stats.failed_polls == 0
    assert {r[1] for r in srv.requests} == {1, 2, 3}
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(srv.requests)]
    assert min(gaps) >= 0.0099  # the 10 ms silence is kept between frames, whoever sends them
    assert hub.open_links() == {}  # the last user closed the port


async def test_a_dead_unit_backs_off_and_leaves_the_line_to_the_others(serial_pair: tuple[str, str]) -> None:
    agent_end, plc_end = serial_pair
    srv = await plant([1, 2, 3], serial_port=plc_end).start()
    srv.faults[3].silent = True  # unit 3 never answers (unplugged, wrong address switch...)
    line = {"transport": "serial", "serial_port": agent_end}
    drivers = on_one_hub([ModbusDriver(unit_config(u, line, timeout="100ms")) for u in (1, 2, 3)])
    duration = 1.5
    try:
        rows, pollers = await poll_all(drivers, duration)
    finally:
        await srv.stop()
    probes = sum(1 for r in srv.requests if r[1] == 3)
    # without backoff the dead unit would be asked every 50 ms tick and hold the line 100 ms each time
    assert probes <= 0.4 * duration / INTERVAL
    assert pollers["unit3"].stats.reconnects >= 2 and not good_seq(rows["unit3"])
    assert "unit 3" in (pollers["unit3"].stats.last_error or "")
    for u in (1, 2):
        assert len(good_seq(rows[f"unit{u}"])) >= 0.6 * duration / INTERVAL
        assert pollers[f"unit{u}"].stats.failed_polls == 0


async def test_conflicting_settings_on_one_port_are_refused(serial_pair: tuple[str, str]) -> None:
    agent_end, _ = serial_pair
    first = ModbusDriver(unit_config(1, {"transport": "serial", "serial_port": agent_end, "baudrate": 19200}))
    second = ModbusDriver(unit_config(2, {"transport": "serial", "serial_port": agent_end, "baudrate": 9600}))
    hub = on_one_hub([first, second])[0].links
    async with first:
        with pytest.raises(DeviceConnectError) as info:
            await second.connect()
        assert hub.open_links()[("serial", agent_end)].users == 1
    text = str(info.value)
    assert "already open by device 'unit1'" in text and "(19200, 'N', 1, 8)" in text and "(9600" in text
    assert hub.open_links() == {}


async def test_missing_serial_port_is_a_connect_error(tmp_path: Path) -> None:
    port = str(tmp_path / "ttyUSB9")
    drv = ModbusDriver(unit_config(1, {"transport": "serial", "serial_port": port}))
    with pytest.raises(DeviceConnectError, match=f"cannot open serial {port} unit 1") as info:
        await drv.connect()
    assert "does not exist" in str(info.value)
    assert drv.links.open_links() == {}


async def test_rtu_over_tcp_units_share_one_connection() -> None:
    srv = await plant([1, 2], framer=FramerType.RTU).start()
    line = {"transport": "rtu_over_tcp", "host": "127.0.0.1", "port": srv.port}
    drivers = on_one_hub([ModbusDriver(unit_config(u, line)) for u in (1, 2)])
    try:
        for d in drivers:
            await d.connect()
        await asyncio.sleep(0.05)
        assert len(srv.server.active_connections) == 1  # one TCP link for the whole RS-485 line
        batches = [await d.read() for d in drivers for _ in range(3)]
    finally:
        for d in drivers:
            await d.close()
        await srv.stop()
    assert [float(b.values["v"][0]) for b in batches] == [100.0] * 3 + [200.0] * 3
    assert all(q[0] == Quality.GOOD for b in batches for q in b.quality.values())

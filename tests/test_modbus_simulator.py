"""The driver against the bundled plant simulator: its register map, its values, its faults.

One ModbusDriver per simulated unit (asset), built from ``simulators.register_map()`` the way
an integrator would write the config from a device manual.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import numpy as np
import pytest

from edge_agent.batch import Quality, SampleBatch
from edge_agent.drivers.modbus import ModbusDeviceConfig, ModbusDriver
from edge_agent.drivers.modbus.transport import Connection
from edge_agent.runtime import DevicePoller
from edge_agent_simulators import Simulator, register_map

INTERVAL = 0.05


def configs(port: int, **extra: Any) -> dict[str, ModbusDeviceConfig]:
    by_asset: dict[str, list[dict[str, Any]]] = defaultdict(list)
    units: dict[str, int] = {}
    for e in register_map():
        if e.register_type != "holding":
            continue
        units[e.asset] = e.unit_id
        by_asset[e.asset].append(
            {
                "name": e.signal,
                "asset": e.asset,
                "role": e.role,
                "unit": e.unit,
                "address": e.address,
                "data_type": e.data_type,
                "scale": e.scale,
                "byte_order": e.word_order,
            }
        )
    return {
        asset: ModbusDeviceConfig.model_validate(
            {
                "name": asset,
                "driver": "modbus",
                "host": "127.0.0.1",
                "port": port,
                "unit_id": units[asset],
                "poll_interval": INTERVAL,
                "timeout": "200ms",
                "retries": 0,
                "backoff_max": "200ms",
                "tags": tags,
                **extra,
            }
        )
        for asset, tags in by_asset.items()
    }


async def test_decoded_values_equal_the_simulator_snapshot() -> None:
    async with Simulator(opcua_port=None, seed=3, time_scale=600.0) as sim:
        await asyncio.sleep(0.3)  # let the plant run a few ticks
        assert sim.modbus_port is not None
        drivers = [ModbusDriver(c) for c in configs(sim.modbus_port).values()]
        await sim.pause()
        snap = sim.snapshot()
        batches = []
        for d in drivers:
            async with d:
                batches.append(await d.read())
                assert len(d.requests) == 1  # a whole asset in one request
    checked = 0
    for b in batches:
        for tag in b.tags:
            want = snap.values[f"{b.device}.{tag}"]
            got = b.values[tag][0]
            assert b.quality[tag][0] == Quality.GOOD
            if isinstance(want, int) and b.values[tag].dtype.kind == "i":  # counters: exact raw counts
                assert int(got) == want, tag
            else:
                assert got == np.float32(want), f"{b.device}.{tag}: {got} != {want}"
            checked += 1
    assert checked == sum(1 for e in register_map() if e.register_type == "holding")


async def poll(
    sim: Simulator, duration: float, script: list[tuple[float, Any]]
) -> tuple[dict[str, list[tuple[float, SampleBatch]]], dict[str, DevicePoller]]:
    assert sim.modbus_port is not None
    drivers = [ModbusDriver(c) for c in configs(sim.modbus_port).values()]
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    rows: dict[str, list[tuple[float, SampleBatch]]] = defaultdict(list)

    async def handler(batch: SampleBatch) -> None:
        rows[batch.device].append((loop.time() - t0, batch))

    limiter = asyncio.Semaphore(8)
    pollers = {d.name: DevicePoller(d, handler, limiter=limiter, backoff_initial=0.05) for d in drivers}
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(p.run()) for p in pollers.values()]
        for at, action in [*script, (duration, None)]:
            await asyncio.sleep(max(0.0, at - (loop.time() - t0)))
            result = action() if action else None
            if asyncio.iscoroutine(result):
                await result
        for t in tasks:
            t.cancel()
    for d in drivers:
        await d.close()
    return rows, pollers


def good_times(rows: list[tuple[float, SampleBatch]], tag: str = "power_kw") -> list[float]:
    return [t for t, b in rows if b.quality[tag][0] == Quality.GOOD]


def bad_times(rows: list[tuple[float, SampleBatch]], tag: str = "power_kw") -> list[float]:
    return [t for t, b in rows if b.quality[tag][0] == Quality.BAD]


async def test_simulator_faults_stay_isolated_and_heal() -> None:
    async with Simulator(opcua_port=None, seed=5, time_scale=60.0) as sim:
        holder: dict[str, Any] = {}
        script: list[tuple[float, Any]] = [
            (0.2, lambda: holder.__setitem__("timeout", sim.modbus_timeout("imm1"))),
            (0.6, lambda: holder["timeout"].clear()),
            (0.8, lambda: holder.__setitem__("exc", sim.modbus_exception("cnc1", 0, 2, code=0x02))),
            (1.2, lambda: holder["exc"].clear()),
        ]
        rows, pollers = await poll(sim, 2.0, script)
    # imm1 timed out between 0.2 and 0.6 s: Bad there, nothing Good, then back by itself
    assert [t for t in bad_times(rows["imm1"]) if 0.2 <= t <= 0.9]
    assert not [t for t in good_times(rows["imm1"]) if 0.25 < t < 0.6]
    assert [t for t in good_times(rows["imm1"]) if t > 0.7]
    # cnc1's power register refused between 0.8 and 1.2 s: only that tag Bad, the rest kept polling
    assert [t for t in bad_times(rows["cnc1"]) if 0.8 <= t <= 1.3]
    assert len(good_times(rows["cnc1"], "energy_kwh")) >= 0.6 * 2.0 / INTERVAL
    assert [t for t in good_times(rows["cnc1"]) if t > 1.3], "cnc1 power did not come back"
    # the untouched units kept their rate throughout
    for asset in ("comp1", "main"):
        assert len(good_times(rows[asset])) >= 0.6 * 2.0 / INTERVAL
        assert pollers[asset].stats.failed_polls == 0


async def test_simulator_drops_and_restart_heal_without_help() -> None:
    async with Simulator(opcua_port=None, seed=6, time_scale=60.0) as sim:
        script: list[tuple[float, Any]] = [
            (0.2, sim.drop_connections),
            (0.5, lambda: sim.restart_modbus(down_s=0.3)),
        ]
        rows, pollers = await poll(sim, 1.6, script)
    for asset, p in pollers.items():
        assert bad_times(rows[asset]), f"{asset}: the restart left no Bad sample"
        assert not [t for t in good_times(rows[asset]) if 0.55 < t < 0.8], f"{asset}: Good while down"
        assert [t for t in good_times(rows[asset]) if t > 1.0], f"{asset} did not recover"
        assert p.stats.healthy


async def test_a_cancel_arriving_with_the_answer_stops_the_read_and_the_poller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fault injection: cancel exactly as an answer arrives, the race the restart test hit rarely.

    pymodbus waits for answers with asyncio.wait_for, which on Python 3.11 returns the answer
    instead of raising when the cancellation lands in the loop iteration the answer does. The
    hook below cancels from inside the client's receive callback, just before pymodbus resolves
    the answer, so that iteration is hit every time. Before the fix the read returned its batch
    and the poller polled on forever (poll()'s TaskGroup, and the test, hung).
    """
    victim: list[asyncio.Task[Any]] = []
    received = Connection._on_packet

    def cancel_on_answer(self: Connection, sending: bool, data: bytes) -> bytes:
        if not sending and victim:
            victim.pop().cancel()
        return received(self, sending, data)

    monkeypatch.setattr(Connection, "_on_packet", cancel_on_answer)
    async with Simulator(opcua_port=None, seed=7, time_scale=60.0) as sim:
        assert sim.modbus_port is not None
        async with ModbusDriver(configs(sim.modbus_port)["main"]) as driver:
            reader = asyncio.create_task(driver.read())
            victim.append(reader)
            await asyncio.wait({reader}, timeout=5.0)
            assert reader.cancelled(), "the read swallowed its cancellation"
            after = await driver.read()  # the link is still usable
            assert all(q[0] == Quality.GOOD for q in after.quality.values())

        driver = ModbusDriver(configs(sim.modbus_port)["main"])
        polls: list[SampleBatch] = []

        async def handler(batch: SampleBatch) -> None:
            polls.append(batch)
            if len(polls) == 3:  # cancel the poller as its 4th answer arrives
                victim.append(poller)

        poller = asyncio.create_task(DevicePoller(driver, handler).run())
        done, _ = await asyncio.wait({poller}, timeout=5.0)
        poller.cancel()
        await driver.close()
        assert done and poller.cancelled(), f"the poller polled on after its cancel ({len(polls)} polls)"

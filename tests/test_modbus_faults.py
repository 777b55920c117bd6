"""Failure isolation: several devices polled by the real DevicePoller, one of them faulted.

Each device has a sequence register its server increments on every read it serves. A
Good sample carrying an old value would show up as a sequence that fails to increase, so
"never stamp a stale value Good" is checked on every device in every scenario.

Poll rate bound: healthy devices poll every 50 ms. The faulted device's stalls last 150 ms
to 5 s per request, so if a healthy device were held up by it, it would manage at most a
third of its polls; requiring 60 % of the nominal count separates the two clearly.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from modbus_cases.harness import PlantServer

from edge_agent.batch import Quality, SampleBatch
from edge_agent.drivers.modbus import ModbusDeviceConfig, ModbusDriver
from edge_agent.runtime import DevicePoller

INTERVAL = 0.05
MIN_RATE = 0.6
Action = tuple[float, Callable[[], Any]]


@dataclass
class Fleet:
    servers: dict[str, PlantServer]
    drivers: dict[str, ModbusDriver]
    rows: dict[str, list[tuple[float, SampleBatch]]] = field(default_factory=lambda: defaultdict(list))
    pollers: dict[str, DevicePoller] = field(default_factory=dict)
    t0: float = 0.0


def config(name: str, port: int, **extra: Any) -> ModbusDeviceConfig:
    return ModbusDeviceConfig.model_validate(
        {
            "name": name,
            "driver": "modbus",
            "host": "127.0.0.1",
            "port": port,
            "poll_interval": INTERVAL,
            "timeout": "1s",
            "retries": 0,
            "backoff_max": "200ms",
            "tags": [
                {"name": "seq", "asset": "m", "address": 0},
                {"name": "value", "asset": "m", "address": 1, "data_type": "float32"},
            ],
            **extra,
        }
    )


async def fleet(names: list[str], **per_device: dict[str, Any]) -> Fleet:
    servers, drivers = {}, {}
    for name in names:
        srv = PlantServer({1: {"holding": {0: [0, 0x4049, 0x0FDB]}}})
        srv.faults[1].counter_address = 0
        servers[name] = await srv.start()
        drivers[name] = ModbusDriver(config(name, srv.port, **per_device.get(name, {})))
    return Fleet(servers, drivers)


async def run(f: Fleet, duration: float, actions: list[Action]) -> Fleet:
    loop = asyncio.get_running_loop()
    limiter = asyncio.Semaphore(8)

    async def handler(batch: SampleBatch) -> None:
        f.rows[batch.device].append((loop.time() - f.t0, batch))

    f.pollers = {
        n: DevicePoller(d, handler, limiter=limiter, backoff_initial=0.05) for n, d in f.drivers.items()
    }
    f.t0 = loop.time()
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(p.run()) for p in f.pollers.values()]
            for at, fn in [*actions, (duration, lambda: None)]:
                await asyncio.sleep(max(0.0, at - (loop.time() - f.t0)))
                result = fn()
                if isinstance(result, Awaitable):
                    await result
            for t in tasks:
                t.cancel()
    finally:
        for d in f.drivers.values():
            await d.close()
        for s in f.servers.values():
            await s.stop()
    return f


def quality(batch: SampleBatch, tag: str) -> int:
    return int(batch.quality[tag][0])


def good(f: Fleet, device: str, tag: str = "seq") -> list[tuple[float, float]]:
    return [(t, float(b.values[tag][0])) for t, b in f.rows[device] if quality(b, tag) == Quality.GOOD]


def bad(f: Fleet, device: str, tag: str = "seq") -> list[float]:
    return [t for t, b in f.rows[device] if quality(b, tag) == Quality.BAD]


def assert_never_stale(f: Fleet) -> None:
    for device in f.drivers:
        seq = [v for _, v in good(f, device)]
        assert all(b > a for a, b in itertools.pairwise(seq)), (
            f"{device}: a Good sample repeated an old value"
        )
        for _, b in f.rows[device]:  # every Bad sample carries no number
            for tag in b.tags:
                if quality(b, tag) == Quality.BAD:
                    assert math.isnan(float(b.values[tag][0]))


def assert_healthy(f: Fleet, device: str, duration: float) -> None:
    n = len(good(f, device))
    assert n >= MIN_RATE * duration / INTERVAL, f"{device}: only {n} good polls in {duration} s"
    assert not bad(f, device) and not bad(f, device, "value"), f"{device} went Bad"
    assert f.pollers[device].stats.failed_polls == 0


def assert_recovered(f: Fleet, device: str, after: float) -> None:
    later = [t for t, _ in good(f, device) if t > after]
    assert later, f"{device}: no Good sample after {after} s; polling did not resume by itself"
    assert f.pollers[device].stats.healthy


async def test_timeout_on_one_device() -> None:
    f = await fleet(["a", "b", "c"], b={"timeout": "150ms"})
    fault = f.servers["b"].faults[1]
    await run(
        f, 1.3, [(0.3, lambda: setattr(fault, "delay", 0.5)), (0.8, lambda: setattr(fault, "delay", 0.0))]
    )
    for name in ("a", "c"):
        assert_healthy(f, name, 1.3)
    assert [t for t in bad(f, "b") if 0.3 <= t <= 1.0], "the timeout never showed as Bad"
    assert "no answer within 0.15 s" in (f.pollers["b"].stats.last_error or "")
    assert_recovered(f, "b", after=0.9)
    assert_never_stale(f)


async def test_connection_dropped_during_a_poll() -> None:
    # timeout 5 s: recovering within the test proves the drop was noticed at once, not timed out
    f = await fleet(["a", "b"], b={"timeout": "5s"})
    fault = f.servers["b"].faults[1]
    await run(f, 1.0, [(0.3, lambda: setattr(fault, "abort_connection", True))])
    assert_healthy(f, "a", 1.0)
    assert fault.abort_connection is False  # the abort really hit a request
    assert len(bad(f, "b")) >= 1 and "connection lost" in (f.pollers["b"].stats.last_error or "")
    assert_recovered(f, "b", after=0.35)
    assert_never_stale(f)


async def test_server_restart() -> None:
    f = await fleet(["a", "b"])
    await run(f, 1.4, [(0.3, lambda: f.servers["b"].restart(down_s=0.4))])
    assert_healthy(f, "a", 1.4)
    down = [t for t in bad(f, "b") if 0.3 <= t <= 0.8]
    assert down, "the outage left no Bad sample"
    assert not [t for t, _ in good(f, "b") if 0.35 < t < 0.65]  # nothing Good while the server is gone
    assert f.pollers["b"].stats.reconnects >= 1
    assert_recovered(f, "b", after=0.75)
    assert_never_stale(f)


async def test_exception_on_one_register() -> None:
    f = await fleet(["a", "b"])
    refuse = f.servers["b"].faults[1].refuse
    await run(
        f,
        1.5,
        [(0.3, lambda: refuse.__setitem__(("holding", 2), 2)), (0.8, refuse.clear)],
    )
    assert_healthy(f, "a", 1.5)
    # only 'value' (registers 1-2) went Bad; 'seq' in the same planned request kept polling
    assert len(good(f, "b", "seq")) >= MIN_RATE * 1.5 / INTERVAL and not bad(f, "b", "seq")
    value_bad = bad(f, "b", "value")
    assert value_bad and all(0.25 <= t <= 1.5 for t in value_bad)
    assert [t for t, _ in good(f, "b", "value") if t > 0.9], "'value' did not come back"
    assert f.pollers["b"].stats.failed_polls == 0  # a refused register is not a failed poll
    assert_never_stale(f)


async def test_wrong_unit_id() -> None:
    f = await fleet(["a", "wrong"], wrong={"unit_id": 9})
    await run(f, 1.0, [])
    assert_healthy(f, "a", 1.0)
    assert not good(f, "wrong") and len(bad(f, "wrong")) >= 5
    assert "unit 9" in (f.pollers["wrong"].stats.last_error or "")
    assert_never_stale(f)

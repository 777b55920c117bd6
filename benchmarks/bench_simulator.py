"""Simulator figures: history speed, live CPU cost, Modbus read rate through our hooks.

Each figure comes with a baseline measured in the same process, and the ratio:

* history: vectorised day chunks vs the same model stepped one tick per call;
* live CPU: the running Simulator (model + both servers, 0.1 s ticks) vs an empty
  asyncio loop waking at the same rate;
* Modbus: block reads from our server (value hook + fault checks) vs a bare pymodbus
  SimDevice server holding the same registers.

Run: .venv/bin/python benchmarks/bench_simulator.py
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from edge_agent_simulators.history import generate_history
from edge_agent_simulators.host import Simulator
from edge_agent_simulators.plant import PlantModel

START = 1_704_067_200.0  # 2024-01-01 00:00 UTC


def bench_history() -> None:
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        res = generate_history(56, 28, 60, 42, out, progress=False)
        vec = time.perf_counter() - t
    ticks = res.rows * 2  # actual + counterfactual
    model = PlantModel(seed=42, start=START, tick_s=60.0, main_rollover_s=None)
    n = 2 * 1440
    t = time.perf_counter()
    for _ in range(n):
        model.advance(1)
    per_tick = (time.perf_counter() - t) / n
    print(f"history 56 d @ 60 s + counterfactual: {vec:.2f} s ({ticks / vec:,.0f} ticks/s, CSV incl.)")
    print(f"  baseline, one tick per call: {per_tick * 1e6:.0f} µs/tick -> {per_tick * ticks:.1f} s")
    print(f"  ratio: vectorised is {per_tick * ticks / vec:.0f}x faster")


async def bench_live_cpu(seconds: float = 8.0) -> None:
    async def idle_loop() -> float:
        c0 = time.process_time()
        for _ in range(round(seconds / 0.1)):
            await asyncio.sleep(0.1)
        return time.process_time() - c0

    base = await idle_loop()
    async with Simulator(seed=42, time_scale=240.0) as sim:
        c0, t0 = time.process_time(), sim.truth().ticks
        await asyncio.sleep(seconds)
        cpu, ticks = time.process_time() - c0, sim.truth().ticks - t0
    print(
        f"live simulator, both servers, 0.1 s ticks: {100 * cpu / seconds:.2f} % of one core "
        f"({ticks} ticks in {seconds:.0f} s, {1e3 * cpu / max(ticks, 1):.2f} ms CPU/tick)"
    )
    print(
        f"  baseline, empty loop at 10 Hz: {100 * base / seconds:.2f} % of one core; "
        f"ratio {cpu / max(base, 1e-9):.1f}x"
    )


async def _read_rate(port: int, unit: int, count: int, seconds: float) -> float:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    await client.connect()
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        rr = await client.read_holding_registers(0, count=count, device_id=unit)
        assert not rr.isError()
        n += 1
    client.close()
    return n / seconds


async def bench_modbus(seconds: float = 3.0) -> None:
    words = 13
    bare = ModbusTcpServer(
        [SimDevice(id=1, simdata=[SimData(0, count=words, values=7, datatype=DataType.REGISTERS)])],
        address=("127.0.0.1", 0),
    )
    await bare.serve_forever(background=True)
    port = cast(Any, bare.transport).sockets[0].getsockname()[1]
    base = await _read_rate(port, 1, words, seconds)
    await bare.shutdown()  # type: ignore[no-untyped-call]
    async with Simulator(seed=42, time_scale=240.0, opcua_port=None) as sim:
        assert sim.modbus_port is not None
        ours = await _read_rate(sim.modbus_port, 1, words, seconds)
    print(f"modbus 13-register reads, one connection: {ours:,.0f} req/s through the simulator")
    print(f"  baseline, bare pymodbus SimDevice: {base:,.0f} req/s; ratio {ours / base:.2f}")


def main() -> None:
    bench_history()
    asyncio.run(bench_live_cpu())
    asyncio.run(bench_modbus())


if __name__ == "__main__":
    main()

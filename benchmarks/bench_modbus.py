"""Modbus read path: agent (plan, read, decode into SampleBatch) vs a bare pymodbus client.

Everything runs in this process against a pymodbus server on 127.0.0.1, so both sides pay
the same server and loop costs; the ratio is what matters. Figures printed:

1. one connection: registers/s of the agent's ``read()`` vs bare ``read_holding_registers``
   over the same 125-register blocks (goal: agent >= 90 % of raw);
2. several devices (one connection each): aggregate registers/s for 1, 2, 4 connections;
3. agent CPU per 1,000 tags decoded (no I/O), against decoding tag by tag with ``struct``.

Run: ``.venv/bin/python benchmarks/bench_modbus.py [--seconds 2]``
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import random
import socket
import statistics
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from edge_agent.batch import SampleBatch
from edge_agent.drivers.modbus import ModbusDeviceConfig, ModbusDriver
from edge_agent.drivers.modbus.codec import Decoder
from edge_agent.drivers.modbus.image import RegisterImage
from edge_agent.drivers.modbus.planner import TagSpan, build_plan

BLOCK = 125
# One block: 25 float32 + 25 uint16 + 10 int32 + 5 float64 + 10 scaled int16 = 125 registers, 75 tags
BLOCK_LAYOUT: list[tuple[str, int, dict[str, Any]]] = (
    [("float32", 2, {})] * 25
    + [("uint16", 1, {})] * 25
    + [("int32", 2, {"byte_order": "CDAB"})] * 10
    + [("float64", 4, {})] * 5
    + [("int16", 1, {"scale": 0.1, "offset": -5.0})] * 10
)
_STRUCT = {"float32": ">f", "uint16": ">H", "int32": ">i", "float64": ">d", "int16": ">h"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tags_for(blocks: int) -> list[dict[str, Any]]:
    out, address = [], 0
    for _ in range(blocks):
        for dtype, width, extra in BLOCK_LAYOUT:
            out.append({"name": f"t{address}", "asset": "m", "address": address, "data_type": dtype, **extra})
            address += width
    return out


def device(port: int, blocks: int, name: str = "bench") -> ModbusDeviceConfig:
    return ModbusDeviceConfig.model_validate(
        {"name": name, "driver": "modbus", "host": "127.0.0.1", "port": port, "tags": tags_for(blocks)}
    )


async def rate(op: Callable[[], Awaitable[int]], seconds: float) -> float:
    """Registers per second of repeating ``op`` (which returns registers read) for ``seconds``."""
    done, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        done += await op()
    return done / elapsed


async def concurrent_rate(ops: list[Callable[[], Awaitable[int]]], seconds: float) -> float:
    rates = await asyncio.gather(*(rate(op, seconds) for op in ops))
    return float(sum(rates))


def raw_reader(client: AsyncModbusTcpClient, blocks: int) -> Callable[[], Awaitable[int]]:
    async def op() -> int:
        for b in range(blocks):
            rr = await client.read_holding_registers(b * BLOCK, count=BLOCK, device_id=1)
            assert len(rr.registers) == BLOCK
        return blocks * BLOCK

    return op


def agent_reader(driver: ModbusDriver, blocks: int) -> Callable[[], Awaitable[int]]:
    async def op() -> int:
        batch = await driver.read()
        assert len(batch.values) == blocks * len(BLOCK_LAYOUT)
        return blocks * BLOCK

    return op


async def throughput(port: int, blocks: int, seconds: float, rounds: int) -> None:
    """Raw and agent polls alternate one by one, so load from other processes hits both alike."""
    client = AsyncModbusTcpClient("127.0.0.1", port=port, reconnect_delay=0)
    await client.connect()
    driver = ModbusDriver(device(port, blocks))
    assert len(driver.requests) == blocks, "the plan must read the same blocks as the raw client"
    raw_poll, agent_poll = raw_reader(client, blocks), agent_reader(driver, blocks)
    ratios, raw_rates, agent_rates = [], [], []
    async with driver:
        for _ in range(rounds):
            raw_t = agent_t = 0.0
            polls = 0
            t_end = time.perf_counter() + 2 * seconds
            while time.perf_counter() < t_end:
                t0 = time.perf_counter()
                await raw_poll()
                t1 = time.perf_counter()
                await agent_poll()
                t2 = time.perf_counter()
                raw_t, agent_t, polls = raw_t + t1 - t0, agent_t + t2 - t1, polls + 1
            raw_rates.append(polls * blocks * BLOCK / raw_t)
            agent_rates.append(polls * blocks * BLOCK / agent_t)
            ratios.append(raw_t / agent_t)
    client.close()
    raw, agent, ratio = (statistics.median(x) for x in (raw_rates, agent_rates, ratios))
    tags = blocks * len(BLOCK_LAYOUT)
    print(f"\n1) one connection, {blocks} blocks x {BLOCK} registers = {tags} tags per poll")
    print(f"   (raw and agent polls alternate; median of {rounds} rounds of {2 * seconds:g} s)")
    print(f"   bare pymodbus        {raw:>10,.0f} registers/s  ({raw / BLOCK:,.0f} requests/s)")
    print(f"   agent read()         {agent:>10,.0f} registers/s  ({agent / (blocks * BLOCK):,.0f} polls/s)")
    rounds_text = ", ".join(f"{r:.1%}" for r in ratios)
    print(f"   agent / raw          {ratio:>10.1%}   (goal >= 90 %; rounds: {rounds_text})")


async def scaling(port: int, blocks: int, seconds: float, rounds: int) -> None:
    print(f"\n2) several devices, one connection each ({blocks} blocks per device), server in a child")
    print("   process so it does not share the agent's event loop; raw and agent phases alternate,")
    print(f"   median of {rounds} rounds of {seconds:g} s each")
    print("   conns   bare pymodbus   agent read()   agent/raw   agent vs 1 conn")
    base = 0.0
    for n in (1, 2, 4):
        clients = [AsyncModbusTcpClient("127.0.0.1", port=port, reconnect_delay=0) for _ in range(n)]
        drivers = [ModbusDriver(device(port, blocks, name=f"d{i}")) for i in range(n)]
        for c in clients:
            await c.connect()
        for d in drivers:
            await d.connect()
        raws, agents = [], []
        for _ in range(rounds):
            raws.append(await concurrent_rate([raw_reader(c, blocks) for c in clients], seconds))
            agents.append(await concurrent_rate([agent_reader(d, blocks) for d in drivers], seconds))
        for c in clients:
            c.close()
        for d in drivers:
            await d.close()
        raw, agent = statistics.median(raws), statistics.median(agents)
        base = base or agent
        print(f"   {n:>5}   {raw:>13,.0f}   {agent:>12,.0f}   {agent / raw:>9.1%}   {agent / base:>14.2f}x")


def decode_cpu(blocks: int, repeats: int) -> None:
    """CPU per 1,000 tags: the vectorised decode vs decoding tag by tag into the same SampleBatch."""
    cfg = device(502, blocks)
    tags = list(cfg.tags)
    spans = [TagSpan(i, t.table, t.address, t.register_count) for i, t in enumerate(tags)]
    plan = build_plan(spans)
    image = RegisterImage(plan)
    wire = random.randbytes(2 * plan.word_count)
    payloads = [np.frombuffer(wire[2 * r.offset : 2 * r.end], dtype=">u2") for r in plan.requests]

    def store() -> None:
        image.begin_poll()
        for r, p in zip(plan.requests, payloads, strict=True):
            image.store(r, p)

    store()
    decoder = Decoder("bench", tags, plan.positions)
    layout = [
        (t.name, _STRUCT[t.data_type], 2 * p, t.scale, t.offset)
        for t, p in zip(tags, plan.positions, strict=True)
    ]
    good = np.zeros(1, dtype=np.uint8)

    def per_tag() -> SampleBatch:  # what "value by value in Python" costs for the same output
        values = {
            name: np.array([struct.unpack_from(fmt, wire, off)[0] * scale + offset])
            for name, fmt, off, scale, offset in layout
        }
        return SampleBatch("bench", np.zeros(1, dtype=np.int64), values, {n: good.copy() for n in values})

    def assemble_only() -> SampleBatch:  # the per-tag floor of SampleBatch itself: views + validation
        rows = list(np.zeros(len(tags)).reshape(-1, 1))
        return SampleBatch(
            "bench",
            np.zeros(1, dtype=np.int64),
            dict(zip(decoder.names, rows, strict=True)),
            decoder._all_good,
        )

    def timed(fn: Callable[[], object]) -> float:
        best = float("inf")
        for _ in range(5):
            t0 = time.process_time()
            for _ in range(repeats):
                fn()
            best = min(best, (time.process_time() - t0) / repeats)
        return best

    k = 1000 / len(tags) * 1e6
    copy, vec, floor, py = (
        timed(f) * k for f in (store, lambda: decoder.decode(image, 0), assemble_only, per_tag)
    )
    print(f"\n3) agent CPU per 1,000 tags decoded, no I/O ({len(tags)} mixed tags, best of 5 x {repeats})")
    print(f"   copy answers into the image (np.frombuffer)     {copy:>7.1f} us")
    print(f"   decode image -> SampleBatch                     {vec:>7.1f} us")
    print(
        f"     of which SampleBatch's per-tag floor          {floor:>7.1f} us  (a view per tag + validation)"
    )
    print(f"   baseline: struct.unpack per tag -> SampleBatch  {py:>7.1f} us  ({py / vec:.1f}x the agent)")


async def serve(port: int, blocks: int) -> ModbusTcpServer:
    registers = [random.getrandbits(16) for _ in range(blocks * BLOCK)]
    sim = SimDevice(1, simdata=[SimData(0, values=registers, datatype=DataType.REGISTERS)])
    server = ModbusTcpServer(sim, address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    return server


def _child_server(port: int, blocks: int) -> None:
    async def forever() -> None:
        await serve(port, blocks)
        await asyncio.Event().wait()

    logging.getLogger("pymodbus").setLevel(logging.ERROR)
    asyncio.run(forever())


async def wait_listening(port: int) -> None:
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise RuntimeError(f"benchmark server on port {port} did not start")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=1.5, help="per measurement (default 1.5)")
    ap.add_argument("--blocks", type=int, default=8, help="125-register blocks per poll (default 8)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    logging.getLogger("pymodbus").setLevel(logging.ERROR)
    port = free_port()
    server = await serve(port, args.blocks)
    try:
        await throughput(port, args.blocks, args.seconds, args.rounds)
    finally:
        await server.shutdown()  # type: ignore[no-untyped-call]  # pymodbus lacks a hint
    child_port = free_port()
    child = multiprocessing.get_context("spawn").Process(target=_child_server, args=(child_port, args.blocks))
    child.start()
    try:
        await wait_listening(child_port)
        await scaling(child_port, args.blocks, args.seconds / 2, args.rounds)
    finally:
        child.terminate()
        child.join()
    decode_cpu(args.blocks, repeats=200)


if __name__ == "__main__":
    asyncio.run(main())

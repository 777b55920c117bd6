"""OPC UA read paths: the agent's polling and subscriptions vs bare asyncua, 1,000 nodes.

An asyncua server with 1,000 Double variables runs in this process on 127.0.0.1, so every
path pays the same server and event-loop costs and the ratios are what matter:

1. polling: nodes/s of the agent's ``OpcUaDriver.read()`` (batched Read, quality coding,
   SampleBatch) vs bare ``Client.read_values`` over the same 1,000 nodes, in alternating
   rounds (goal: agent >= 90 % of bare);
2. polling split to 100 nodes per request (as a server's MaxNodesPerRead of 100 forces):
   the agent sends its 10 requests together, bare ``read_values`` awaits the same 10
   chunks one after another;
3. subscriptions: data-change notifications/s delivered while the server rewrites all
   1,000 values every 50 ms (100 ms publishing): agent samples in SampleBatch vs a bare
   asyncua Subscription consumed through its event iterator. Each rewrite carries one
   source timestamp, as a PLC scan does; ``--per-node-stamps`` stamps every value apart,
   the worst case for the columnar batch (one row per value).

Run: ``.venv/bin/python benchmarks/bench_opcua.py [--seconds 2] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.server.server import Server

from edge_agent.batch import Quality
from edge_agent.drivers.opcua import OpcUaDeviceConfig, OpcUaDriver
from edge_agent.drivers.opcua._ua import ua

N = 1000
NS = "urn:edge-agent:bench"
SCAN_STAMPS = True
SAMPLING_MS = 50.0  # the same server sampling interval on both sides


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_server(port: int) -> tuple[Server, list[Node]]:
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    ns = await server.register_namespace(NS)
    folder = await server.nodes.objects.add_object(ua.NodeId("Bench", ns), ua.QualifiedName("Bench", ns))
    nodes = [
        await folder.add_variable(ua.NodeId(f"v{i}", ns), ua.QualifiedName(f"v{i}", ns), float(i))
        for i in range(N)
    ]
    await server.start()
    return server, nodes


def device(port: int, mode: str = "poll", **extra: Any) -> OpcUaDeviceConfig:
    tags = [{"name": f"v{i}", "asset": "m", "node_id": f"nsu={NS};s=v{i}"} for i in range(N)]
    base = {"name": "bench", "driver": "opcua", "endpoint": f"opc.tcp://127.0.0.1:{port}", "mode": mode}
    return OpcUaDeviceConfig.model_validate({**base, "poll_interval": "100ms", **extra, "tags": tags})


def _list(rates: list[float]) -> str:
    return ", ".join(f"{r:,.0f}" for r in rates)


async def rate(call: Callable[[], Awaitable[int]], seconds: float) -> float:
    """Items per second of ``call`` (which returns how many items it handled)."""
    await call()  # warm-up
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        done += await call()
    return done / elapsed


async def polling(port: int, seconds: float, rounds: int, *, limit: int | None = None) -> None:
    client = Client(f"opc.tcp://127.0.0.1:{port}")
    await client.connect()
    ns = await client.get_namespace_index(NS)
    nodes = [client.get_node(ua.NodeId(f"v{i}", ns)) for i in range(N)]
    chunks = [nodes[i : i + limit] for i in range(0, N, limit)] if limit else [nodes]
    driver = OpcUaDriver(device(port, max_nodes_per_read=limit))
    await driver.connect()

    async def bare() -> int:
        values = []
        for part in chunks:
            values += await client.read_values(part)
        return len(values)

    async def agent() -> int:
        batch = await driver.read()
        assert (batch.quality["v999"] == Quality.GOOD).all()
        return N * len(batch)

    bare_rates, agent_rates = [], []
    for _ in range(rounds):  # alternate so both see the same machine load
        bare_rates.append(await rate(bare, seconds))
        agent_rates.append(await rate(agent, seconds))
    await driver.close()
    await client.disconnect()
    b, a = statistics.median(bare_rates), statistics.median(agent_rates)
    label = f"split to {limit} nodes/request" if limit else "one request"
    print(f"polling, {N} nodes, {label}:")
    print(f"  bare asyncua read_values   {b:10,.0f} nodes/s   (rounds: {_list(bare_rates)})")
    print(f"  agent OpcUaDriver.read()   {a:10,.0f} nodes/s   (rounds: {_list(agent_rates)})")
    print(f"  agent / bare               {a / b:10.1%}   (goal >= 90 %)")


async def offer_changes(server: Server, nodes: list[Node], stop: asyncio.Event, period: float) -> int:
    """Rewrite every value each ``period`` s in one internal Write; returns values written."""
    written, k = 0, 0
    while not stop.is_set():
        k += 1
        params = ua.WriteParameters()
        scan = datetime.now(UTC) if SCAN_STAMPS else None  # one source time per scan, as a PLC does
        for node in nodes:
            value = ua.DataValue(ua.Variant(float(k), ua.VariantType.Double), SourceTimestamp=scan)
            params.NodesToWrite.append(
                ua.WriteValue(NodeId=node.nodeid, AttributeId=ua.AttributeIds.Value, Value=value)
            )
        await server.iserver.isession.write(params)
        written += len(nodes)
        await asyncio.sleep(period)
    return written


async def subscriptions(port: int, server: Server, nodes: list[Node], seconds: float, rounds: int) -> None:
    period = 0.05

    async def measure(count: Callable[[], Awaitable[int]]) -> tuple[float, float]:
        stop = asyncio.Event()
        writer = asyncio.create_task(offer_changes(server, nodes, stop, period))
        delivered, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            await asyncio.sleep(0.1)
            delivered += await count()
        elapsed = time.perf_counter() - start
        stop.set()
        written = await writer
        return delivered / elapsed, written / elapsed

    async def bare_round() -> tuple[float, float]:
        client = Client(f"opc.tcp://127.0.0.1:{port}")
        await client.connect()
        sub = await client.create_subscription(100, queue_maxsize=1_000_000)
        await sub.subscribe_data_change(
            [client.get_node(n.nodeid) for n in nodes], queuesize=1, sampling_interval=ua.Double(SAMPLING_MS)
        )
        await asyncio.sleep(0.5)

        async def count() -> int:
            n = 0
            while await sub.next_event(timeout=0.001) is not None:
                n += 1
            return n

        await count()  # the initial values
        result = await measure(count)
        await client.disconnect()
        return result

    async def agent_round() -> tuple[float, float]:
        group = {"publishing_interval": "100ms", "sampling_interval": SAMPLING_MS / 1000.0}
        cfg = device(port, groups={"all": group})
        driver = OpcUaDriver(
            cfg.model_copy(update={"tags": [t.model_copy(update={"group": "all"}) for t in cfg.tags]})
        )
        await driver.connect()
        await asyncio.sleep(0.5)

        async def count() -> int:
            batch = await driver.read()
            return sum(int((batch.quality[t] != Quality.MISSING).sum()) for t in batch.tags)

        await count()
        result = await measure(count)
        await driver.close()
        return result

    bare, agent, bare_offer, agent_offer = [], [], [], []
    for _ in range(rounds):
        delivered, offer = await bare_round()
        bare.append(delivered)
        bare_offer.append(offer)
        delivered, offer = await agent_round()
        agent.append(delivered)
        agent_offer.append(offer)
    b, a = statistics.median(bare), statistics.median(agent)
    bo, ao = statistics.median(bare_offer), statistics.median(agent_offer)
    print(f"subscription, {N} monitored items, 100 ms publishing, all rewritten every {period * 1000:g} ms")
    print("  (queue size 1: changes faster than the publishing interval coalesce, on both sides)")
    print(f"  bare asyncua (iterator)    {b:10,.0f} notifications/s of {bo:,.0f} offered ({b / bo:.0%})")
    print(f"    rounds: {_list(bare)}")
    print(f"  agent -> SampleBatch       {a:10,.0f} notifications/s of {ao:,.0f} offered ({a / ao:.0%})")
    print(f"    rounds: {_list(agent)}")
    print(f"  agent / bare               {a / b:10.1%}")


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per comparison (default 3)")
    parser.add_argument(
        "--per-node-stamps",
        action="store_true",
        help="stamp every written value separately (worst case: one SampleBatch row per value)",
    )
    args = parser.parse_args()
    global SCAN_STAMPS
    SCAN_STAMPS = not args.per_node_stamps
    logging.basicConfig(level=logging.ERROR)
    port = free_port()
    server, nodes = await start_server(port)
    try:
        await polling(port, args.seconds, args.rounds)
        await polling(port, args.seconds, args.rounds, limit=100)
        await subscriptions(port, server, nodes, args.seconds, args.rounds)
    finally:
        await server.stop()


if __name__ == "__main__":
    asyncio.run(main())

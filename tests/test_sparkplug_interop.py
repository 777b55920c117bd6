"""Sparkplug B interop: the agent's edge node against a pysparkplug host over real Mosquitto.

Data come from the bundled plant simulator over real Modbus TCP. One device reaches it
through a socat relay that the test kills to lose the device (DDEATH) and restarts. The
host (tests/sparkplug_host.py, its own process) decodes with pysparkplug, an implementation
independent of the sink's, and every value and quality it decodes must equal what the
agent read (recorded by a second sink on the same buffer).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import require
from plant import PlantServer
from servers import MosquittoServer

import edge_agent_simulators as simulators
from edge_agent.batch import Quality
from edge_agent.broker import free_port
from edge_agent.config import build_config_model
from edge_agent.delivery import Delivery
from edge_agent.delivery.record import Record
from edge_agent.delivery.sink import Sink
from edge_agent.delivery.sparkplug import SparkplugSink, device_watch
from edge_agent.delivery.sparkplug.metrics import QUALITY_CODES, metric_name
from edge_agent.demo.plant_config import demo_config
from edge_agent.plugins import driver_registry
from edge_agent.runtime.service import Agent

pytestmark = [pytest.mark.servers, pytest.mark.slow]

HOST_SCRIPT = Path(__file__).with_name("sparkplug_host.py")
Event = dict[str, Any]


class Recorder(Sink):
    """What the agent read, exactly as buffered: a second sink on the same durable buffer."""

    name = "recorder"

    def __init__(self) -> None:
        self.records: list[Record] = []

    async def send(self, records: Sequence[Record]) -> None:
        self.records.extend(records)


class Relay:
    """socat TCP relay to the Modbus server; stopping it kills open connections too."""

    def __init__(self, target: int) -> None:
        self.port, self.target = free_port(), target
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        socat = shutil.which("socat")
        assert socat, "socat is required (apt-get install socat)"
        self.proc = subprocess.Popen(
            [socat, f"TCP-LISTEN:{self.port},bind=127.0.0.1,fork,reuseaddr", f"TCP:127.0.0.1:{self.target}"],
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
            self.proc = None


class HostApp:
    """The pysparkplug host process: events in, commands out."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[Event] = []
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            async with self._changed:
                self.events.append(json.loads(line))
                self._changed.notify_all()

    async def command(self, cmd: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{cmd}\n".encode())
        await self.proc.stdin.drain()
        await self.wait(lambda e: e["ev"] == "done" and e["cmd"] == cmd)

    def mark(self) -> int:
        return len(self.events)

    async def wait(self, pred: Callable[[Event], bool], since: int = 0, within: float = 20.0) -> Event:
        async def find() -> Event:
            async with self._changed:
                while True:
                    for e in self.events[since:]:
                        if pred(e):
                            return e
                    await self._changed.wait()

        try:
            return await asyncio.wait_for(find(), within)
        except TimeoutError:
            tail: list[object] = [(e.get("ev"), e.get("type"), e.get("device")) for e in self.events[-15:]]
            tail += [e for e in self.events if e["ev"] == "error"][:3]
            raise AssertionError(
                f"host did not see the expected message in {within}s; last: {tail}"
            ) from None

    def msgs(self, kind: str, since: int = 0, device: str | None = None) -> list[Event]:
        return [
            e
            for e in self.events[since:]
            if e["ev"] == "msg" and e["type"] == kind and (device is None or e["device"] == device)
        ]


@contextlib.asynccontextmanager
async def host_app(broker: MosquittoServer, group: str, host_id: str) -> AsyncIterator[HostApp]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HOST_SCRIPT),
        broker.host,
        str(broker.port),
        group,
        host_id,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    host = HostApp(proc)
    try:
        await host.wait(lambda e: e["ev"] == "ready")
        yield host
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        host._reader.cancel()


def _is(kind: str, bd_seq: int | None = None, device: str | None = None) -> Callable[[Event], bool]:
    def pred(e: Event) -> bool:
        if e["ev"] != "msg" or e["type"] != kind or (device is not None and e["device"] != device):
            return False
        return bd_seq is None or _bd_seq(e) == bd_seq

    return pred


def _bd_seq(e: Event) -> int:
    return int(next(m["value"] for m in e["metrics"] if m["name"] == "bdSeq"))


def _expected_samples(records: list[Record]) -> dict[tuple[str, str, int], tuple[Any, int]]:
    """(device, metric, ts_ms) → (value or None, OPC quality code) as the agent read it."""
    out: dict[tuple[str, str, int], tuple[Any, int]] = {}
    for rec in records:
        b = rec.batch
        ts = (b.ts // 1_000_000).tolist()
        for tag, arr in b.values.items():
            name = metric_name(rec.kind, b.device, rec.placement.window, tag)
            for t, v, q in zip(ts, arr.tolist(), b.quality[tag].tolist(), strict=True):
                if q == Quality.MISSING:
                    continue
                if isinstance(v, float) and not math.isfinite(v):
                    q = max(q, Quality.BAD)
                out[(rec.placement.asset, name, t)] = (
                    None if q >= Quality.BAD else v,
                    QUALITY_CODES[Quality(q)],
                )
    return out


def _host_samples(host: HostApp) -> dict[tuple[str, str, int], set[tuple[Any, int]]]:
    out: dict[tuple[str, str, int], set[tuple[Any, int]]] = {}
    for e in host.msgs("DDATA"):
        for m in e["metrics"]:
            value = None if m["is_null"] else m["value"]
            out.setdefault((e["device"], m["name"], m["ts"]), set()).add((value, m["quality"]))
    return out


async def test_sparkplug_host_follows_the_edge_node_through_its_life(
    mosquitto_server: MosquittoServer, tmp_path: Path
) -> None:
    require(
        importlib.util.find_spec("pysparkplug") is not None,
        "pysparkplug for the independent host (pip install --no-deps pysparkplug==0.6.1)",
    )
    require(shutil.which("socat") is not None, "socat")
    group, host_id, node = f"plant-{uuid.uuid4().hex[:8]}", f"scada-{uuid.uuid4().hex[:8]}", "gw1"
    async with simulators.Simulator(seed=5, time_scale=60, modbus_port=0, opcua_port=None) as sim:
        assert sim.modbus_port
        relay = Relay(sim.modbus_port)
        relay.start()
        raw = demo_config(
            modbus_port=sim.modbus_port,
            opcua_endpoint="opc.tcp://127.0.0.1:1/unused",
            mqtt_port=None,
            data_dir=tmp_path,
            poll_interval=0.25,
        )
        raw["devices"] = [d for d in raw["devices"] if d["driver"] == "modbus"][:2]
        raw["devices"][0]["port"] = relay.port
        raw["devices"][0]["backoff_max"] = 0.5
        lost_asset = raw["devices"][0]["tags"][0]["asset"]
        raw["analytics"]["kpi_interval"] = 2
        raw["sparkplug"] = {
            "host": mosquitto_server.host,
            "port": mosquitto_server.port,
            "group_id": group,
            "edge_node_id": node,
            "primary_host_id": host_id,
            "backoff_max": 1,
            "birth_wait": 0.5,
        }
        config = build_config_model([d.config_model for d in driver_registry().values()]).model_validate(raw)
        units = {t.name: t.unit for d in config.devices for t in d.tag_configs()}
        units |= {t.name + "_raw": "count" for d in config.devices for t in d.tag_configs() if t.is_counter}
        recorder = Recorder()
        try:
            async with host_app(mosquitto_server, group, host_id) as host:
                async with Delivery(config, extra_sinks=[recorder]) as delivery:
                    sink = next(s for s in delivery.sinks if isinstance(s, SparkplugSink))
                    agent = Agent(config, sink=delivery)
                    stop = asyncio.Event()
                    run = asyncio.create_task(agent.run(stop))
                    watch = contextlib.AsyncExitStack()  # the hook `edge-agent run` uses
                    health = {p.name: p.stats for p in agent.pollers}
                    await watch.enter_async_context(device_watch(delivery.sinks, health, config))

                    # 1. The primary host is not online yet: the node must not be born.
                    await asyncio.sleep(1.5)
                    assert not host.msgs("NBIRTH") and not sink.connected
                    mark = host.mark()
                    await host.command("online")
                    nbirth = await host.wait(_is("NBIRTH"), mark)
                    bd0 = _bd_seq(nbirth)
                    assert nbirth["seq"] == 0
                    assert {"bdSeq", "Node Control/Rebirth"} <= {m["name"] for m in nbirth["metrics"]}
                    for asset in (lost_asset, raw["devices"][1]["tags"][0]["asset"]):
                        await host.wait(_is("DDATA", device=asset), mark)
                    await host.wait(
                        lambda e: _is("DDATA")(e) and any(m["name"].startswith("kpi/") for m in e["metrics"]),
                        mark,
                    )

                    # 2. Rebirth on request: same bdSeq, seq from 0, every device re-born.
                    mark = host.mark()
                    await host.command(f"rebirth {node}")
                    reborn = await host.wait(_is("NBIRTH"), mark)
                    assert _bd_seq(reborn) == bd0 and reborn["seq"] == 0
                    await host.wait(_is("DBIRTH", device=lost_asset), mark)

                    # 3. Device loss: DDEATH, then DBIRTH once polling works again.
                    mark = host.mark()
                    relay.stop()
                    await host.wait(_is("DDEATH", device=lost_asset), mark)
                    relay.start()
                    await host.wait(_is("DBIRTH", device=lost_asset), mark)

                    # 4. The host goes offline: NDEATH with the birth's bdSeq; back online: new birth.
                    mark = host.mark()
                    await host.command("offline")
                    ndeath = await host.wait(_is("NDEATH"), mark)
                    assert _bd_seq(ndeath) == bd0 and ndeath["matches_birth"]
                    await asyncio.sleep(1.0)
                    assert not host.msgs("NBIRTH", mark)
                    await host.command("online")
                    await host.wait(_is("NBIRTH", bd_seq=(bd0 + 1) % 256), mark)

                    # 5. Broker restart: a new session re-births with the next bdSeq.
                    mark = host.mark()
                    with mosquitto_server.stopped():
                        await asyncio.sleep(1.0)
                    await host.wait(_is("NBIRTH", bd_seq=(bd0 + 2) % 256), mark, within=30)
                    await host.wait(_is("DDATA"), host.mark())

                    stop.set()
                    await run
                    await watch.aclose()
                    assert await delivery.flush(30), "sinks did not drain"
                # Delivery closed: the sink said goodbye with an NDEATH of its last session.
                bye = await host.wait(_is("NDEATH", bd_seq=(bd0 + 2) % 256), mark)
                assert bye["matches_birth"]
        finally:
            relay.stop()

    errors = [i for i, e in enumerate(host.events) if e["ev"] == "error"]
    context = (
        [{k: v for k, v in e.items() if k != "metrics"} for e in host.events[max(0, errors[0] - 12) :]][:16]
        if errors
        else []
    )
    assert not errors, context
    # The host never saw data for a device without its birth (it would have asked for a rebirth).
    assert not [e for e in host.events if e["ev"] == "rebirth_requested"]
    assert host.msgs("NDEATH")[-1]["matches_birth"]

    # Births: every metric carries an alias, a datatype and its engineering unit.
    for e in host.msgs("DBIRTH"):
        for m in e["metrics"]:
            assert m["alias"] is not None and m["datatype"] and m["unit"], m
            if m["name"].startswith("raw/"):
                assert m["unit"] == units[m["name"].rsplit("/", 1)[1]], m  # <tag>_raw: "count"

    # Every value and quality the agent read reached the host unchanged (duplicates allowed).
    expected = _expected_samples(recorder.records)
    got = _host_samples(host)
    kinds = {k[1].split("/", 1)[0] for k in expected}
    assert kinds == {"raw", "kpi"} and len(expected) > 500, (kinds, len(expected))
    missing = [k for k in expected if k not in got]
    assert not missing, f"{len(missing)} of {len(expected)} samples never reached the host: {missing[:5]}"
    wrong = [(k, expected[k], got[k]) for k in expected if expected[k] not in got[k]]
    assert not wrong, wrong[:5]
    assert any(q == 0 for _, q in expected.values()), "the device loss should have produced Bad samples"


async def test_edge_agent_run_publishes_sparkplug_from_the_config_file(
    mosquitto_server: MosquittoServer, plant_server: PlantServer, tmp_path: Path
) -> None:
    """`edge-agent run` with a `sparkplug:` section: born at start, data, NDEATH on SIGTERM."""
    require(importlib.util.find_spec("pysparkplug") is not None, "pysparkplug for the independent host")
    group, host_id = f"plant-{uuid.uuid4().hex[:8]}", f"scada-{uuid.uuid4().hex[:8]}"
    doc = demo_config(
        modbus_port=plant_server.modbus_port,
        opcua_endpoint=plant_server.opcua_endpoint,
        mqtt_port=None,
        data_dir=tmp_path,
        poll_interval=0.25,
    )
    doc["devices"] = [d for d in doc["devices"] if d["driver"] == "modbus"][:1]
    doc["sparkplug"] = {"host": mosquitto_server.host, "port": mosquitto_server.port, "group_id": group}
    config = tmp_path / "agent.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    asset = doc["devices"][0]["tags"][0]["asset"]
    async with host_app(mosquitto_server, group, host_id) as host:
        cli = [sys.executable, "-m", "edge_agent.cli", "run", str(config)]
        agent = await asyncio.create_subprocess_exec(*cli)
        try:
            nbirth = await host.wait(_is("NBIRTH"), within=30)
            assert nbirth["node"] == doc["agent"]["name"]  # edge_node_id defaults to the agent name
            data = await host.wait(_is("DDATA", device=asset))
            assert all(m["name"].startswith("raw/") and m["quality"] in (192, 64, 0) for m in data["metrics"])
            agent.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(agent.wait(), 30) == 0
        finally:
            if agent.returncode is None:
                agent.kill()
                await agent.wait()
        bye = await host.wait(_is("NDEATH"))
        assert _bd_seq(bye) == _bd_seq(nbirth) and bye["matches_birth"]
    assert not [e for e in host.events if e["ev"] == "error"]

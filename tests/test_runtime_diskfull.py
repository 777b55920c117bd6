"""The disk under the buffer fills up while the agent polls real Modbus devices and publishes to a
real Mosquitto; then room returns. Polling never breaks, every dropped sample is counted, and
what reached the broker plus what was counted as dropped is exactly what was submitted."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import paho.mqtt.client as mqtt
from conftest import require
from paho.mqtt.enums import CallbackAPIVersion
from plant import PlantServer
from servers import MosquittoServer

from edge_agent.batch import SampleBatch
from edge_agent.config import AgentConfig, AssetConfig, build_config_model
from edge_agent.delivery import Delivery
from edge_agent.delivery.payload import decode_payload
from edge_agent.delivery.record import sample_count
from edge_agent.delivery.units import RAW_SUFFIX
from edge_agent.demo.plant_config import demo_config
from edge_agent.plugins import driver_registry
from edge_agent.runtime.service import Agent

POLL = 0.2


@contextlib.contextmanager
def small_disk(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size``: the one way to fill a disk on cue without filling the machine's."""
    require(os.geteuid() == 0 and shutil.which("mount") is not None, "root (to mount a small tmpfs)")
    where.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    """Write a filler file until the disk refuses more."""
    filler = disk / "filler"
    chunk = b"\0" * 4096
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, chunk)
    finally:
        os.close(fd)
    return filler


class Counting:
    """Counts what the runtime submits, by kind, then hands it to the real delivery."""

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery
        self.samples = {"raw": 0, "kpi": 0}
        self.exact_counts = 0  # counters' <tag>_raw companions (the runtime adds them, not polls)

    async def submit(
        self,
        kind: Literal["raw", "kpi"],
        asset: AssetConfig,
        batch: SampleBatch,
        *,
        window: str | None = None,
    ) -> None:
        self.samples[kind] += sample_count(batch)
        self.exact_counts += len(batch) * sum(name.endswith(RAW_SUFFIX) for name in batch.values)
        await self.delivery.submit(kind, asset, batch, window=window)


class BrokerCount:
    def __init__(self, server: MosquittoServer, topics: list[str]) -> None:
        self.q: queue.Queue[bytes] = queue.Queue()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.c.on_message = lambda c, u, m: self.q.put(bytes(m.payload))
        self.c.connect(server.host, server.port)
        self.c.subscribe([(t, 1) for t in topics])
        self.c.loop_start()
        self.samples = 0

    def drain(self) -> int:
        while True:
            try:
                d = decode_payload(self.q.get_nowait())
            except queue.Empty:
                return self.samples
            self.samples += sample_count(d.batch)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def _config(plant: PlantServer, broker: MosquittoServer, disk: Path, prefix: str) -> AgentConfig:
    raw = demo_config(
        modbus_port=plant.modbus_port,
        opcua_endpoint=plant.opcua_endpoint,
        mqtt_port=broker.port,
        data_dir=disk,
        site=prefix,
    )
    raw["devices"] = [dict(d, poll_interval=POLL) for d in raw["devices"] if d["driver"] == "modbus"]
    raw["buffer"] = {"path": str(disk / "buffer.db"), "max_bytes": "64MB", "linger": 0.1}
    models = [d.config_model for d in driver_registry().values()]
    return build_config_model(models).model_validate(raw)


async def _wait(pred, within: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_disk_fills_and_recovers_polling_unbroken_drops_counted_exactly(
    tmp_path: Path, plant_server: PlantServer, mosquitto_server: MosquittoServer
) -> None:
    prefix = f"diskfull{time.time_ns()}"
    with small_disk(tmp_path / "disk", "2m") as disk:
        config = _config(plant_server, mosquitto_server, disk, prefix)
        broker = BrokerCount(mosquitto_server, [f"{prefix}/+/+/+/raw", f"{prefix}/+/+/+/kpi"])
        assert mosquitto_server.proc is not None
        broker_pid = mosquitto_server.proc.pid
        try:
            async with Delivery(config) as delivery:
                sink = Counting(delivery)
                agent = Agent(config, sink=sink)
                stop = asyncio.Event()
                run = asyncio.create_task(agent.run(stop))
                await asyncio.sleep(1.5)  # healthy
                # The broker stalls (SIGSTOP: connections stay up, nothing is acknowledged), so the
                # backlog must grow on disk, and the disk is full.
                os.kill(broker_pid, signal.SIGSTOP)
                try:
                    filler = await asyncio.to_thread(fill, disk)
                    full_at = time.monotonic()
                    await _wait(lambda: delivery.stats.buffer.dropped > 0, 20, "drops on the full disk")
                    marks = {p.name: p.stats.polls for p in agent.pollers}
                    spell = time.monotonic()
                    await asyncio.sleep(2.0)  # a spell of full disk
                    spell = time.monotonic() - spell
                    during = {p.name: p.stats.polls - marks[p.name] for p in agent.pollers}
                    dropped_full = delivery.stats.buffer.dropped
                    filler.unlink()  # room returns
                finally:
                    os.kill(broker_pid, signal.SIGCONT)
                await asyncio.sleep(2.0)
                stop.set()
                await asyncio.wait_for(run, 30)  # the agent never fell over
                elapsed = time.monotonic() - full_at
                assert await delivery.flush(20)
            dropped = delivery.stats.buffer.dropped
            assert dropped == dropped_full  # no drop once room returned: it resumed by itself
            for p in agent.pollers:  # polling never broke, not even while the disk was full
                assert p.stats.failed_polls == 0, (p.name, p.stats)
                # a loaded 2-core CI machine skips some ticks (each one counted); the disk costs none
                assert during[p.name] >= 0.5 * spell / POLL, (p.name, during, spell)
                assert p.stats.polls + p.stats.skipped_polls >= 0.9 * elapsed / POLL, (p.name, p.stats)
            polled = sum(sum(p.stats.quality.values()) for p in agent.pollers)
            assert agent.stats.queue.dropped_samples == 0 and agent.stats.refused_samples == 0
            assert sink.samples["raw"] - sink.exact_counts == polled  # every polled sample handed on
            submitted = sink.samples["raw"] + sink.samples["kpi"]
            st = delivery.stats.sinks["mqtt"]
            assert st.dropped == dropped and st.backlog == 0
            assert st.delivered == submitted - dropped
            await _wait(lambda: broker.drain() >= submitted - dropped, 20, "the broker to receive all")
            await asyncio.sleep(0.5)
            assert broker.drain() == submitted - dropped  # exactly: nothing lost uncounted, nothing doubled
        finally:
            broker.close()


def test_restart_on_a_full_disk_opens_and_keeps_what_is_stored(tmp_path: Path) -> None:
    """After a crash on a full disk the agent starts again (and drops by count) instead of crashing."""
    from servers import synthetic_batch

    from edge_agent.config import BufferConfig
    from edge_agent.delivery import Placement
    from edge_agent.delivery.buffer import SyncBuffer

    place = Placement("s1", "a1", "l1", "press1")
    with small_disk(tmp_path / "disk", "1m") as disk:
        cfg = BufferConfig(path=disk / "buffer.db", max_bytes="64MB")
        buf = SyncBuffer(cfg, ["mqtt"], {})
        buf.open()
        ids = [buf.append("raw", place, synthetic_batch("plc1", i * 10**9, 100)).id for i in range(5)]
        filler = fill(disk)
        dropped = 0
        for i in range(5, 200):  # fills whatever the WAL and free pages still had
            res = buf.append("raw", place, synthetic_batch("plc1", i * 10**9, 100))
            if res.id is not None:
                ids.append(res.id)
            dropped += res.dropped_samples
        assert dropped > 0
        buf.close()  # the disk is still full
        again = SyncBuffer(cfg, ["mqtt", "influxdb"], {})  # a sink added: its cursor can't be saved yet
        again.open()
        try:
            res = again.append("raw", place, synthetic_batch("plc1", 10**12, 100))
            assert res.id is None and res.dropped_samples == 400 and again.stats.dropped == 400
            assert [r.id for r in again.fetch("mqtt", 1000, 10**12)] == ids  # everything stored survived
            filler.unlink()
            assert again.append("raw", place, synthetic_batch("plc1", 2 * 10**12, 100)).id is not None
        finally:
            again.close()

"""Fault tests on real servers: every test counts samples in InfluxDB against what was submitted.

InfluxDB's COUNT counts a (series, timestamp) once, so "nothing doubled" means re-delivery
only ever overwrote, and "nothing lost" means the count equals what was submitted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from servers import InfluxServer, MosquittoServer, delivery_config, synthetic_batch

from edge_agent.config import AgentConfig
from edge_agent.delivery import Delivery, IngestStats, run_ingest
from edge_agent.errors import BufferFullError

pytestmark = pytest.mark.servers
_ids = itertools.count()
ROWS, TAGS = 500, 4
PER_BATCH = ROWS * TAGS


def _names() -> tuple[str, str]:
    n = f"{next(_ids)}x{time.time_ns()}"
    return f"db_fault{n}", f"fault{n}"


async def _until(pred: Callable[[], bool], within: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {within}s")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def _ingest(cfg: AgentConfig, client_id: str) -> AsyncIterator[IngestStats]:
    stop, ready, stats = asyncio.Event(), asyncio.Event(), IngestStats()
    task = asyncio.create_task(run_ingest(cfg, client_id=client_id, stop=stop, ready=ready, stats=stats))
    await asyncio.wait_for(ready.wait(), 10)
    try:
        yield stats
    finally:
        stop.set()
        await task


def _setup(
    tmp: Path, mosq: MosquittoServer | None, influx: InfluxServer, **kw: object
) -> tuple[AgentConfig, str]:
    db, prefix = _names()
    influx.create_database(db)
    return delivery_config(tmp, mqtt=mosq, influx=influx, database=db, prefix=prefix, **kw), db  # type: ignore[arg-type]


def _producer(cfg: AgentConfig) -> AgentConfig:
    return cfg.model_copy(update={"influxdb": None})


async def test_broker_outage_with_10k_samples_queued(
    tmp_path: Path, mosquitto_server: MosquittoServer, influxdb_server: InfluxServer
) -> None:
    cfg, db = _setup(tmp_path, mosquitto_server, influxdb_server)
    asset, t0 = cfg.assets[0], time.time_ns()
    async with _ingest(cfg, f"ing-{db}") as stats, Delivery(_producer(cfg)) as d:
        await d.submit("raw", asset, synthetic_batch("plc1", t0, ROWS))
        assert await d.flush(10)
        with mosquitto_server.stopped():
            for i in range(1, 11):
                await d.submit("raw", asset, synthetic_batch("plc1", t0 + i * 10**9, ROWS))
            await asyncio.sleep(0.3)
            assert d.stats.sinks["mqtt"].backlog >= 10 * PER_BATCH >= 10_000
            assert not d.stats.sinks["mqtt"].connected
        assert await d.flush(30)
        await _until(lambda: stats.samples >= 11 * PER_BATCH, what="ingest catching up")
    assert influxdb_server.count(db) == 11 * PER_BATCH
    assert d.stats.sinks["mqtt"].delivered == 11 * PER_BATCH
    assert d.stats.sinks["mqtt"].dropped == 0


async def test_influx_outage_during_ingest(
    tmp_path: Path, mosquitto_server: MosquittoServer, influxdb_server: InfluxServer
) -> None:
    cfg, db = _setup(tmp_path, mosquitto_server, influxdb_server)
    asset, t0 = cfg.assets[0], time.time_ns()
    async with _ingest(cfg, f"ing-{db}") as stats, Delivery(_producer(cfg)) as d:
        with influxdb_server.stopped():
            for i in range(8):
                await d.submit("raw", asset, synthetic_batch("plc1", t0 + i * 10**9, ROWS))
            assert await d.flush(10)  # the broker holds them for the persistent ingest session
            await _until(lambda: stats.retried > 0, what="ingest retrying")
            assert stats.samples == 0
        await _until(lambda: stats.samples >= 8 * PER_BATCH, what="ingest catching up")
    assert influxdb_server.count(db) == 8 * PER_BATCH


_PRODUCER = """
import asyncio, os, sys, time
sys.path.insert(0, {tests!r})
from servers import synthetic_batch
from edge_agent.config import AgentConfig
from edge_agent.delivery import Delivery

async def main():
    cfg = AgentConfig.model_validate_json(open({cfg!r}).read())
    async with Delivery(cfg) as d:
        for i in range(10**6):
            await d.submit("raw", cfg.assets[0], synthetic_batch("plc1", {t0} + i * 10**9, {rows}))
            with open({progress!r} + ".tmp", "w") as f:
                f.write(str(i + 1))
            os.replace({progress!r} + ".tmp", {progress!r})
            await asyncio.sleep(0.01)
asyncio.run(main())
"""


def _spawn(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE)


async def test_producer_killed_mid_stream_resends_everything_unconfirmed(
    tmp_path: Path, mosquitto_server: MosquittoServer, influxdb_server: InfluxServer
) -> None:
    cfg, db = _setup(tmp_path, mosquitto_server, influxdb_server)
    cfg_file, progress = tmp_path / "cfg.json", tmp_path / "progress"
    cfg_file.write_text(_producer(cfg).model_dump_json())
    t0 = time.time_ns() - 10**12
    code = _PRODUCER.format(
        tests=str(Path(__file__).parent), cfg=str(cfg_file), t0=t0, rows=ROWS, progress=str(progress)
    )
    async with _ingest(cfg, f"ing-{db}") as stats:
        with influxdb_server.stopped():  # hold everything between broker and database meanwhile
            proc = _spawn(code)
            await _until(lambda: progress.exists() and int(progress.read_text() or 0) >= 30, 30, "producer")
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        done = int(progress.read_text())
        async with Delivery(_producer(cfg)) as d:  # restart: replays what the killed one never confirmed
            assert await d.flush(30)
        await _until(lambda: stats.samples >= done * PER_BATCH, what="ingest catching up")
        await asyncio.sleep(0.5)
    n = influxdb_server.count(db)
    # the kill may land after a submit returned but before the progress file was written
    assert n in (done * PER_BATCH, (done + 1) * PER_BATCH), (n, done)
    first_done = influxdb_server.query(f'SELECT COUNT("t0") FROM "raw" WHERE time < {t0 + done * 10**9}', db)
    assert first_done[0]["values"][0][1] == done * ROWS  # type: ignore[index]  # every confirmed batch, whole


_INGEST = """
import asyncio, sys
from edge_agent.config import AgentConfig
from edge_agent.delivery import run_ingest
cfg = AgentConfig.model_validate_json(open({cfg!r}).read())
asyncio.run(run_ingest(cfg, client_id={cid!r}))
"""


async def test_ingest_killed_with_messages_in_flight(
    tmp_path: Path, mosquitto_server: MosquittoServer, influxdb_server: InfluxServer
) -> None:
    cfg, db = _setup(tmp_path, mosquitto_server, influxdb_server, influx_extra={"linger": 0.2})
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(cfg.model_dump_json())
    cid = f"ing-{db}"
    # register the persistent session first so the broker queues for it while the worker is gone
    async with _ingest(cfg, cid):
        pass
    asset, t0 = cfg.assets[0], time.time_ns()
    total = 60
    async with Delivery(_producer(cfg)) as d:
        for i in range(total):
            await d.submit("raw", asset, synthetic_batch("plc1", t0 + i * 10**9, ROWS))
        assert await d.flush(20)
        worker = _spawn(_INGEST.format(cfg=str(cfg_file), cid=cid))
        await _until(lambda: influxdb_server.count(db) > 0, 30, "worker writing")
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        partial = influxdb_server.count(db)
        assert partial < total * PER_BATCH, "worker finished before it was killed; test proves nothing"
        async with _ingest(cfg, cid) as stats:
            await _until(lambda: influxdb_server.count(db) >= total * PER_BATCH, 30, "restarted ingest")
            assert stats.samples > 0
    assert influxdb_server.count(db) == total * PER_BATCH


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
async def test_cap_reached_during_outage_drops_exactly_what_is_counted(
    tmp_path: Path, influxdb_server: InfluxServer, policy: str
) -> None:
    cfg, db = _setup(tmp_path, None, influxdb_server, buffer={"max_bytes": 200_000, "policy": policy})
    asset, t0 = cfg.assets[0], time.time_ns()
    total = 40
    async with Delivery(cfg) as d:
        with influxdb_server.stopped():
            for i in range(total):
                await d.submit("raw", asset, synthetic_batch("plc1", t0 + i * 10**9, ROWS))
            st = d.stats.sinks["influxdb"]
            assert st.dropped > 0 and d.stats.buffer.file_bytes <= 200_000  # database and WAL together
        assert await d.flush(30)
    st = d.stats.sinks["influxdb"]
    stored = influxdb_server.count(db)
    assert stored == total * PER_BATCH - st.dropped
    assert st.delivered == stored and st.backlog == 0
    firsts = influxdb_server.query('SELECT FIRST("t0") FROM "raw"', db)[0]["values"][0][0]  # type: ignore[index]
    if policy == "drop_oldest":  # the newest batch survived, the second one did not
        assert int(firsts) != t0 + 1 * 10**9
        assert influxdb_server.query(
            f'SELECT COUNT("t0") FROM "raw" WHERE time >= {t0 + (total - 1) * 10**9}', db
        )
    else:  # the first batches survived, the last one did not
        assert int(firsts) == t0
        assert not influxdb_server.query(
            f'SELECT COUNT("t0") FROM "raw" WHERE time >= {t0 + (total - 1) * 10**9}', db
        )


async def test_cap_reached_with_block_policy_waits_then_loses_nothing(
    tmp_path: Path, influxdb_server: InfluxServer
) -> None:
    cfg, db = _setup(
        tmp_path,
        None,
        influxdb_server,
        buffer={"max_bytes": 200_000, "policy": "block", "block_timeout": 0.3},
    )
    asset, t0 = cfg.assets[0], time.time_ns()
    async with Delivery(cfg) as d:
        with influxdb_server.stopped():
            i = 0
            with pytest.raises(BufferFullError, match="block_timeout"):
                while True:
                    await d.submit("raw", asset, synthetic_batch("plc1", t0 + i * 10**9, ROWS))
                    i += 1
            stored_before = i
            assert stored_before > 1
            waiting = asyncio.create_task(
                d.submit("raw", asset, synthetic_batch("plc1", t0 + i * 10**9, ROWS))
            )
            await asyncio.sleep(0.1)
            assert not waiting.done()
        assert await d.flush(30)
        # the blocked submit may have timed out while InfluxDB restarted; retry it like the runtime would
        try:
            await waiting
        except BufferFullError:
            await d.submit("raw", asset, synthetic_batch("plc1", t0 + i * 10**9, ROWS))
        assert await d.flush(30)
    assert d.stats.sinks["influxdb"].dropped == 0
    assert influxdb_server.count(db) == (stored_before + 1) * PER_BATCH


async def test_malformed_payloads_are_rejected_and_valid_ones_around_them_land(
    tmp_path: Path, mosquitto_server: MosquittoServer, influxdb_server: InfluxServer
) -> None:
    cfg, db = _setup(tmp_path, mosquitto_server, influxdb_server, mqtt_extra={"max_message_bytes": 100_000})
    assert cfg.mqtt is not None
    topic = cfg.mqtt.topic_template.format(site="s1", area="a1", line="l1", asset="press1", kind="raw")
    t0 = time.time_ns()

    def valid(i: int) -> bytes:
        return json.dumps(
            {
                "v": 1,
                "kind": "raw",
                "site": "s1",
                "area": "a1",
                "line": "l1",
                "asset": "press1",
                "device": "plc1",
                "ts": [t0 + i],
                "values": {"p": [1.5 * i]},
            }
        ).encode()

    bad = [
        b"{not json",
        b'{"v": 1, "kind": "raw"}',
        valid(0).replace(b"[0.0]", b"[NaN]"),
        valid(0).replace(b"[0.0]", b'["1.0"]'),
        b'{"v":1,"kind":"raw","site":"s1","area":"a1","line":"l1","asset":"press1","device":"d",'
        b'"ts":[1,2],"values":{"p":[1.0]}}',
        b"[" + b"1," * 60_000 + b"1]",
        b"",
    ]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(mosquitto_server.host, mosquitto_server.port)
    client.loop_start()
    try:
        async with _ingest(cfg, f"ing-{db}") as stats:
            infos = []
            for i, b in enumerate(bad):
                infos.append(client.publish(topic, valid(i + 1), qos=1))
                infos.append(client.publish(topic, b, qos=1))
            infos.append(client.publish(topic, valid(100), qos=1))
            for info in infos:
                info.wait_for_publish(5)
            await _until(lambda: stats.messages >= len(infos), what="ingest processing all messages")
            assert stats.rejected == len(bad)
    finally:
        client.loop_stop()
        client.disconnect()
    assert influxdb_server.count(db) == len(bad) + 1

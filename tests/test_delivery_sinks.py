"""MQTT sink (TLS, birth/will, status, payload on the wire) and InfluxDB sinks on real servers."""

from __future__ import annotations

import asyncio
import itertools
import json
import queue
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from servers import InfluxServer, MosquittoServer, VictoriaServer, delivery_config, synthetic_batch

from edge_agent.batch import Quality, SampleBatch
from edge_agent.config import AgentConfig
from edge_agent.delivery import Delivery, IngestStats, run_ingest
from edge_agent.delivery.record import Submission

pytestmark = pytest.mark.servers
_ids = itertools.count()


def _prefix() -> str:
    return f"sink{next(_ids)}x{time.time_ns()}"


class Listener:
    """A plain paho subscriber collecting (topic, payload, retain) on the plain listener."""

    def __init__(self, server: MosquittoServer, topic: str) -> None:
        self.q: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.c.on_message = lambda c, u, m: self.q.put((m.topic, bytes(m.payload), bool(m.retain)))
        self.c.connect(server.host, server.port)
        self.c.subscribe(topic, qos=1)
        self.c.loop_start()

    def get(self, timeout: float = 10.0) -> tuple[str, bytes, bool]:
        return self.q.get(timeout=timeout)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


async def _until(pred, within: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_tls_with_client_cert_and_password_publishes_uns_payload(
    tmp_path: Path, mosquitto_server: MosquittoServer
) -> None:
    prefix = _prefix()
    m = mosquitto_server
    cfg = delivery_config(
        tmp_path,
        mqtt=m,
        prefix=prefix,
        mqtt_extra={
            "port": m.tls_port,
            "username": m.username,
            "password": m.password,
            "tls": {
                "ca_file": str(m.certs["ca"]),
                "cert_file": str(m.certs["client"]),
                "key_file": str(m.certs["client-key"]),
            },
        },
    )
    listener = Listener(m, f"{prefix}/#")
    try:
        n = 3
        batch = SampleBatch(
            "plc1",
            np.arange(n, dtype=np.int64) + time.time_ns(),
            {"power": np.array([1.5, 99.0, 2.5]), "parts": np.array([10, 11, 12], np.int64)},
            {
                "power": np.array([Quality.GOOD, Quality.BAD, Quality.UNCERTAIN], np.uint8),
                "parts": np.zeros(n, np.uint8),
            },
        )
        async with Delivery(cfg) as d:
            await d.submit("raw", cfg.assets[0], batch)
            assert await d.flush(10)
            assert d.stats.sinks["mqtt"].connected
        seen: dict[str, dict[str, object]] = {}
        while len(seen) < 2:
            topic, payload, _ = await asyncio.to_thread(listener.get)
            seen.setdefault(topic, json.loads(payload))
        data = seen[f"{prefix}/s1/a1/l1/press1/raw"]
        assert data["values"] == {"power": [1.5, None, 2.5], "parts": [10, 11, 12]}
        assert data["quality"] == {"power": [0, 2, 1]}
        assert data["device"] == "plc1" and data["ts"] == batch.ts.tolist()
        assert seen[f"{prefix}/s1/edge-agent/test-agent/status"]["state"] == "online"
    finally:
        listener.close()


async def test_wrong_password_buffers_instead_of_losing(
    tmp_path: Path, mosquitto_server: MosquittoServer
) -> None:
    m = mosquitto_server
    cfg = delivery_config(
        tmp_path,
        mqtt=m,
        prefix=_prefix(),
        buffer={"flush_timeout": 0},
        mqtt_extra={
            "port": m.tls_port,
            "username": m.username,
            "password": "wrong",
            "tls": {
                "ca_file": str(m.certs["ca"]),
                "cert_file": str(m.certs["client"]),
                "key_file": str(m.certs["client-key"]),
            },
        },
    )
    async with Delivery(cfg) as d:
        await d.submit("raw", cfg.assets[0], synthetic_batch("plc1", time.time_ns(), 10))
        await asyncio.sleep(0.5)
        assert not d.stats.sinks["mqtt"].connected
        assert d.stats.sinks["mqtt"].backlog == 40 and d.stats.sinks["mqtt"].delivered == 0


_VICTIM = """
import asyncio
from edge_agent.config import AgentConfig
from edge_agent.delivery import Delivery
async def main():
    cfg = AgentConfig.model_validate_json(open({cfg!r}).read())
    async with Delivery(cfg) as d:
        d.publish_status(cfg.assets[0], "running", device="plc1")
        print("up", flush=True)
        await asyncio.sleep(60)
asyncio.run(main())
"""


async def test_birth_is_retained_and_last_will_marks_a_killed_agent_offline(
    tmp_path: Path, mosquitto_server: MosquittoServer
) -> None:
    prefix = _prefix()
    cfg = delivery_config(tmp_path, mqtt=mosquitto_server, prefix=prefix, mqtt_extra={"keepalive": 1})
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(cfg.model_dump_json())
    status = f"{prefix}/s1/edge-agent/test-agent/status"
    argv = [sys.executable, "-c", _VICTIM.format(cfg=str(cfg_file))]
    proc = subprocess.Popen(  # noqa: ASYNC220  (started once; a blocking spawn is fine in a test)
        argv,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"up"
    await asyncio.sleep(0.5)
    late = Listener(mosquitto_server, f"{prefix}/#")  # joins after the birth: sees retained messages
    try:
        got: dict[str, dict[str, object]] = {}
        while len(got) < 2:
            topic, payload, retain = await asyncio.to_thread(late.get)
            assert retain
            got[topic] = json.loads(payload)
        assert got[status]["state"] == "online"
        assert got[f"{prefix}/s1/a1/l1/press1/status"]["state"] == "running"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        while True:  # the broker publishes the will after the keepalive lapses
            topic, payload, _ = await asyncio.to_thread(late.get, 10)
            if topic == status:
                break
        assert json.loads(payload)["state"] == "offline"
    finally:
        late.close()
        if proc.poll() is None:
            proc.kill()


async def test_influx_400_quarantines_only_the_bad_batch(
    tmp_path: Path, influxdb_server: InfluxServer
) -> None:
    db = f"db_q{time.time_ns()}"
    influxdb_server.create_database(db)
    cfg = delivery_config(tmp_path, influx=influxdb_server, database=db)
    asset, t0 = cfg.assets[0], time.time_ns()
    as_int = SampleBatch.single("plc1", t0, {"t0": 5})  # establishes field type integer
    async with Delivery(cfg) as d:
        await d.submit("raw", asset, as_int)
        assert await d.flush(10)
        for i in range(1, 5):
            await d.submit("raw", asset, synthetic_batch("plc1", t0 + i * 10**9, 50, tags=1))  # float t0
        await d.submit("raw", asset, SampleBatch.single("plc1", t0 + 10 * 10**9, {"t1": 1.0}))
        assert await d.flush(10)
        st = d.stats.sinks["influxdb"]
        assert st.quarantined == 4 * 50 and st.delivered == 2
        reasons = [q.reason for q in d.buffer.core.quarantined("influxdb")]
        assert len(reasons) == 4 and all("field type conflict" in r for r in reasons)
    assert influxdb_server.count(db) == 2


async def test_v2_write_api_into_victoriametrics(tmp_path: Path, victoria_server: VictoriaServer) -> None:
    cfg = AgentConfig.model_validate(
        {
            "assets": [{"id": "press1", "site": "s1", "area": "a1", "line": "l1", "rated_power_kw": 50}],
            "devices": [],
            "buffer": {"path": str(tmp_path / "b.db")},
            "influxdb": {"url": victoria_server.url, "api": "v2", "org": "o", "bucket": "b", "token": "t"},
        }
    )
    dev = f"plc{time.time_ns()}"
    t0 = time.time_ns() - 5 * 10**9
    kpi = SampleBatch(
        "press1",
        np.array([t0], np.int64),
        {"energy_kwh": np.array([1.5]), "good_parts": np.array([7])},
        {"energy_kwh": np.zeros(1, np.uint8), "good_parts": np.zeros(1, np.uint8)},
    )
    async with Delivery(cfg) as d:
        await d.submit("raw", cfg.assets[0], synthetic_batch(dev, t0, 100, tags=2))
        await d.submit("kpi", cfg.assets[0], kpi)
        assert await d.flush(10)
    raw = victoria_server.export(f'{{__name__=~"raw_t.*",device="{dev}"}}')
    assert sorted(s["metric"]["__name__"] for s in raw) == ["raw_t0", "raw_t1"]  # type: ignore[index]
    assert all(len(s["values"]) == 100 for s in raw)  # type: ignore[arg-type]
    series = victoria_server.export('{__name__="kpi_energy_kwh",asset="press1",window="60s"}')
    assert any(t0 // 10**6 in s["timestamps"] and 1.5 in s["values"] for s in series)  # type: ignore[operator]


async def test_shared_subscription_splits_load_between_workers(
    tmp_path: Path, mosquitto_server: MosquittoServer, influxdb_server: InfluxServer
) -> None:
    prefix = _prefix()
    db = f"db_{prefix}"
    influxdb_server.create_database(db)
    cfg = delivery_config(
        tmp_path,
        mqtt=mosquitto_server,
        influx=influxdb_server,
        database=db,
        prefix=prefix,
        mqtt_extra={"ingest_group": f"g{prefix}"},
    )
    stop = asyncio.Event()
    stats = [IngestStats(), IngestStats()]
    readies = [asyncio.Event(), asyncio.Event()]
    workers = [
        asyncio.create_task(
            run_ingest(cfg, client_id=f"w{i}-{prefix}", stop=stop, ready=readies[i], stats=stats[i])
        )
        for i in range(2)
    ]
    for r in readies:
        await asyncio.wait_for(r.wait(), 10)
    t0 = time.time_ns()
    async with Delivery(cfg.model_copy(update={"influxdb": None})) as d:
        for i in range(40):
            await d.submit("raw", cfg.assets[0], synthetic_batch("plc1", t0 + i * 10**9, 50))
        assert await d.flush(10)
    await _until(lambda: sum(s.samples for s in stats) >= 40 * 200)
    stop.set()
    await asyncio.gather(*workers)
    assert all(s.messages > 0 for s in stats), [s.messages for s in stats]
    assert sum(s.messages for s in stats) == 40
    assert influxdb_server.count(db) == 40 * 200


async def test_a_device_round_of_many_assets_quarantines_only_the_refused_asset(
    tmp_path: Path, influxdb_server: InfluxServer
) -> None:
    """A device round is one buffer record; InfluxDB refusing one asset's field (type conflict)
    quarantines that asset's part only, and the others are written."""
    db = f"db_round{time.time_ns()}"
    influxdb_server.create_database(db)
    cfg = AgentConfig.model_validate(
        {
            "assets": [
                {"id": f"m{i}", "site": "s1", "area": "a1", "line": "l1", "rated_power_kw": 50}
                for i in range(3)
            ],
            "devices": [],
            "buffer": {"path": str(tmp_path / "b.db")},
            "influxdb": {"url": influxdb_server.url, "database": db},
        }
    )
    t0 = time.time_ns()
    async with Delivery(cfg) as d:
        await d.submit("raw", cfg.assets[1], SampleBatch.single("plc1", t0, {"x1": 5}))  # x1: integer
        assert await d.flush(10)
        rnd = synthetic_batch("plc1", t0 + 10**9, 20, tags=3)  # t0, t1, t2: floats
        parts = [rnd.select([f"t{i}"]) for i in range(3)]
        parts[1] = SampleBatch.trusted("plc1", rnd.ts, {"x1": rnd.values["t1"]}, {"x1": rnd.quality["t1"]})
        await d.submit_many([Submission("raw", a, p) for a, p in zip(cfg.assets, parts, strict=True)])
        assert await d.flush(10)
        st = d.stats.sinks["influxdb"]
        assert (st.delivered, st.quarantined) == (1 + 2 * 20, 20)
        [q] = d.buffer.core.quarantined("influxdb")
        assert q.record.placement.asset == "m1" and "field type conflict" in q.reason
    assert influxdb_server.count(db) == 1 + 2 * 20


async def test_kpis_between_the_parts_of_a_device_round_do_not_split_it(tmp_path: Path) -> None:
    """The runtime hands a round's raw parts with each asset's closed KPI windows in between:
    the raw parts still make one record (one encode, one row), the KPI batches their own."""
    cfg = AgentConfig.model_validate(
        {
            "assets": [
                {"id": f"m{i}", "site": "s1", "area": "a1", "line": "l1", "rated_power_kw": 50}
                for i in range(3)
            ],
            "devices": [],
            "buffer": {"path": str(tmp_path / "b.db"), "flush_timeout": 0.1},
            "mqtt": {"host": "127.0.0.1", "port": 1},  # never reached: only the buffer is read
        }
    )
    rnd = synthetic_batch("plc1", time.time_ns(), 1, tags=3)
    kpi = SampleBatch.single("m", rnd.ts[0], {"energy_kwh": 1.5})
    items = []
    for i, asset in enumerate(cfg.assets):
        items.append(Submission("raw", asset, rnd.select([f"t{i}"])))
        items.append(Submission("kpi", asset, kpi, "60s"))
    async with Delivery(cfg) as d:
        await d.submit_many(items)
        rows = d.buffer.core.db.execute("SELECT kind, samples FROM batches ORDER BY id").fetchall()
    assert rows == [("raw", 3), ("kpi", 1), ("kpi", 1), ("kpi", 1)]

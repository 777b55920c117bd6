"""`edge-agent ingest` workers as an operator runs them: processes, signals, a shared group, SIGKILL.

InfluxDB's COUNT counts a (series, timestamp) once, so "nothing doubled" means that every
re-delivery only overwrote, and "nothing lost" means the count equals what was published.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion
from servers import InfluxServer, MosquittoServer, delivery_config, synthetic_batch

from edge_agent.delivery import Delivery

pytestmark = pytest.mark.servers
_ids = itertools.count()
ROWS, TAGS = 50, 4
PER_MSG = ROWS * TAGS


def _names() -> tuple[str, str]:
    n = f"{next(_ids)}x{time.time_ns()}"
    return f"db_fo{n}", f"fo{n}"


def _ingest_yaml(
    tmp: Path, mqtt: MosquittoServer, influx: InfluxServer, db: str, prefix: str, **mq: Any
) -> Path:
    """Only what ingest uses: no assets, no devices."""
    doc = {
        "agent": {"name": "plant-ingest", "stop_timeout": 10},
        "buffer": {"path": str(tmp / "ingest" / "buffer.db")},
        "mqtt": {
            "host": mqtt.host,
            "port": mqtt.port,
            "backoff_max": 1,
            "topic_template": f"{prefix}/{{site}}/{{area}}/{{line}}/{{asset}}/{{kind}}",
            "session_expiry": 300,
            "ingest_window": 20,
            **mq,
        },
        "influxdb": {"url": influx.url, "database": db, "backoff_max": 1, "linger": 0.05},
    }
    path = tmp / "ingest.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def _worker(cfg: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "edge_agent.cli", "ingest", str(cfg), "--log-level", "info", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait(cond, within: float, what: str) -> float:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > within:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - t0


def _wait_online(mqtt_server: MosquittoServer, group: str, client_ids: list[str], within: float = 30) -> None:
    """Until every worker's retained presence says 'online' (published right after it subscribed)."""
    states: dict[str, str] = {}
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.on_message = lambda cl, u, m: states.__setitem__(m.topic.rsplit("/", 1)[-1], m.payload.decode())
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(f"edge-agent/ingest/{group}/+", 0)
    c.connect(mqtt_server.host, mqtt_server.port)
    c.loop_start()
    try:
        _wait(lambda: all('"online"' in states.get(cid, "") for cid in client_ids), within, "workers online")
    finally:
        c.disconnect()
        c.loop_stop()


@pytest.mark.slow
def test_group_survives_a_worker_killed_mid_stream(
    tmp_path: Path, mosquitto_server: MosquittoServer, influxdb_server: InfluxServer
) -> None:
    db, prefix = _names()  # the database is NOT created here: ingest creates it
    group = f"g{prefix}"
    cfg = _ingest_yaml(tmp_path, mosquitto_server, influxdb_server, db, prefix, ingest_group=group)
    ids = [f"w0-{prefix}", f"w1-{prefix}"]
    workers = [_worker(cfg, "--client-id", cid) for cid in ids]
    try:
        _wait(lambda: _has_db(influxdb_server, db), 30, "ingest to create its database")
        _wait_online(mosquitto_server, group, ids)
        producer = delivery_config(tmp_path / "p", mqtt=mosquitto_server, prefix=prefix)
        total, kill_at = 300, 100
        t0 = time.time_ns()

        async def produce() -> None:
            async with Delivery(producer) as d:
                for i in range(total):
                    await d.submit("raw", producer.assets[0], synthetic_batch("plc1", t0 + i * 10**8, ROWS))
                    if i == kill_at:
                        workers[0].send_signal(signal.SIGKILL)  # mid-stream, messages in flight
                    await asyncio.sleep(0.01)
                assert await d.flush(30)

        asyncio.run(produce())
        killed_at = time.monotonic()
        took = _wait(lambda: influxdb_server.count(db) >= total * PER_MSG, 20, "the survivor to take over")
        time.sleep(1.0)  # anything doubled or late would show now
        assert influxdb_server.count(db) == total * PER_MSG
        assert took < 15, f"takeover took {took:.1f} s after the stream ended"
        assert time.monotonic() - killed_at < 25
        workers[1].send_signal(signal.SIGTERM)
        err, _ = workers[1].communicate(timeout=30)
        assert workers[1].returncode == 0, err[-3000:]
        err = " ".join(err.split())  # rich wraps lines on a pipe
        assert "takes over its session" in err and "drained and ended the session" in err, err[-3000:]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.communicate(timeout=10)


def _has_db(influx: InfluxServer, db: str) -> bool:
    series = influx.query("SHOW DATABASES")
    return any(db == row[0] for s in series for row in s.get("values") or [])  # type: ignore[attr-defined]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_ingest_exits_0_on_signal_after_draining(
    tmp_path: Path, mosquitto_server: MosquittoServer, influxdb_server: InfluxServer, sig: int
) -> None:
    db, prefix = _names()
    cfg = _ingest_yaml(tmp_path, mosquitto_server, influxdb_server, db, prefix, ingest_group=f"g{prefix}")
    worker = _worker(cfg, "--client-id", f"sig-{prefix}")
    try:
        _wait(lambda: _has_db(influxdb_server, db), 30, "ingest to create its database")
        _wait_online(mosquitto_server, f"g{prefix}", [f"sig-{prefix}"])
        producer = delivery_config(tmp_path / "p", mqtt=mosquitto_server, prefix=prefix)
        t0 = time.time_ns()

        async def produce() -> None:
            async with Delivery(producer) as d:
                for i in range(20):
                    await d.submit("raw", producer.assets[0], synthetic_batch("plc1", t0 + i * 10**8, ROWS))
                assert await d.flush(20)

        asyncio.run(produce())
        _wait(lambda: influxdb_server.count(db) >= 20 * PER_MSG, 20, "ingest to write")
    finally:
        worker.send_signal(sig)
        err, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    assert influxdb_server.count(db) == 20 * PER_MSG


@given(
    alive=st.sets(st.from_regex(r"w[0-9a-z]{1,6}", fullmatch=True), min_size=1, max_size=6),
    dead=st.sets(st.from_regex(r"d[0-9a-z]{1,6}", fullmatch=True), min_size=1, max_size=4),
)
def test_each_dead_member_is_adopted_by_exactly_one_live_member(alive: set[str], dead: set[str]) -> None:
    """Every live worker sees the same retained presences, so exactly one of them adopts each dead one."""
    from edge_agent.delivery.ingest_group import Presence, presence_payload, presence_topic

    views = {}
    for me in alive:
        p = Presence("g", me)
        for cid in sorted(alive | dead):
            p.update(presence_topic("g", cid), presence_payload("online" if cid in alive else "offline"))
        views[me] = set(p.mine())
    for cid in dead:
        assert sum(cid in mine for mine in views.values()) == 1, (cid, views)
    assert set().union(*views.values()) == dead
    # a cleared presence (the adopter ended the session) is nobody's business any more
    p = Presence("g", next(iter(alive)))
    p.update(presence_topic("g", "dx"), presence_payload("offline"))
    p.update(presence_topic("g", "dx"), b"")
    assert p.mine() == []

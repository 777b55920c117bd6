"""Poison payloads through real Mosquitto and InfluxDB: quarantined with a reason, acknowledged, never
written, never crashing ingest; the valid messages around them land."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from servers import InfluxServer, MosquittoServer, VictoriaServer, delivery_config

from edge_agent.config import AgentConfig, InfluxConfig, parse_config
from edge_agent.delivery import IngestStats, run_ingest
from edge_agent.delivery.quarantine import Quarantine

pytestmark = pytest.mark.servers


def _doc(now: int, **change: Any) -> dict[str, Any]:
    doc = {
        "v": 1,
        "kind": "kpi",
        "site": "s1",
        "area": "a1",
        "line": "l1",
        "asset": "press1",
        "window": "60s",
    }
    return doc | {"ts": [now], "values": {"energy_kwh": [1.5]}} | change


def _publish(mqtt_server: MosquittoServer, topic: str, payloads: list[bytes]) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect(mqtt_server.host, mqtt_server.port)
    c.loop_start()
    try:
        for p in payloads:
            c.publish(topic, p, qos=1).wait_for_publish(10)
    finally:
        c.disconnect()
        c.loop_stop()


def _column(influx: InfluxServer, q: str, db: str, i: int) -> list[Any]:
    rows: list[list[Any]] = [row for s in influx.query(q, db) for row in s["values"]]  # type: ignore[attr-defined]
    return [row[i] for row in rows]


async def _run(cfg: AgentConfig, cid: str, until: Any, within: float = 20.0) -> IngestStats:
    stop, ready, stats = asyncio.Event(), asyncio.Event(), IngestStats()
    task = asyncio.create_task(run_ingest(cfg, client_id=cid, stop=stop, ready=ready, stats=stats))
    await asyncio.wait_for(ready.wait(), 10)
    deadline = time.monotonic() + within
    while not until(stats) and time.monotonic() < deadline:
        assert not task.done(), task
        await asyncio.sleep(0.05)
    stop.set()
    await task
    return stats


async def test_poison_payloads_are_quarantined_acknowledged_and_never_written(
    tmp_path: Path, mosquitto_server: MosquittoServer, influxdb_server: InfluxServer
) -> None:
    prefix = f"poison{time.time_ns()}"
    db = f"db_{prefix}"
    cfg = delivery_config(tmp_path, mqtt=mosquitto_server, influx=influxdb_server, database=db, prefix=prefix)
    cid = f"ing-{prefix}"
    await _run(cfg, cid, lambda s: True)  # make the persistent session; ingest creates the database
    now = time.time_ns()
    poison = {
        "newline in window": json.dumps(_doc(now, window="60s\nevil,site=x energy_kwh=9")).encode(),
        "int64 overflow": json.dumps(_doc(now, ts=[2**64 + 5])).encode(),
        "negative": json.dumps(_doc(now, ts=[-1_000_000_000])).encode(),
        "year 2100": json.dumps(_doc(now, ts=[4102444800 * 10**9])).encode(),
        "value overflow": json.dumps(_doc(now, values={"parts": [2**63]})).encode(),
        "reserved key": json.dumps(_doc(now, values={"time": [1.0]})).encode(),
        "space in window": json.dumps(_doc(now, window="60 s")).encode(),
        "binary": bytes(range(256)),
    }
    good = [json.dumps(_doc(now + i * 10**9)).encode() for i in range(3)]
    topic = f"{prefix}/s1/a1/l1/press1/kpi"
    _publish(mosquitto_server, topic, [good[0], *poison.values(), good[1], good[2]])
    stats = await _run(cfg, cid, lambda s: s.messages >= len(poison) + 3)
    assert stats.rejected == len(poison) and stats.messages == len(poison) + 3
    assert influxdb_server.count(db, "kpi") == 3
    assert _column(influxdb_server, "SHOW MEASUREMENTS", db, 0) == ["kpi"]
    assert _column(influxdb_server, 'SHOW TAG VALUES FROM "kpi" WITH KEY = "window"', db, 1) == ["60s"]

    qdb = sqlite3.connect(tmp_path / "ingest-quarantine.db")
    try:
        kept = Quarantine(qdb, 2**30, "test").rejected()
    finally:
        qdb.close()
    assert [k.payload for k in kept] == list(poison.values())  # byte for byte, for inspection
    reasons = [k.reason for k in kept]
    for fragment, reason in zip(
        ["window", "int64", "older than", "ahead of now", "int64", "reserved", "window", "schema"],
        reasons,
        strict=True,
    ):
        assert fragment in reason, reasons

    # acknowledged: a restarted worker on the same session receives none of them again
    again = await _run(cfg, cid, lambda s: False, within=1.5)
    assert again.messages == 0


def test_ingest_config_needs_only_what_ingest_uses(tmp_path: Path) -> None:
    text = """
mqtt: {host: 127.0.0.1, ingest_group: ingest}
influxdb: {url: "http://127.0.0.1:8086", database: edge_agent}
"""
    cfg = parse_config(text, command="ingest")
    assert cfg.assets == [] and cfg.devices == [] and cfg.mqtt is not None
    with pytest.raises(Exception, match="assets"):
        parse_config(text)  # the agent itself still needs its plant


def test_validate_checks_an_ingest_config_as_ingest_reads_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edge_agent.cli import main

    path = tmp_path / "ingest.yaml"
    path.write_text(
        "mqtt: {host: 127.0.0.1}\ninfluxdb: {url: 'http://127.0.0.1:8086', database: edge_agent}\n"
    )
    assert main(["validate", str(path), "--ingest"]) == 0
    assert main(["validate", str(path)]) == 2  # as an agent config it lacks assets and devices
    assert "assets" in capsys.readouterr().err


async def test_v2_target_without_a_bucket_api_still_ingests(
    tmp_path: Path, mosquitto_server: MosquittoServer, victoria_server: VictoriaServer
) -> None:
    """VictoriaMetrics takes /api/v2/write but has no bucket API: ingest says so and writes anyway."""
    prefix = f"v2{time.time_ns()}"
    cfg = delivery_config(tmp_path, mqtt=mosquitto_server, prefix=prefix)
    influx = {"url": victoria_server.url, "api": "v2", "org": "o", "bucket": "b", "backoff_max": 1}
    cfg = cfg.model_copy(update={"influxdb": InfluxConfig.model_validate(influx)})
    cid = f"ing-{prefix}"
    await _run(cfg, cid, lambda s: True)
    now = time.time_ns()
    _publish(
        mosquitto_server, f"{prefix}/s1/a1/l1/press1/kpi", [json.dumps(_doc(now, asset=prefix)).encode()]
    )
    stats = await _run(cfg, cid, lambda s: s.messages >= 1)
    assert stats.messages == 1 and stats.samples == 1 and stats.rejected == 0
    match = f'{{__name__="kpi_energy_kwh",asset="{prefix}"}}'
    deadline = time.monotonic() + 15
    while not (series := victoria_server.export(match)) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.2)  # VictoriaMetrics makes new series searchable asynchronously
    assert [s["values"] for s in series] == [[1.5]]

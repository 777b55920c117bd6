"""The whole chain as an operator runs it: `edge-agent run` on the simulated plant, publishing to a
real Mosquitto and writing directly to a real InfluxDB, while `edge-agent ingest` moves the MQTT
stream into a second InfluxDB database. Then SIGTERM, and the dashboards' queries on the result."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from plant import PlantServer
from servers import InfluxServer, MosquittoServer

from edge_agent.config import load_config
from edge_agent.delivery.buffer import SyncBuffer
from edge_agent.delivery.stats import SinkStats
from edge_agent.demo.plant_config import demo_config

DASHBOARD = Path(__file__).resolve().parents[1] / "dashboards" / "edge-agent-plant.json"
PROVISIONING = DASHBOARD.parent / "provisioning"


def _write_config(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def _count(influx: InfluxServer, db: str, field: str) -> int:
    series = influx.query(f'SELECT count("{field}") FROM "raw" GROUP BY "asset"', db=db)
    return sum(int(s["values"][0][1]) for s in series)  # type: ignore[index]


def _wait(cond, within: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {within} s waiting for {what}")


def test_run_ingest_sigterm_and_dashboards(
    tmp_path: Path,
    plant_server: PlantServer,
    mosquitto_server: MosquittoServer,
    influxdb_server: InfluxServer,
) -> None:
    direct_db, via_mqtt_db = "pipeline_direct", "pipeline_mqtt"
    influxdb_server.create_database(direct_db)
    influxdb_server.create_database(via_mqtt_db)
    doc = demo_config(
        modbus_port=plant_server.modbus_port,
        opcua_endpoint=plant_server.opcua_endpoint,
        mqtt_port=mosquitto_server.port,
        data_dir=tmp_path / "agent",
    )
    doc["assets"] = [dict(a, site="pipeline") for a in doc["assets"]]
    doc["mqtt"]["protocol"] = "5"
    doc["analytics"]["kpi_interval"] = 5
    doc["influxdb"] = {"url": influxdb_server.url, "api": "v1", "database": direct_db}
    agent_cfg = _write_config(tmp_path / "agent.yaml", doc)
    ingest_doc = dict(doc, influxdb=dict(doc["influxdb"], database=via_mqtt_db))
    ingest_doc["buffer"] = {"path": str(tmp_path / "ingest" / "buffer.db")}
    ingest_cfg = _write_config(tmp_path / "ingest.yaml", ingest_doc)

    cli = [sys.executable, "-m", "edge_agent.cli"]
    ingest = subprocess.Popen([*cli, "ingest", str(ingest_cfg)], stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)  # let ingest subscribe before the agent publishes (its session then persists)
        agent = subprocess.Popen([*cli, "run", str(agent_cfg)], stderr=subprocess.PIPE, text=True)
        try:
            _wait(lambda: _count(influxdb_server, direct_db, "power_kw") > 20, 40, "direct writes")
            time.sleep(6)
        finally:
            agent.send_signal(signal.SIGTERM)
            _, agent_err = agent.communicate(timeout=60)
        assert agent.returncode == 0, agent_err[-3000:]

        # Graceful stop: everything in the buffer was confirmed by both sinks.
        config = load_config(agent_cfg)
        stats = {"mqtt": SinkStats(), "influxdb": SinkStats()}
        buffer = SyncBuffer(config.buffer, list(stats), stats)
        buffer.open()
        try:
            assert all(s.backlog == 0 for s in stats.values()), stats
        finally:
            buffer.close()

        direct = _count(influxdb_server, direct_db, "power_kw")
        _wait(
            lambda: _count(influxdb_server, via_mqtt_db, "power_kw") >= direct,
            30,
            "ingest to catch up",
        )
        # Same samples by both routes: nothing lost on the way through MQTT, nothing doubled.
        assert _count(influxdb_server, via_mqtt_db, "power_kw") == direct
        assert _count(influxdb_server, via_mqtt_db, "energy_kwh") == _count(
            influxdb_server, direct_db, "energy_kwh"
        )
    finally:
        ingest.send_signal(signal.SIGTERM)
        ingest.communicate(timeout=30)

    # Every dashboard panel's query runs on the real schema: each field it names is a KPI the
    # agent defines, each window one the agent writes, and whenever the agent wrote that field
    # in this short run (some KPIs need a finished part or a whole 15-min block), the panel's
    # query finds it. test_every_dashboard_panel_shows_a_producing_plant covers the rest.
    results = _dashboard_results(influxdb_server, direct_db, set(_kpi_names(agent_cfg)))
    checked = [title for title, (fields, written, n) in results.items() if fields & written]
    for title in checked:
        assert results[title][2], f"panel {title!r} found no data"
    assert len(checked) >= 6  # power, energy by state, idle share, CO2e, power factor, coverage at least


def _dashboard_results(
    influx: InfluxServer, db: str, kpi_names: set[str]
) -> dict[str, tuple[set[str], set[str], int]]:
    """Run every dashboard query as Grafana would; per panel: fields named, fields written, values found."""

    def column(q: str, i: int) -> set[str]:
        series = influx.query(q, db=db)
        return {str(row[i]) for s in series for row in s["values"]}  # type: ignore[union-attr]

    written = column('SHOW FIELD KEYS FROM "kpi"', 0) | column('SHOW FIELD KEYS FROM "raw"', 0)
    windows = column('SHOW TAG VALUES FROM "kpi" WITH KEY = "window"', 1)
    known = kpi_names | written
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    out: dict[str, tuple[set[str], set[str], int]] = {}
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            q = target["query"]
            fields = set(re.findall(r'(?:mean|sum|last|max|min)\("([a-z0-9_]+)"\)', q))
            assert fields and fields <= known, f"panel {panel['title']!r}: unknown fields {fields - known}"
            assert set(re.findall(r"\"window\" = '([^']+)'", q)) <= windows, panel["title"]
            q = q.replace("$timeFilter", "time > now() - 2d").replace("$__interval", "1m")
            q = re.sub(r"/\^\$asset\$/", "/.*/", q)
            series = influx.query(q, db=db)  # raises on an InfluxQL error
            values = [v for s in series for row in s["values"] for v in row[1:] if v is not None]  # type: ignore[union-attr]
            out[panel["title"]] = (fields, fields & written, len(values))
    return out


def _provisioned_database() -> str:
    doc = yaml.safe_load((PROVISIONING / "datasources" / "edge-agent.yaml").read_text(encoding="utf-8"))
    return str(doc["datasources"][0]["jsonData"]["dbName"])


def test_one_database_name_across_readme_configs_and_grafana() -> None:
    """The READMEs, docs and configs, `evaluate` and Grafana's datasource name one database."""
    from edge_agent.evaluation._cli import _parser as evaluate_parser

    name = _provisioned_database()
    root = DASHBOARD.parents[1]
    found: dict[str, set[str]] = {}
    docs = (root / "README.md", *root.glob("edge_agent/**/README.md"), *root.glob("docs/**/*.md"))
    for doc in (*docs, *root.glob("configs/*.yaml")):
        names = set(re.findall(r"\bdatabase:\s*([A-Za-z0-9_-]+)", doc.read_text(encoding="utf-8")))
        if names:
            found[str(doc.relative_to(root))] = names
    assert found, "no InfluxDB database named in the docs"
    assert all(names == {name} for names in found.values()), (name, found)
    args = evaluate_parser().parse_args(["--influx", "http://x", "--baseline", "a/b", "--reporting", "c/d"])
    assert args.database == name


@pytest.mark.slow
async def test_every_dashboard_panel_shows_a_producing_plant(
    tmp_path: Path, influxdb_server: InfluxServer
) -> None:
    """Three simulated hours of the demo plant through the agent's own routing, analytics and
    delivery into the database Grafana is provisioned for; every panel then shows data.

    The simulator's model runs in fast time (its samples are stamped three hours back to
    now) so that 15-min, hourly, shift and day windows close, which a live run cannot do.
    """
    import numpy as np

    import edge_agent_simulators as simulators
    from edge_agent.batch import SampleBatch
    from edge_agent.delivery import Delivery
    from edge_agent.runtime.service import Agent

    db = _provisioned_database()
    influxdb_server.query(f'DROP DATABASE "{db}"')
    doc = demo_config(
        modbus_port=1, opcua_endpoint="opc.tcp://127.0.0.1:1/", mqtt_port=None, data_dir=tmp_path
    )
    doc.pop("mqtt", None)
    doc["influxdb"] = {"url": influxdb_server.url, "api": "v1", "database": db, "batch_size": 20_000}
    config = load_config(_write_config(tmp_path / "agent.yaml", doc))
    influxdb_server.create_database(db)

    hours, poll_s, tick_s = 3, 2.0, 0.5
    start = time.time() - hours * 3600 - 60
    monday_morning = 1_704_096_000 + 7 * 3600  # 2024-01-01 07:00 UTC, a working Monday
    model = simulators.PlantModel(seed=7, start=start, tick_s=tick_s, schedule_start=monday_morning)
    per_poll = round(poll_s / tick_s)
    rows_per_batch = 60
    async with Delivery(config) as delivery:
        agent = Agent(config, sink=delivery)
        for _ in range(int(hours * 3600 / poll_s / rows_per_batch)):
            ts, snaps = [], []
            for _ in range(rows_per_batch):
                model.advance(per_poll)
                snap = model.snapshot()
                ts.append(int(snap.time * 1e9))
                snaps.append(snap)
            for dev in config.devices:
                values = {}
                for tag in dev.tag_configs():
                    col = [s.value(tag.asset, tag.name) for s in snaps]
                    values[tag.name] = np.asarray(
                        col, dtype=np.int64 if isinstance(col[0], int) else np.float64
                    )
                quality = {t: np.zeros(len(ts), np.uint8) for t in values}
                await agent._handle(SampleBatch(dev.name, np.asarray(ts, np.int64), values, quality))
        for k in agent.analytics.flush():
            await delivery.submit("kpi", k.asset, k.batch, window=k.window)
        assert await delivery.flush(60)

    parts = influxdb_server.query('SELECT spread("good_parts") FROM "raw" GROUP BY "asset"', db=db)
    produced = {s["tags"]["asset"]: s["values"][0][1] for s in parts}  # type: ignore[index]
    assert set(produced) == {"cnc1", "imm1"} and all(n > 0 for n in produced.values()), produced
    results = _dashboard_results(influxdb_server, db, set(_kpi_names(tmp_path / "agent.yaml")))
    empty = [title for title, (_, _, n) in results.items() if n == 0]
    assert not empty, f"panels without data: {empty}"


def _kpi_names(config_path: Path) -> list[str]:
    from edge_agent.analytics import kpi_names
    from edge_agent.runtime.analytics_stage import asset_spec

    config = load_config(config_path)
    tags: dict[str, list[Any]] = {}
    for dev in config.devices:
        for tag in dev.tag_configs():
            tags.setdefault(tag.asset, []).append(tag)
    return [
        name for a in config.assets for name in kpi_names(asset_spec(a, tags[a.id], config.analytics))
    ] + ["coverage"]

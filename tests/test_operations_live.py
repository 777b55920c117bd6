"""A running agent on the simulator: /metrics, /healthz, the status topic, logs and SIGHUP reload."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from operations_harness import AgentProcess, Simulator, plant_config, simulator, wait_for
from prometheus_client.parser import text_string_to_metric_families
from servers import MosquittoServer

from edge_agent.broker import free_port
from edge_agent.operations.metrics import METRIC_NAMES

__all__ = ["simulator"]  # the fixture, re-exported for pytest

pytestmark = [pytest.mark.servers, pytest.mark.slow]


@pytest.fixture
def agent(tmp_path: Path, simulator: Simulator, mosquitto_server: MosquittoServer) -> Iterator[AgentProcess]:
    cfg = plant_config(tmp_path, simulator, mosquitto_server, web_port=free_port(), prefix=tmp_path.name)
    proc = AgentProcess(tmp_path, cfg)
    proc.start("--log-format", "plain")
    try:
        yield proc
    finally:
        assert proc.stop() == 0, proc.log_text()[-2000:]


def _metrics(agent: AgentProcess) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Family name -> {sorted labels -> value}, parsed with prometheus_client's text parser."""
    code, body = agent.get("/metrics")
    assert code == 200
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def _device_value(m: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, device: str) -> float:
    return m[name][(("device", device),)]


def test_metrics_and_healthz_follow_the_broker(
    agent: AgentProcess, mosquitto_server: MosquittoServer
) -> None:
    wait_for(lambda: agent.get("/healthz")[0] == 200, 30, "/healthz 200 with devices and broker up", agent)
    devices = [d["name"] for d in agent.status()["devices"]]
    assert len(devices) == 4

    # healthy needs one device polling; an OPC UA session takes longer to open than a Modbus link
    # (CI once saw comp1-opcua at 0 polls when the others had delivered)
    def every_device_read() -> bool:
        m = _metrics(agent)
        return all(
            _device_value(m, "edge_agent_polls_total", d) > 0
            and m["edge_agent_poll_latency_seconds_count"].get((("device", d),), 0) > 0
            and m["edge_agent_samples_total"].get((("device", d), ("quality", "good")), 0) > 0
            for d in devices
        )

    wait_for(every_device_read, 20, "a good read of every device", agent)
    # Rows reach the sinks after the runtime's linger (buffer.linger): wait for the first delivery.
    wait_for(
        lambda: _metrics(agent)["edge_agent_sink_delivered_samples_total"].get((("sink", "mqtt"),), 0) > 0,
        10,
        "a delivery",
    )
    m = _metrics(agent)
    families = {f.name for f in text_string_to_metric_families(agent.get("/metrics")[1].decode())}
    assert families == set(METRIC_NAMES)
    for dev in devices:
        assert _device_value(m, "edge_agent_polls_total", dev) > 0
        assert _device_value(m, "edge_agent_poll_failures_total", dev) >= 0
        assert _device_value(m, "edge_agent_poll_skipped_total", dev) >= 0
        assert m["edge_agent_poll_latency_seconds_count"][(("device", dev),)] > 0
        assert m["edge_agent_samples_total"][(("device", dev), ("quality", "good"))] > 0
    assert m["edge_agent_analytics_seconds_total"][()] > 0
    assert m["edge_agent_buffer_rows"][()] >= 0 and m["edge_agent_buffer_bytes"][()] >= 0
    assert m["edge_agent_sink_delivered_samples_total"][(("sink", "mqtt"),)] > 0
    for fam in ("edge_agent_sink_retried_total", "edge_agent_sink_dropped_samples_total"):
        assert (("sink", "mqtt"),) in m[fam]
    assert m["edge_agent_broker_connected"][()] == 1.0
    assert m["edge_agent_healthy"][()] == 1.0

    with mosquitto_server.stopped():
        _, body = wait_for(lambda: (r := agent.get("/healthz"))[0] == 503 and r, 20, "/healthz 503", agent)
        doc = json.loads(body)
        assert doc["status"] == "unhealthy"
        assert any("sink mqtt is not connected" in r for r in doc["reasons"]), doc
        m = _metrics(agent)
        assert m["edge_agent_broker_connected"][()] == 0.0
        assert m["edge_agent_healthy"][()] == 0.0
        # polling goes on while the broker is away: the buffer grows
        wait_for(lambda: agent.status()["sinks"][0]["backlog"] > 0, 10, "a backlog while the broker is down")
    _, body = wait_for(lambda: (r := agent.get("/healthz"))[0] == 200 and r, 30, "/healthz 200 again", agent)
    assert json.loads(body) == {"status": "ok", "reasons": []}
    wait_for(lambda: agent.status()["sinks"][0]["backlog"] < 5000, 30, "the backlog drained", agent)
    assert _metrics(agent)["edge_agent_sink_retried_total"][(("sink", "mqtt"),)] >= 0


def _subscribe(server: MosquittoServer, topic: str) -> tuple[mqtt.Client, dict[str, dict[str, Any]]]:
    got: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()

    def on_message(c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        with lock:
            got[msg.topic] = {**json.loads(msg.payload), "_retain": msg.retain}

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.on_message = on_message
    c.connect(server.host, server.port)
    c.subscribe(topic, qos=1)
    c.loop_start()
    return c, got


def test_status_topics_are_retained_and_stats_are_logged(
    agent: AgentProcess, mosquitto_server: MosquittoServer, tmp_path: Path
) -> None:
    wait_for(lambda: agent.get("/healthz")[0] == 200, 30, "healthy", agent)
    # A late subscriber gets every status from the broker's retained store.
    client, got = _subscribe(mosquitto_server, f"{tmp_path.name}/+/+/+/+/status")
    agent_client, birth = _subscribe(mosquitto_server, f"{tmp_path.name}/+/edge-agent/+/status")
    try:
        wait_for(lambda: len(got) == 4, 15, "a retained status per asset", agent)
        cnc = got[f"{tmp_path.name}/demo-plant/machining/line1/cnc1/status"]
        assert cnc["_retain"] and cnc["asset"] == "cnc1" and cnc["agent"] == "ops-test"
        assert cnc["state"] in {"off", "idle", "setup", "producing", "fault", "unknown"}
        assert cnc["devices_down"] == [] and isinstance(cnc["kwh_today"], float | int)
        wait_for(lambda: len(birth) == 1, 10, "the agent birth", agent)
        assert next(iter(birth.values()))["state"] == "online"
    finally:
        client.loop_stop()
        client.disconnect()
    # the stats line (every 2 s in this config), one plain line with an ISO 8601 UTC stamp
    line = wait_for(
        lambda: next((ln for ln in agent.log_text().splitlines() if "edge_agent.stats: stats:" in ln), None),
        15,
        "a stats line",
        agent,
    )
    stamp = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "
    assert re.match(stamp + r"INFO edge_agent\.stats: stats: healthy; devices 4/4 up", line), line
    assert agent.stop() == 0
    wait_for(lambda: next(iter(birth.values()))["state"] == "offline", 10, "the offline status on shutdown")
    agent_client.loop_stop()
    agent_client.disconnect()

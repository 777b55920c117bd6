"""Single instance: a second `edge-agent run` on the same buffer is refused, naming the first."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from plant import PlantServer
from servers import MosquittoServer

from edge_agent.demo.plant_config import demo_config


def test_a_second_agent_on_the_same_buffer_is_refused(
    tmp_path: Path, plant_server: PlantServer, mosquitto_server: MosquittoServer
) -> None:
    doc = demo_config(
        modbus_port=plant_server.modbus_port,
        opcua_endpoint=plant_server.opcua_endpoint,
        mqtt_port=mosquitto_server.port,
        data_dir=tmp_path / "agent",
    )
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    lock = Path(doc["buffer"]["path"] + ".lock")
    cli = [sys.executable, "-m", "edge_agent.cli", "run", str(cfg)]
    first = subprocess.Popen(cli, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (lock.exists() and lock.read_text().strip() == str(first.pid)):
            assert first.poll() is None, first.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "first agent never took the buffer"
            time.sleep(0.1)
        second = subprocess.run(cli, stderr=subprocess.PIPE, text=True, timeout=60)
        assert second.returncode != 0
        err = " ".join(second.stderr.split())
        assert f"pid {first.pid}" in err and "in use by another edge-agent" in err, err
        assert "Traceback" not in second.stderr and "ExceptionGroup" not in second.stderr
        assert first.poll() is None  # the first agent is unaffected
    finally:
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err[-3000:]
    # once the first has stopped, the buffer is free again: the lock died with its holder
    third = subprocess.Popen(cli, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (lock.exists() and lock.read_text().strip() == str(third.pid)):
            assert third.poll() is None, third.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "a restarted agent could not take the buffer"
            time.sleep(0.1)
    finally:
        third.send_signal(signal.SIGKILL)  # kill -9: the kernel drops the lock with the process
        third.communicate(timeout=30)

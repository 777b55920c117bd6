"""A running agent as a user runs it (`edge-agent run` in its own process) on its own simulator.

The operations tests kill and restart the simulator (a device going Bad and recovering) and
send signals to the agent, so each test gets its own simulator process rather than the
session-wide one in tests/plant.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from browser import chromium  # noqa: F401  (the status page tests take it from here)
from plant import _wait_listening
from servers import MosquittoServer

from edge_agent.broker import free_port
from edge_agent.demo.plant_config import demo_config

T = TypeVar("T")


class Simulator:
    """``python -m edge_agent_simulators serve`` on fixed ports: a restart is the same device back."""

    def __init__(self, workdir: Path, time_scale: float = 240.0) -> None:
        self.modbus_port, self.opcua_port = free_port(), free_port()
        self.time_scale = time_scale
        self.log = workdir / "simulator.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def opcua_endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.opcua_port}/edge-agent/simulator/"

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "edge_agent_simulators", "serve",
                    "--modbus-port", str(self.modbus_port), "--opcua-port", str(self.opcua_port),
                    "--seed", "7", "--time-scale", str(self.time_scale),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        _wait_listening(self.modbus_port, self.proc, 30)
        _wait_listening(self.opcua_port, self.proc, 30)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


def plant_config(
    workdir: Path, sim: Simulator, mqtt: MosquittoServer | None, *, web_port: int, prefix: str
) -> dict[str, Any]:
    cfg = demo_config(
        modbus_port=sim.modbus_port,
        opcua_endpoint=sim.opcua_endpoint,
        mqtt_port=mqtt.port if mqtt else None,
        data_dir=workdir,
    )
    cfg["agent"] = {"name": "ops-test", "stats_log_interval": 2, "status_interval": 5}
    cfg["status_page"] = {"port": web_port}
    if mqtt is not None:
        cfg["mqtt"].update(
            host=mqtt.host,
            backoff_max=1,
            topic_template=f"{prefix}/{{site}}/{{area}}/{{line}}/{{asset}}/{{kind}}",
            status_topic=f"{prefix}/{{site}}/edge-agent/{{agent}}/status",
        )
    return cfg


class AgentProcess:
    """``edge-agent run`` with plain logs to a file, and its status page as JSON."""

    def __init__(self, workdir: Path, config: dict[str, Any], *, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.config_path = workdir / "agent.yaml"
        self.write_config(config)
        self.port = int(config["status_page"]["port"])
        self.log = workdir / "agent.log"
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def write_config(self, config: dict[str, Any] | str) -> None:
        text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(self.config_path)  # atomic, as an editor or config management would

    def start(self, *extra: str) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edge_agent.cli", "run", str(self.config_path), *extra],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        wait_for(lambda: self.get("/api/status")[0] == 200, 30, "status page up", self)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        req = urllib.request.Request(self.url(path), headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return int(r.status), r.read()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read()
        except OSError:
            return 0, b""

    def status(self) -> dict[str, Any]:
        code, body = self.get("/api/status")
        assert code == 200, f"/api/status answered {code}: {body[:300]!r}"
        doc: dict[str, Any] = json.loads(body)
        return doc

    def device(self, name: str) -> dict[str, Any]:
        return next(d for d in self.status()["devices"] if d["name"] == name)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> int:
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(5)
        self.proc = None
        return code

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def wait_for(
    check: Callable[[], T], within: float, what: str, agent: AgentProcess | None = None, every: float = 0.2
) -> T:
    """Poll ``check`` until truthy; on timeout fail naming ``what`` with the agent's log tail."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            tail = agent.log_text()[-3000:] if agent is not None else ""
            pytest.fail(f"timed out after {within} s waiting for {what}\n--- agent log ---\n{tail}")
        time.sleep(every)


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[Simulator]:
    sim = Simulator(tmp_path)
    sim.start()
    try:
        yield sim
    finally:
        sim.kill()

"""A session-wide plant simulator in its own process, as a user would run it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from edge_agent.broker import free_port


@dataclass(frozen=True)
class PlantServer:
    modbus_port: int
    opcua_port: int

    @property
    def opcua_endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.opcua_port}/edge-agent/simulator/"


def _wait_listening(port: int, proc: subprocess.Popen[bytes], within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"simulator exited early with code {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"simulator did not listen on 127.0.0.1:{port} within {within} s")


@pytest.fixture(scope="session")
def plant_server() -> Iterator[PlantServer]:
    server = PlantServer(free_port(), free_port())
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge_agent_simulators",
            "serve",
            "--modbus-port",
            str(server.modbus_port),
            "--opcua-port",
            str(server.opcua_port),
            "--seed",
            "7",
            "--time-scale",
            "60",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_listening(server.modbus_port, proc, 30)
        _wait_listening(server.opcua_port, proc, 30)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()

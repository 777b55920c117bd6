"""Running as a service: the systemd unit, the notify protocol on a real socket, and logs."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require
from operations_harness import AgentProcess, Simulator, plant_config, simulator, wait_for

from edge_agent.broker import free_port
from edge_agent.logs import JsonFormatter, PlainFormatter, resolve_format
from edge_agent.operations.sdnotify import Notifier, watchdog_interval

__all__ = ["simulator"]

UNIT = Path(__file__).resolve().parents[1] / "deploy" / "edge-agent.service"
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


# -- the unit file ---------------------------------------------------------------------------------
def _verify(unit: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("systemd-analyze")
    require(exe is not None, "systemd-analyze (Debian package 'systemd')")
    assert exe is not None
    return subprocess.run([exe, "verify", str(unit)], capture_output=True, text=True, timeout=60)


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify checks that ExecStart exists, so point it at this checkout's installed entry point.
    installed = Path(sys.executable).with_name("edge-agent")
    assert installed.exists(), f"{installed} missing: pip install -e . first"
    text = UNIT.read_text(encoding="utf-8")
    unit = tmp_path / "edge-agent.service"
    unit.write_text(text.replace("/opt/edge-agent/venv/bin/edge-agent", str(installed)), encoding="utf-8")
    res = _verify(unit)
    assert res.returncode == 0 and res.stderr.strip() == "", res.stderr  # warnings count as failures
    for line in ("Type=notify", "WatchdogSec=30", "ExecReload=/bin/kill -HUP $MAINPID", "--log-format plain"):
        assert line in text
    # ...and verify would catch a mistake (the check above is not vacuous).
    bad = tmp_path / "bad.service"
    bad.write_text(unit.read_text().replace("Type=notify", "Type=notifyy"), encoding="utf-8")
    assert "notifyy" in _verify(bad).stderr


# -- the notify protocol ---------------------------------------------------------------------------
@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    try:
        yield sock, path
    finally:
        sock.close()


def test_notifier_speaks_the_datagram_protocol(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    n = Notifier(path)
    assert n.enabled and n.send(READY=1, STATUS="polling 2 device(s)")
    assert sock.recv(4096) == b"READY=1\nSTATUS=polling 2 device(s)"
    n.close()
    assert not Notifier("").enabled and not Notifier("").send(READY=1)  # not under systemd: no-op


def test_notifier_abstract_socket() -> None:
    name = f"edge-agent-test-{free_port()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert Notifier("@" + name).send(WATCHDOG=1)
        assert sock.recv(64) == b"WATCHDOG=1"


def test_watchdog_interval_from_the_environment() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None  # another process's
    assert watchdog_interval({"WATCHDOG_USEC": "x"}) is None


async def test_watchdog_pings_only_while_the_loops_are_alive(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket
    sock.setblocking(False)
    dead: list[str] = []
    task = asyncio.create_task(Notifier(path).watchdog(lambda: dead[0] if dead else None, 0.02))

    async def drain(seconds: float) -> list[bytes]:
        await asyncio.sleep(seconds)
        got = []
        while True:
            try:
                got.append(sock.recv(4096))
            except BlockingIOError:
                return got

    alive = await drain(0.2)
    assert alive.count(b"WATCHDOG=1") >= 3
    dead.append("loop poll:press1 stopped")
    await drain(0.05)  # the tick in flight
    stalled = await drain(0.3)
    assert b"WATCHDOG=1" not in stalled
    dead.clear()
    assert b"WATCHDOG=1" in await drain(0.2)
    task.cancel()


class _Collector(threading.Thread):
    """Reads the notify socket continuously, as systemd does."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self.sock, self.messages, self.running = sock, list[str](), True
        sock.settimeout(0.2)

    def run(self) -> None:
        while self.running:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue


@pytest.mark.servers
@pytest.mark.slow
def test_agent_notifies_systemd_and_logs_json_off_a_terminal(
    tmp_path: Path, simulator: Simulator, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    got = _Collector(sock)
    got.start()
    dead_port = free_port()  # nothing listens here: an unreachable broker at start-up
    cfg = plant_config(tmp_path, simulator, None, web_port=free_port(), prefix="x")
    cfg["mqtt"] = {"host": "127.0.0.1", "port": dead_port, "backoff_max": 1}
    agent = AgentProcess(tmp_path, cfg, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
    agent.start("--log-format", "json")
    try:
        wait_for(lambda: "READY=1\nSTATUS=polling 4 device(s)" in got.messages, 20, "READY=1", agent)
        wait_for(lambda: got.messages.count("WATCHDOG=1") >= 3, 10, "watchdog pings", agent)
        line = wait_for(
            lambda: next((ln for ln in agent.log_text().splitlines() if "not reachable" in ln), None),
            20, "the unreachable broker logged", agent,
        )  # fmt: skip
        doc = json.loads(line)
        assert doc["level"] == "ERROR" and f"broker 127.0.0.1:{dead_port} not reachable" in doc["msg"]
        code, body = agent.get("/healthz")
        assert code == 503 and "sink mqtt is not connected" in body.decode()
    finally:
        assert agent.stop() == 0, agent.log_text()[-3000:]
        got.running = False
        got.join()
    assert got.messages[0].startswith("READY=1")
    assert got.messages[-1].startswith("STOPPING=1")
    for ln in agent.log_text().splitlines():  # every record is one JSON object with a UTC stamp
        rec = json.loads(ln)
        assert ISO_UTC.match(rec["ts"]) and rec["logger"].startswith(("edge_agent", "aiohttp")), rec


# -- log formats -----------------------------------------------------------------------------------
def _record(msg: str, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            exc_info = sys.exc_info()
    rec = logging.LogRecord("edge_agent.poller", logging.ERROR, __file__, 1, msg, None, exc_info)
    rec.created = 1796530551.123  # 2026-12-06T04:15:51.123Z
    return rec


def test_plain_log_is_one_line_with_an_iso_utc_stamp() -> None:
    text = PlainFormatter().format(_record("device 'press1': cannot open\ntcp 10.0.0.5:502", exc=True))
    assert "\n" not in text
    assert text.startswith(
        "2026-12-06T04:15:51.123Z ERROR edge_agent.poller: device 'press1': cannot open\\ntcp"
    )
    assert "ValueError: boom\\nsecond line" in text


def test_json_log_is_one_object_per_line() -> None:
    text = JsonFormatter().format(_record("device 'press1' tag 'kw': bad value", exc=True))
    assert "\n" not in text
    doc = json.loads(text)
    assert doc["ts"] == "2026-12-06T04:15:51.123Z" and doc["level"] == "ERROR"
    assert doc["msg"] == "device 'press1' tag 'kw': bad value" and "ValueError: boom" in doc["exc"]


def test_auto_format_is_rich_only_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert resolve_format("auto", io.StringIO()) == "plain"
    assert resolve_format("auto", Tty()) == "rich"
    assert resolve_format("json", Tty()) == "json"

"""Fast, in-process checks of the operations pieces: config, auth, health rules, page parts, reload plan."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import Field

from edge_agent.batch import SampleBatch
from edge_agent.broker import free_port
from edge_agent.config import AgentConfig, DeviceConfig, TagConfig, parse_config
from edge_agent.drivers.base import Driver
from edge_agent.errors import ConfigError
from edge_agent.operations.health import assess
from edge_agent.operations.page import render_page, sparkline
from edge_agent.operations.sdnotify import Notifier
from edge_agent.operations.snapshot import BufferStatus, DeviceHealth, RuntimeView, SinkStatus, Snapshot
from edge_agent.operations.web import StatusServer
from edge_agent.runtime.reload import apply_config, plan_reload
from edge_agent.runtime.service import Agent

BASE = """
assets: [{id: m1, site: s, area: a, line: l, rated_power_kw: 10}]
devices: []
"""


def test_status_page_off_loopback_needs_a_password_or_token(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_config(BASE).status_page.bind == "127.0.0.1"
    with pytest.raises(ConfigError, match=r"status_page.bind '0.0.0.0' is not a loopback address"):
        parse_config(BASE + "status_page: {bind: 0.0.0.0}\n")
    monkeypatch.setenv("EA_TEST_TOKEN", "t0ken-secret")
    cfg = parse_config(BASE + "status_page: {bind: 0.0.0.0, token: '${EA_TEST_TOKEN}'}\n")
    assert cfg.status_page.token is not None and "t0ken-secret" not in repr(cfg.status_page)
    assert parse_config(BASE + "status_page: {bind: '::1'}\n").status_page.bind == "::1"


def _get(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


async def test_token_and_password_protect_every_route(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    monkeypatch.setenv("EA_TEST_TOKEN", "tok")
    monkeypatch.setenv("EA_TEST_PW", "pw")
    port = free_port()
    cfg = parse_config(
        BASE + f"status_page: {{port: {port}, token: '${{EA_TEST_TOKEN}}', password: '${{EA_TEST_PW}}'}}\n"
    )
    view = RuntimeView(Agent(cfg), None, "cfg.yaml")
    base = f"http://127.0.0.1:{port}"
    basic = "Basic " + base64.b64encode(b"anyone:pw").decode()
    async with StatusServer(cfg.status_page, view):
        for path in ("/", "/metrics", "/healthz", "/api/status", "/events"):
            assert await asyncio.to_thread(_get, base + path) == 401, path
        assert await asyncio.to_thread(_get, base + "/metrics", {"Authorization": "Bearer tok"}) == 200
        assert await asyncio.to_thread(_get, base + "/metrics?token=tok") == 200
        assert await asyncio.to_thread(_get, base + "/metrics", {"Authorization": basic}) == 200
        assert await asyncio.to_thread(_get, base + "/metrics", {"Authorization": "Bearer wrong"}) == 401
        wrong = "Basic " + base64.b64encode(b"anyone:nope").decode()
        assert await asyncio.to_thread(_get, base + "/metrics", {"Authorization": wrong}) == 401


def _snap(**kw: object) -> Snapshot:
    now = time.time_ns()
    dev = DeviceHealth("press1-modbus", "modbus", True, 10, 0, 0, 0, now - 1_000_000_000, None,
                       {"good": 10, "uncertain": 0, "bad": 0, "missing": 0}, now, 1.0)  # fmt: skip
    base = Snapshot(
        agent="a", version="1", config_file="c.yaml", started_ns=now, uptime_s=5, taken_ns=now,
        loops_alive=True, dead_loops=(), devices=(dev,), assets=(), buffer=BufferStatus(0, 0, 0, 0),
        sinks=(SinkStatus("mqtt", True, 0, 5, 0, 0, 0, None),), analytics_seconds=0.1,
    )  # fmt: skip
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def test_health_rules() -> None:
    snap = _snap()
    assert assess(snap).ok
    stale = dataclasses.replace(snap.devices[0], last_good_ns=snap.taken_ns - 60 * 10**9, error="timeout")
    h = assess(_snap(devices=(stale,)))
    assert not h.ok and "not polling" in h.reasons[0] and "press1-modbus: timeout" in h.reasons[0]
    down = SinkStatus("mqtt", False, 42, 5, 3, 0, 0, "connection refused")
    h = assess(_snap(sinks=(down,)))
    assert h.reasons == (
        "not delivering: sink mqtt is not connected (connection refused); 42 samples wait in the buffer",
    )
    dead = assess(_snap(dead_loops=("poll:press1-modbus (task ended)",)))
    assert dead.reasons == ("loop poll:press1-modbus (task ended) is not running",)
    assert not assess(_snap(devices=())).ok


def test_page_escapes_and_draws_a_sparkline() -> None:
    svg = sparkline([1.0, float("nan"), 3.0, 2.0])
    assert svg.count(",") == 3 and "<polyline" in svg  # NaN left out
    bad = dataclasses.replace(_snap().devices[0], up=False, error="device '<b>x</b>' refused")
    html = render_page(_snap(devices=(bad,)))
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html
    assert "new EventSource" in html and html.count("<script>") == 1


def test_reload_plan_compares_devices_by_name(tmp_path: Path) -> None:
    dev = "{name: %s, driver: modbus, host: 127.0.0.1, port: 502, poll_interval: %s, tags: []}"
    old = parse_config(BASE.replace("devices: []", f"devices: [{dev % ('a', 1)}, {dev % ('b', 1)}]"))
    new_doc = BASE.replace("devices: []", f"devices: [{dev % ('b', 2)}, {dev % ('c', 1)}]")
    new: AgentConfig = parse_config(
        new_doc + f"buffer: {{path: {tmp_path / 'b.db'}}}\nagent: {{name: other, stats_log_interval: 9}}\n"
    )
    plan = plan_reload(old, new)
    assert (plan.added, plan.removed, plan.changed, plan.unchanged) == (["c"], ["a"], ["b"], [])
    assert plan.needs_restart == ["buffer", "agent.name"]
    assert plan.summary() == "added c; removed a; changed b"


def test_readme_gateway_config_block_is_valid() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Run it on a gateway", 1)[1].split("\n## ", 1)[0]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    cfg = parse_config(BASE + block)
    assert cfg.status_page.port == 8470 and cfg.agent.stats_log_interval == 300


class HangConfig(DeviceConfig):
    driver: Literal["hang"] = "hang"
    tags: list[TagConfig] = Field(default_factory=list)


class HangDriver(Driver[HangConfig]):
    """Fault injection: one good read, then a read that never returns (a wedged driver)."""

    config_model = HangConfig

    def __init__(self, config: HangConfig) -> None:
        super().__init__(config)
        self.reads = 0

    async def connect(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def read(self) -> SampleBatch:
        self.reads += 1
        if self.reads > 1:
            await asyncio.Event().wait()
        return SampleBatch.single(self.name, time.time_ns(), {"v": 1.0})


async def test_a_hung_poller_stops_the_watchdog(tmp_path: Path) -> None:
    cfg = AgentConfig.model_validate(
        {
            "assets": [{"id": "m1", "site": "s", "area": "a", "line": "l", "rated_power_kw": 10}],
            "devices": [],
        }
    )
    dev = HangConfig(name="wedged", poll_interval=0.05, timeout=0.05, backoff_max=0.05,
                     tags=[TagConfig(name="v", asset="m1")])  # fmt: skip
    cfg = cfg.model_copy(update={"devices": [dev]})
    drivers: dict[str, Any] = {"hang": HangDriver}
    agent = Agent(cfg, drivers=drivers)
    view = RuntimeView(agent, None, "cfg.yaml")
    stop = asyncio.Event()
    run = asyncio.create_task(agent.run(stop))
    await agent.started.wait()
    assert view.snapshot().dead_loops == ()
    await asyncio.sleep(0.2)
    assert view.snapshot().dead_loops == ()  # first look at the stalled counters starts the clock
    await asyncio.sleep(0.6)  # limit: 3 x (0.05 + 0.05) s
    dead = view.snapshot().dead_loops
    assert len(dead) == 1 and dead[0].startswith("poll:wedged (no read or reconnect attempt for")
    # ...so the watchdog goes quiet.
    sock_path = str(tmp_path / "n.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(sock_path)
        sock.setblocking(False)
        dog = asyncio.create_task(
            Notifier(sock_path).watchdog(lambda: "; ".join(view.snapshot().dead_loops) or None, 0.02)
        )
        await asyncio.sleep(0.1)
        dog.cancel()
        got = []
        while True:
            try:
                got.append(sock.recv(4096))
            except BlockingIOError:
                break
    assert (
        got and all(b"WATCHDOG=1" not in m for m in got) and got[0].startswith(b"STATUS=stalled: poll:wedged")
    )
    stop.set()
    await run


async def test_apply_keeps_restart_only_settings_and_applies_the_rest() -> None:
    asset = {"id": "m1", "site": "s", "area": "a", "line": "l", "rated_power_kw": 10}

    def config(name: str, interval: float, devices: list[str]) -> AgentConfig:
        cfg = AgentConfig.model_validate(
            {"agent": {"name": name, "stats_log_interval": interval}, "assets": [asset], "devices": []}
        )
        devs = [HangConfig(name=d, tags=[TagConfig(name=f"v{i}", asset="m1")]) for i, d in enumerate(devices)]
        return cfg.model_copy(update={"devices": devs})

    drivers: dict[str, Any] = {"hang": HangDriver}
    agent = Agent(config("gw1", 300, ["d1"]), drivers=drivers)
    stop = asyncio.Event()
    run = asyncio.create_task(agent.run(stop))
    await agent.started.wait()
    first = agent.tasks["d1"]
    plan = await apply_config(agent, config("gw2", 9, ["d1", "d2"]))
    assert plan.added == ["d2"] and plan.needs_restart == ["agent.name"]
    assert agent.config.agent.name == "gw1" and agent.config.agent.stats_log_interval == 9
    assert agent.tasks["d1"] is first and not first.done()  # untouched
    assert [p.name for p in agent.pollers] == ["d1", "d2"] and not agent.tasks["d2"].done()
    stop.set()
    await run


def test_the_running_agent_freezes_its_start_up_objects_and_collects_less_often() -> None:
    """A full collection walked the whole plant's objects (0.15-0.7 s at 50,000 tags, every
    few seconds, with the polls stalled): start-up objects are frozen, collections rarer."""
    import gc

    from edge_agent.operations.run import _GC_THRESHOLDS, _settle_garbage_collector

    before = gc.get_threshold()
    keep = [{"a": [i]} for i in range(1000)]  # long-lived objects, like a plant's config
    gc.disable()  # as `edge-agent run` starts
    try:
        _settle_garbage_collector()
        assert gc.isenabled()
        assert gc.get_freeze_count() >= len(keep)
        assert gc.get_threshold() == _GC_THRESHOLDS and _GC_THRESHOLDS[0] > before[0]
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
        gc.enable()


async def test_the_status_topic_publishes_every_change_and_skips_unchanged_assets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The publisher skips an asset by the identity of its totals (new only when its rows are
    booked) while its devices' health and the config stay the same objects: a state change, a
    device going down and back, a reload and staleness must each still publish, and nothing else."""
    from edge_agent.operations import status_topic
    from edge_agent.operations.status_topic import StatusPublisher

    tags = [TagConfig(name=f"p{i}", asset=f"m{i}", role="power", unit="kW") for i in range(3)]
    dev = HangConfig(name="plc", poll_interval=1.0, tags=tags)
    states = {"off_below_kw": 1, "idle_below_kw": 5, "hysteresis_kw": 0, "min_dwell_s": 0}
    cfg = AgentConfig.model_validate(
        {
            "agent": {"status_interval": 3600},
            "assets": [
                {"id": f"m{i}", "site": "s", "area": "a", "line": "l", "rated_power_kw": 10, "states": states}
                for i in range(3)
            ],
            "analytics": {"hold_rows": 0},
            "buffer": {"path": str(tmp_path / "buffer.db")},
            "devices": [],
        }
    ).model_copy(update={"devices": [dev]})
    agent = Agent(cfg, drivers={"hang": HangDriver}, persist_state=False)  # type: ignore[dict-item]
    view = RuntimeView(agent, None, "cfg.yaml")
    sent: list[tuple[str, str, tuple[str, ...]]] = []

    class Target:
        def publish_status(self, asset: Any, state: str, **details: Any) -> None:
            sent.append((asset.id, state, tuple(details["devices_down"])))

    publisher = StatusPublisher(view, Target())
    t = time.time_ns()

    async def poll(kw: list[float]) -> None:
        nonlocal t
        t += 1_000_000_000
        await agent._handle(SampleBatch.single("plc", t, {f"p{i}": v for i, v in enumerate(kw)}))
        view._totals_at = None  # the view's half-second cache, as if a check came later

    def check() -> list[tuple[str, str, tuple[str, ...]]]:
        sent.clear()
        publisher.publish_changed()
        return sorted(sent)

    await poll([0.0, 0.0, 0.0])
    assert check() == [("m0", "off", ()), ("m1", "off", ()), ("m2", "off", ())]
    await poll([0.0, 0.0, 0.0])  # booked again (new totals objects), nothing changed
    assert check() == []
    assert check() == []  # the same objects: skipped by identity
    await poll([0.0, 8.0, 0.0])
    assert check() == [("m1", "producing", ())]
    poller = agent.pollers[0]
    poller.stats.down_since, poller.stats.last_error = time.time(), "device 'plc': no answer within 5 s"
    assert check() == [("m0", "off", ("plc",)), ("m1", "producing", ("plc",)), ("m2", "off", ("plc",))]
    assert check() == []
    poller.stats.down_since = None
    assert check() == [("m0", "off", ()), ("m1", "producing", ()), ("m2", "off", ())]
    agent.config = cfg.model_copy()  # a reload: compared afresh, unchanged assets stay quiet
    assert check() == []
    publisher._last["m2"] = publisher._last["m2"]._replace(when=time.monotonic() - 3601)  # stale
    assert check() == [("m2", "off", ())]
    # a large plant publishes at most MAX_STATUSES_PER_CHECK a check, changed ones first
    monkeypatch.setattr(status_topic, "MAX_STATUSES_PER_CHECK", 2)
    publisher._last["m0"] = publisher._last["m0"]._replace(when=time.monotonic() - 3601)  # stale
    await poll([0.0, 0.0, 9.0])  # m1 stops producing, m2 starts
    assert check() == [("m1", "off", ()), ("m2", "producing", ())]
    assert check() == [("m0", "off", ())]  # the stale one, one check later
    assert check() == []
    monkeypatch.setattr(status_topic, "MAX_STATUSES_PER_CHECK", 1)
    for a in ("m0", "m2"):
        publisher._last[a] = publisher._last[a]._replace(when=time.monotonic() - 3601)
    await poll([0.0, 0.0, 0.0])  # m2 stops: stale and changed, before m0 (stale only)
    assert check() == [("m2", "off", ())]
    assert check() == [("m0", "off", ())]
    assert check() == []

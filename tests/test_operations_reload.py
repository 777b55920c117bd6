"""SIGHUP on a running agent with the simulator: a bad file changes nothing; a good one
changes exactly the devices it changes, while the others keep polling on the same task."""

from __future__ import annotations

import copy
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from operations_harness import AgentProcess, Simulator, plant_config, simulator, wait_for
from servers import MosquittoServer

from edge_agent.broker import free_port

__all__ = ["simulator"]

pytestmark = [pytest.mark.servers, pytest.mark.slow]


@pytest.fixture
def setup(
    tmp_path: Path, simulator: Simulator, mosquitto_server: MosquittoServer
) -> Iterator[tuple[AgentProcess, dict[str, Any]]]:
    cfg = plant_config(tmp_path, simulator, mosquitto_server, web_port=free_port(), prefix=tmp_path.name)
    proc = AgentProcess(tmp_path, cfg)
    proc.start()
    try:
        yield proc, cfg
    finally:
        assert proc.stop() == 0, proc.log_text()[-2000:]


def _by_name(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in status["devices"]}


def _reloaded(agent: AgentProcess, count: int) -> dict[str, Any]:
    return wait_for(lambda: (s := agent.status())["reloads"] == count and s, 15, f"reload #{count}", agent)


def test_sighup_refuses_a_bad_file_and_applies_a_good_one_per_device(
    setup: tuple[AgentProcess, dict[str, Any]],
) -> None:
    agent, cfg = setup
    wait_for(lambda: all(d["polls"] > 3 for d in agent.status()["devices"]), 20, "all devices polling", agent)
    wait_for(lambda: agent.status()["sinks"][0]["delivered"] > 0, 20, "mqtt delivering", agent)
    kept_assets = ("cnc1", "imm1", "comp1")  # their devices' tags are untouched by the reloads below
    wait_for(
        lambda: sum(a["kwh_today"] for a in agent.status()["assets"] if a["id"] in kept_assets) > 0,
        30, "some energy counted", agent,
    )  # fmt: skip
    before = agent.status()
    started = {n: d["started_ns"] for n, d in _by_name(before).items()}

    # 1. A broken file: refused with its errors, the running config stays.
    agent.write_config(
        "agent:\n  name: ops-test\nassets: []\ndevices:\n  - name: x\n    driver: modbus\n    port: nope\n"
    )
    agent.signal(signal.SIGHUP)
    wait_for(lambda: "reload refused, the running config stays" in agent.log_text(), 15, "the refusal", agent)
    refusal = next(ln for ln in agent.log_text().splitlines() if "reload refused" in ln)
    assert "agent.yaml" in refusal and "problem(s)" in refusal  # names the file and lists the errors
    after_bad = agent.status()
    assert after_bad["reloads"] == 0 and after_bad["last_reload"] == "refused (see log)"
    assert {n: d["started_ns"] for n, d in _by_name(after_bad).items()} == started

    # 2. A good file: imm1-modbus polls faster, main-modbus is removed. Nothing else restarts.
    new = copy.deepcopy(cfg)
    for dev in new["devices"]:
        if dev["name"] == "imm1-modbus":
            dev["poll_interval"] = 0.25
    new["devices"] = [d for d in new["devices"] if d["name"] != "main-modbus"]
    mark = agent.status()
    agent.write_config(new)
    agent.signal(signal.SIGHUP)
    status = _reloaded(agent, 1)
    assert status["last_reload"] == "applied: removed main-modbus; changed imm1-modbus"
    devs = _by_name(status)
    assert set(devs) == {"cnc1-modbus", "imm1-modbus", "comp1-opcua"}
    assert devs["imm1-modbus"]["started_ns"] != started["imm1-modbus"]
    assert devs["imm1-modbus"]["poll_interval"] == 0.25
    for name in ("cnc1-modbus", "comp1-opcua"):  # same poller object, counters continue
        assert devs[name]["started_ns"] == started[name]
        assert devs[name]["polls"] >= _by_name(mark)[name]["polls"]
    # ...and they keep polling, the sink keeps its counters and the analytics their totals.
    wait_for(
        lambda: all(_by_name(agent.status())[n]["polls"] > devs[n]["polls"] + 2 for n in devs),
        15, "every device polling after the reload", agent,
    )  # fmt: skip
    now = agent.status()
    assert now["sinks"][0]["delivered"] >= mark["sinks"][0]["delivered"] > 0
    # unchanged assets: analytics state carried over, so totals only grow (a restart would zero them)
    kwh_before = {a["id"]: a["kwh_today"] for a in mark["assets"] if a["id"] in kept_assets}
    kwh_now = {a["id"]: a["kwh_today"] for a in now["assets"] if a["id"] in kept_assets}
    assert all(kwh_now[a] >= kwh_before[a] for a in kept_assets), (kwh_before, kwh_now)
    assert sum(kwh_before.values()) > 0

    # 3. Put main-modbus back: added, and nothing else restarts.
    agent.write_config(cfg)
    agent.signal(signal.SIGHUP)
    status = _reloaded(agent, 2)
    assert status["last_reload"] == "applied: added main-modbus; changed imm1-modbus"
    devs = _by_name(status)
    assert devs["cnc1-modbus"]["started_ns"] == started["cnc1-modbus"]
    wait_for(lambda: _by_name(agent.status())["main-modbus"]["polls"] > 2, 15, "main-modbus polling", agent)
    assert "Traceback" not in agent.log_text()

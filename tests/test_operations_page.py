"""The status page in headless Chromium, live against a running agent and the simulator.

It must show, without a reload: a machine changing state, a device going Bad (simulator
killed) and recovering (simulator back on the same ports), and counters moving.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from operations_harness import AgentProcess, Simulator, chromium, plant_config, simulator, wait_for
from servers import MosquittoServer

from edge_agent.broker import free_port

__all__ = ["simulator"]

pytestmark = [pytest.mark.servers, pytest.mark.slow]


@pytest.fixture
def agent(tmp_path: Path, simulator: Simulator, mosquitto_server: MosquittoServer) -> Iterator[AgentProcess]:
    cfg = plant_config(tmp_path, simulator, mosquitto_server, web_port=free_port(), prefix=tmp_path.name)
    proc = AgentProcess(tmp_path, cfg)
    proc.start()
    try:
        yield proc
    finally:
        assert proc.stop() == 0, proc.log_text()[-2000:]


def _cells(browser: Any, row_attr: str, field: str) -> dict[str, str]:
    """{row key: text of the cell data-field=field} as the page shows it now."""
    result: dict[str, str] = browser.execute_script(
        f"var o={{}}; document.querySelectorAll('tr[data-{row_attr}]').forEach(function(r){{"
        f"var c=r.querySelector('[data-field={field}]'); o[r.dataset['{row_attr}']]=c?c.textContent:null;}});"
        "return o;"
    )
    return result


def test_page_shows_state_changes_and_a_device_going_bad_and_back(
    agent: AgentProcess, simulator: Simulator, tmp_path: Path
) -> None:
    browser = chromium(tmp_path)
    try:
        browser.get(agent.url("/"))
        loads = browser.execute_script("return performance.getEntriesByType('navigation').length")
        wait_for(lambda: "live" in browser.find_element("id", "live").text, 15, "the live stream", agent)
        assert set(_cells(browser, "asset", "state")) == {"cnc1", "imm1", "comp1", "main"}
        assert set(_cells(browser, "device", "status")) == {
            "cnc1-modbus", "imm1-modbus", "comp1-opcua", "main-modbus",
        }  # fmt: skip

        # A machine changes state: first a known state, then a different known one.
        machines = ("cnc1", "imm1", "comp1")
        known = {"off", "idle", "setup", "producing", "fault"}
        first = wait_for(
            lambda: {a: s for a, s in _cells(browser, "asset", "state").items()
                     if a in machines and s in known},
            30, "a machine in a known state", agent,
        )  # fmt: skip

        def changed() -> dict[str, tuple[str, str]]:
            now = _cells(browser, "asset", "state")
            return {a: (s, now[a]) for a, s in first.items() if now.get(a) in known and now[a] != s}

        moved = wait_for(changed, 90, f"a machine to change state from {first}", agent)
        polls_before = {k: int(v) for k, v in _cells(browser, "device", "polls").items()}
        delivered_before = int(_cells(browser, "sink", "delivered")["mqtt"])
        assert all(v > 0 for v in polls_before.values()), polls_before

        # The devices go Bad: the page says so, with the error in words.
        simulator.kill()
        wait_for(
            lambda: all(s == "bad" for s in _cells(browser, "device", "status").values()),
            30, "every device shown Bad after the simulator died", agent,
        )  # fmt: skip
        errors = _cells(browser, "device", "error")
        assert all(e and ("cnc1-modbus" in e or "imm1-modbus" in e or "opcua" in e or "127.0.0.1" in e)
                   for e in errors.values()), errors  # fmt: skip
        shot_bad = tmp_path / "status-bad.png"
        assert browser.save_screenshot(str(shot_bad))

        # ...and recover when it is back on the same ports.
        simulator.start()
        wait_for(
            lambda: all(s == "good" for s in _cells(browser, "device", "status").values()),
            60, "every device Good again", agent,
        )  # fmt: skip
        assert all(not e for e in _cells(browser, "device", "error").values())
        polls_after = {k: int(v) for k, v in _cells(browser, "device", "polls").items()}
        assert all(polls_after[k] > polls_before[k] for k in polls_before), (polls_before, polls_after)
        wait_for(
            lambda: int(_cells(browser, "sink", "delivered")["mqtt"]) > delivered_before,
            15, "the mqtt sink's delivered count to move", agent,
        )  # fmt: skip

        # Everything above happened without a page reload.
        assert browser.execute_script("return performance.getEntriesByType('navigation').length") == loads
        shot = tmp_path / "status.png"
        assert browser.save_screenshot(str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
        keep = os.environ.get("EDGE_AGENT_SCREENSHOT_DIR")
        if keep:  # for the release notes / docs
            shutil.copy(shot, Path(keep) / "status-page.png")
            shutil.copy(shot_bad, Path(keep) / "status-page-bad.png")
        print(f"state change seen: {moved}")
    finally:
        browser.quit()

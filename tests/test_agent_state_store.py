"""Analytics state beside the buffer: round trip, and a clean start with one warning when
the file is missing, damaged, tampered with or from another config (issue #12)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.batch import SampleBatch
from edge_agent.config import AgentConfig, build_config_model
from edge_agent.demo.plant_config import demo_config
from edge_agent.plugins import driver_registry
from edge_agent.runtime.analytics_stage import AnalyticsStage
from edge_agent.runtime.routing import Router
from edge_agent.runtime.state_store import AnalyticsStateStore

NS = 1_000_000_000
T0 = 1_700_006_400 * NS


def config(tmp_path: Path, **analytics: Any) -> AgentConfig:
    raw = demo_config(
        modbus_port=5020, opcua_endpoint="opc.tcp://127.0.0.1:4840/", mqtt_port=None, data_dir=tmp_path
    )
    raw["analytics"].update(analytics)
    model = build_config_model([d.config_model for d in driver_registry().values()])
    return model.model_validate(raw)


def feed(
    stage: AnalyticsStage, cfg: AgentConfig, t_s: list[float], kwh_counts: list[int], state: float = 3.0
) -> None:
    """cnc1 producing (PLC state 3, or ``state``) at 18 kW (50 counts/s of 0.1 Wh)."""
    n = len(t_s)
    zeros = np.zeros(n, np.int64)
    values = {
        "power_kw": np.full(n, 18.0),
        "energy_kwh": np.array(kwh_counts, np.int64),
        "reactive_energy_kvarh": zeros,
        "good_parts": zeros,
        "scrap_parts": zeros,
        "material_kg": zeros,
        "state": np.full(n, state),
    }
    batch = SampleBatch(
        device="cnc1-modbus",
        ts=T0 + (np.array(t_s) * NS).astype(np.int64),
        values=values,
        quality={k: np.zeros(n, np.uint8) for k in values},
    )
    for route, part in Router(cfg).split(batch):
        stage.update(route, part)


def test_state_round_trip_continues_the_counters_across_a_restart(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    store = AnalyticsStateStore.beside_buffer(cfg)
    assert store.path == tmp_path / "buffer.db.analytics-state"
    before = AnalyticsStage(cfg)
    feed(before, cfg, [0, 1, 2], [1000, 1050, 1100])
    store.save(before.state())
    after = AnalyticsStage(cfg)  # "the agent restarted"
    saved = store.load()
    assert saved is not None
    after.restore(saved)
    # down for 3 s, shorter than the max gap (5 s): the first delta still recovers what was
    # drawn meanwhile, unattributed, never booked to the state before the restart
    feed(after, cfg, [5, 6], [1250, 1300])
    t = after.totals()["cnc1"]
    assert t.raw_counts["energy_counter"] == 300
    assert t.energy_by_state_kwh["unknown"] == pytest.approx(0.015, abs=1e-9)  # the 150 counts while down
    assert t.energy_by_state_kwh["producing"] == pytest.approx(0.015, abs=1e-9)  # observed, 150 counts
    assert t.gaps["energy_counter"] == 1


def test_a_state_change_across_the_restart_leaves_the_downtime_unknown(tmp_path: Path) -> None:
    """Producing before a 3 s outage (shorter than the max gap), idle after: when it changed is
    unknown, so the outage is neither producing nor idle time (it was split at an estimated
    instant, booking ~half of the downtime to each state: PBT too long after restarts)."""
    cfg = config(tmp_path)
    before = AnalyticsStage(cfg)
    feed(before, cfg, [0, 1, 2], [1000, 1050, 1100])
    after = AnalyticsStage(cfg)
    after.restore(before.state())
    feed(after, cfg, [5, 6, 7], [1250, 1300, 1350], state=1.0)
    kpis = [k for k in after.flush() if k.asset.id == "cnc1" and k.window == "15s"]
    seconds = {s: sum(float(k.batch.values[f"time_{s}_s"][0]) for k in kpis) for s in ("producing", "idle")}
    unknown = sum(float(k.batch.values["time_unknown_s"][0]) for k in kpis)
    assert seconds == {"producing": pytest.approx(2.0), "idle": pytest.approx(2.0)}
    assert unknown == pytest.approx(3.0)


def test_missing_damaged_tampered_or_foreign_state_starts_clean_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config(tmp_path)
    store = AnalyticsStateStore.beside_buffer(cfg)
    cases = []
    with caplog.at_level("WARNING", logger="edge_agent.agent"):
        cases.append(store.load())  # missing
        stage = AnalyticsStage(cfg)
        store.save(stage.state())
        good = store.path.read_bytes()
        store.path.write_bytes(good[: len(good) // 2])  # truncated by a power cut mid-copy
        cases.append(store.load())
        head = good[: len(good) - len(pickle.dumps({"streams": stage.state()["streams"]}, protocol=5))]
        store.path.write_bytes(head + pickle.dumps(__import__("os").system))  # tampered
        cases.append(store.load())
        foreign = AnalyticsStateStore.beside_buffer(config(tmp_path, kpi_interval=30))
        store.path.write_bytes(good)
        cases.append(foreign.load())  # another config
    assert cases == [None, None, None, None]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 4
    assert "no analytics state" in warnings[0]
    assert "damaged" in warnings[1] and "damaged" in warnings[2]
    assert "another config" in warnings[3]
    store.path.write_bytes(good)
    assert store.load() is not None  # the intact file loads


def test_a_failing_disk_does_not_stop_the_agent(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = config(tmp_path)
    store = AnalyticsStateStore(tmp_path / "ro" / "state", cfg)
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o500)
    try:
        with caplog.at_level("WARNING", logger="edge_agent.agent"):
            store.save(AnalyticsStage(cfg).state())
            store.save(AnalyticsStage(cfg).state())
    finally:
        (tmp_path / "ro").chmod(0o700)
    if store.saves == 0:  # root may write anyway; then there is nothing to check
        assert len([r for r in caplog.records if "cannot save" in r.getMessage()]) == 1


def test_windows_closed_just_before_a_crash_are_replayed_not_lost(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    store = AnalyticsStateStore.beside_buffer(cfg)
    stage = AnalyticsStage(cfg)
    feed(stage, cfg, [0.0, 1.0, 2.0], [1000, 1050, 1100])
    closed = list(stage.flush())  # stands in for windows an update just closed
    assert closed
    store.save(stage.state(closed))  # saved with them; the process dies before delivery
    saved = store.load()
    assert saved is not None
    replay = AnalyticsStage(cfg).restore(saved)
    assert [(k.asset.id, k.window) for k in replay] == [(k.asset.id, k.window) for k in closed]
    assert replay[0].batch.values.keys() == closed[0].batch.values.keys()
    store.save(stage.state())  # the next save: delivered, nothing to replay
    saved = store.load()
    assert saved is not None and AnalyticsStage(cfg).restore(saved) == []

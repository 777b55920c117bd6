"""Analytics state beside the buffer: round trip, and a clean start with one warning when
the file is missing, damaged, tampered with or from another config (issue #12)."""

from __future__ import annotations

import asyncio
import itertools
import os
import pickle
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from edge_agent.batch import SampleBatch
from edge_agent.config import AgentConfig, build_config_model
from edge_agent.demo.plant_config import demo_config
from edge_agent.plugins import driver_registry
from edge_agent.runtime.analytics_stage import AnalyticsStage
from edge_agent.runtime.routing import Router
from edge_agent.runtime.state_store import _PASS_CHUNK, AnalyticsStateStore

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


def fed(tmp_path: Path) -> tuple[AgentConfig, AnalyticsStateStore, AnalyticsStage]:
    """The demo config, its state store, and a stage that saw cnc1 for 3 s."""
    cfg = config(tmp_path)
    stage = AnalyticsStage(cfg)
    feed(stage, cfg, [0, 1, 2], [1000, 1050, 1100])
    return cfg, AnalyticsStateStore.beside_buffer(cfg), stage


def test_missing_damaged_or_older_state_starts_clean_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg, store, stage = fed(tmp_path)
    cases = []
    with caplog.at_level("WARNING", logger="edge_agent.agent"):
        cases.append(store.load())  # missing
        store.path.write_bytes(b"edge-agent analytics state v2\n" + bytes(64))  # the previous format
        cases.append(store.load())
        store.path.write_bytes(np.random.default_rng(1).bytes(4096))  # bit rot
        cases.append(store.load())
    assert cases == [None, None, None]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 3
    assert "no analytics state" in warnings[0]
    assert "older agent version" in warnings[1]
    assert "damaged" in warnings[2] and "not a state database" in warnings[2]
    store.save(stage.state())  # the damaged file was replaced by a fresh database
    fresh = AnalyticsStateStore.beside_buffer(cfg).load()
    assert fresh is not None and set(fresh["streams"]) == set(stage.asset_ids)


def test_a_tampered_asset_or_a_changed_config_restarts_only_those_assets(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg, store, stage = fed(tmp_path)
    store.save(stage.state())
    store.close()
    with sqlite3.connect(store.path) as db:  # a pickle that would run code if loaded blindly
        db.execute("UPDATE asset SET stream = ? WHERE id = 'cnc1'", (pickle.dumps(os.system),))
    with caplog.at_level("WARNING", logger="edge_agent.agent"):
        saved = AnalyticsStateStore.beside_buffer(cfg).load()
    assert saved is not None
    assert "cnc1" not in saved["streams"] and set(saved["streams"]) == set(stage.asset_ids) - {"cnc1"}
    assert any("damaged for cnc1" in r.getMessage() for r in caplog.records)

    # the same file under a config where cnc1's thresholds changed: cnc1 starts clean, the rest go on
    raw = demo_config(
        modbus_port=5020, opcua_endpoint="opc.tcp://127.0.0.1:4840/", mqtt_port=None, data_dir=tmp_path
    )
    next(a for a in raw["assets"] if a["id"] == "imm1")["rated_power_kw"] = 123.0
    changed = build_config_model([d.config_model for d in driver_registry().values()]).model_validate(raw)
    other = AnalyticsStage(changed)
    full = stage.state()
    caplog.clear()
    with caplog.at_level("WARNING", logger="edge_agent.agent"):
        other.restore(full)
    assert any("'imm1' start clean" in r.getMessage() for r in caplog.records)
    assert other._streams["imm1"] is not stage._streams["imm1"]
    assert other._streams["comp1"] is stage._streams["comp1"]


def test_a_failing_disk_does_not_stop_the_agent(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = config(tmp_path)
    store = AnalyticsStateStore(tmp_path / "ro" / "state")
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


def test_saves_are_per_asset_and_forget_assets_no_longer_configured(tmp_path: Path) -> None:
    """A window closing for one asset writes that asset only; the others keep their rows."""
    cfg = config(tmp_path, hold_rows=0)
    store = AnalyticsStateStore.beside_buffer(cfg)
    stage = AnalyticsStage(cfg)
    store.save(stage.state())
    assert stage.changed() == set()
    feed(stage, cfg, [0, 1, 2], [1000, 1050, 1100])
    assert stage.changed() == {"cnc1"}
    store.save(stage.state(assets=["cnc1"]))
    assert stage.changed() == set()
    saved = store.load()
    assert saved is not None and set(saved["streams"]) == set(stage.asset_ids)
    totals = AnalyticsStage(cfg)
    totals.restore(saved)
    assert totals.totals()["cnc1"].raw_counts["energy_counter"] == 100
    assert not any(totals.totals()["imm1"].raw_counts.values())
    store.save(stage.state(assets=["imm1"]), keep_only=["imm1", "cnc1"])  # the others left the config
    saved = store.load()
    assert saved is not None and set(saved["streams"]) == {"imm1", "cnc1"}


def test_the_same_config_in_another_key_order_continues(tmp_path: Path) -> None:
    """A config written back by a YAML dumper that sorts keys (state_codes included) is the
    same config: its assets continue instead of starting clean."""
    raw = demo_config(
        modbus_port=5020, opcua_endpoint="opc.tcp://127.0.0.1:4840/", mqtt_port=None, data_dir=tmp_path
    )
    cnc = next(a for a in raw["assets"] if a["id"] == "cnc1")
    cnc["state_codes"] = {"20": "producing", "10": "idle", "0": "off", "30": "fault", "15": "setup"}
    model = build_config_model([d.config_model for d in driver_registry().values()])
    before, after = model.model_validate(raw), model.model_validate(yaml.safe_load(yaml.safe_dump(raw)))
    assert list(before.asset("cnc1").state_codes) != list(after.asset("cnc1").state_codes)
    stage = AnalyticsStage(before)
    feed(stage, before, [0, 1, 2], [1000, 1050, 1100], state=20.0)
    restored = AnalyticsStage(after)
    restored.restore(stage.state())
    assert restored.totals()["cnc1"].raw_counts["energy_counter"] == 100


def test_closing_saves_do_not_postpone_the_periodic_save(tmp_path: Path) -> None:
    """Issue #13: with held rows the assets' slots are staggered, so some asset's window closes
    every few seconds and is saved alone. Those saves must not restart the periodic clock: it
    is what saves the rows every other asset received meanwhile (they were lost to a crash)."""
    cfg = config(tmp_path, hold_rows=15)
    store = AnalyticsStateStore(tmp_path / "state", interval=0.3)
    stage = AnalyticsStage(cfg)
    feed(stage, cfg, [0, 1, 2], [1000, 1050, 1100])  # cnc1's first rows: booked at once
    store.save(stage.state(assets=store.periodic_chunk(stage.changed)), periodic=True)
    feed(stage, cfg, [3, 4], [1150, 1200])  # held: only a periodic save writes them
    assert stage.changed() == {"cnc1"} and not store.due()
    # another asset's window closes every 50 ms; the periodic save is due 0.3 s after the last
    # one, or 50 times its duration (its cost share) when that is longer: on a loaded machine
    # maybe a second. Before the fix each closing save restarted the clock: never due.
    started = time.monotonic()
    while time.monotonic() - started < 10.0:
        store.save(stage.state(assets=["imm1"]))
        if store.due():
            break
        time.sleep(0.05)
    assert store.due(), "closing saves postponed the periodic save"
    assert store.periodic_chunk(stage.changed) == ["cnc1"]
    store.save(stage.state(assets=["cnc1"]), periodic=True)
    saved = store.load()
    assert saved is not None
    after = AnalyticsStage(cfg)
    after.restore(saved)  # the held rows are booked, then the restart's gap
    assert after.totals()["cnc1"].raw_counts["energy_counter"] == 200


def test_a_periodic_pass_over_many_assets_is_written_in_chunks(tmp_path: Path) -> None:
    """Pickling thousands of assets at once held the event loop for a second (every device
    skipped a poll): a pass hands out at most _PASS_CHUNK assets per round, covers every
    asset that changed, and the next pass waits for the interval."""
    store = AnalyticsStateStore(tmp_path / "state", interval=0.2)
    ids = {f"a{i:03}" for i in range(2 * _PASS_CHUNK + 50)}
    chunks = [store.periodic_chunk(lambda: ids) for _ in range(4)]
    assert [len(c) for c in chunks] == [_PASS_CHUNK, _PASS_CHUNK, 50, 0]
    assert sorted(a for c in chunks for a in c) == sorted(ids)
    assert store.periodic_chunk(lambda: ids) == [], "the next pass waits for the interval"
    started = time.monotonic()
    while not store.due():
        assert time.monotonic() - started < 2, "the next pass never became due"
        time.sleep(0.02)
    assert len(store.periodic_chunk(lambda: ids)) == _PASS_CHUNK


async def test_an_async_save_gives_the_loop_turns_and_writes_what_a_save_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 50,000 tags a round's closing save pickled a hundred streams and windows and wrote
    them in one piece, holding the pollers 15-70 ms: save_async pauses between assets and
    writes in a worker thread, and the file holds exactly what a plain save writes."""
    import edge_agent.runtime.state_store as state_store

    monkeypatch.setattr(state_store, "_TURN_S", 0.0)  # a pause after every asset and window
    cfg = config(tmp_path)
    stage = AnalyticsStage(cfg)
    feed(stage, cfg, [float(t) for t in range(70)], [1000 + 50 * t for t in range(70)])
    closed = list(stage.flush())  # windows closed and not handed over: the outbox
    assert closed
    state = stage.state(closed)
    assert len(state["streams"]) == 4 and state["outbox"]
    plain, paused = AnalyticsStateStore(tmp_path / "plain"), AnalyticsStateStore(tmp_path / "paused")
    plain.save(state)
    turns = 0
    saving = True

    async def other_task() -> None:
        nonlocal turns
        while saving:
            turns += 1
            await asyncio.sleep(0)

    seen: list[int] = []  # the other task's turns at each pickling
    dumps = state_store._dumps
    monkeypatch.setattr(state_store, "_dumps", lambda obj: seen.append(turns) or dumps(obj))
    other = asyncio.create_task(other_task())
    await asyncio.sleep(0)
    await paused.save_async(state)
    saving = False
    await other
    # every asset (its stream with its held rows) and every window pickled in a turn of its own
    n = len(state["streams"])
    assert len(seen) == 2 * n + len(state["outbox"])
    per_asset = seen[: 2 * n : 2] + seen[2 * n :]
    assert all(b > a for a, b in itertools.pairwise(per_asset)), seen
    assert seen[0 : 2 * n : 2] == seen[1 : 2 * n : 2], "an asset's stream and rows in one instant"
    tables = ("SELECT id, inputs, stream FROM asset ORDER BY id", "SELECT * FROM held ORDER BY id")
    tables += ("SELECT item FROM outbox ORDER BY seq",)
    for query in tables:
        with sqlite3.connect(plain.path) as a, sqlite3.connect(paused.path) as b:
            assert a.execute(query).fetchall() == b.execute(query).fetchall(), query
    assert paused.saves == 1 and paused.missing_streams == set()


async def test_a_periodic_async_save_counts_its_own_time_not_its_pauses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The periodic pass is spaced by what saving costs (at most 2 % of the time): the pauses
    an async save gives other tasks are their time, not the save's."""
    import edge_agent.runtime.state_store as state_store

    monkeypatch.setattr(state_store, "_TURN_S", 0.0)
    cfg = config(tmp_path)
    stage = AnalyticsStage(cfg)
    feed(stage, cfg, [float(t) for t in range(5)], [1000 + 50 * t for t in range(5)])
    store = AnalyticsStateStore(tmp_path / "state", interval=0.2)
    chunk = store.periodic_chunk(lambda: set(stage.asset_ids))
    saving = True

    async def busy_task() -> None:  # 30 ms of someone else's work at every turn
        while saving:
            until = time.perf_counter() + 0.03
            while time.perf_counter() < until:
                pass
            await asyncio.sleep(0)

    other = asyncio.create_task(busy_task())
    await asyncio.sleep(0)
    started = time.monotonic()
    await store.save_async(stage.state(assets=chunk), periodic=True)
    wall = time.monotonic() - started
    saving = False
    await other
    assert wall > 0.09  # at least three of the other task's turns fell inside the save
    assert store._pass_cost < wall / 3, (store._pass_cost, wall)


async def test_windows_not_handed_over_within_stop_timeout_are_handed_over_at_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 5,000 assets the stop's flush outlasts stop_timeout. What a slow delivery has not
    taken by then is saved as the outbox and handed over first thing at the next start: the
    windows handed over across the two runs are every window the stop produced."""
    from edge_agent.runtime.service import Agent, Submission

    cfg = config(tmp_path, hold_rows=15)
    cfg = cfg.model_copy(update={"agent": cfg.agent.model_copy(update={"stop_timeout": 0.3})})
    taken: list[tuple[str, str, int]] = []

    class SlowDelivery:
        async def submit_many(self, items: list[Submission]) -> None:
            await asyncio.sleep(0.2)  # one chunk fits in the stop's time, not two
            taken.extend((it.asset.id, it.window or "", int(it.batch.ts[0])) for it in items)

    agent = Agent(cfg, sink=SlowDelivery(), persist_state=True)  # type: ignore[arg-type]
    twin = AnalyticsStage(cfg)  # fed the same: what the stop's flush produces, in order
    for stage in (agent.analytics, twin):
        feed(stage, cfg, [float(t) for t in range(200)], [1000 + 50 * t for t in range(200)])
    produced = [(k.asset.id, k.window, int(k.batch.ts[0])) for k in twin.flush()]
    import edge_agent.runtime.service as service

    monkeypatch.setattr(service, "_STOP_CHUNK", 2)  # several chunks from one asset
    await agent._close_analytics()
    first = list(taken)
    assert first, "nothing was handed over within stop_timeout"
    restarted = Agent(cfg, sink=SlowDelivery(), persist_state=True)  # type: ignore[arg-type]
    replay = [(k.asset.id, k.window, int(k.batch.ts[0])) for k in restarted._replay]
    assert replay, "the windows not handed over were not saved"
    assert first + replay == produced[: len(first) + len(replay)], "a window was lost or doubled"


def test_between_bookings_a_save_writes_the_held_rows_only_and_restores_the_same(tmp_path: Path) -> None:
    """A stream changes only when its rows are booked (once a hold): the saves in between write
    an asset's held rows alone, and what they restore is what a full save restores. A row
    never written (a fresh file) is reported, and the next save brings its stream."""
    cfg = config(tmp_path, hold_rows=15)
    store = AnalyticsStateStore(tmp_path / "state")
    stage = AnalyticsStage(cfg)
    feed(stage, cfg, [0, 1, 2], [1000, 1050, 1100])  # booked at once: the stream changed
    first = stage.state(assets=stage.changed())
    assert set(first["streams"]) == {"cnc1"}
    store.save(first)
    feed(stage, cfg, [3, 4], [1150, 1200])  # held, not booked: the stream is the same
    between = stage.state(assets=stage.changed())
    assert between["streams"] == {} and set(between["rows"]) == {"cnc1"}
    store.save(between)
    saved = store.load()
    assert saved is not None and set(saved["streams"]) == {"cnc1"}
    after = AnalyticsStage(cfg)
    after.restore(saved)
    assert after.totals()["cnc1"].raw_counts["energy_counter"] == 200  # the held rows came back

    fresh = AnalyticsStateStore(tmp_path / "fresh")
    feed(stage, cfg, [5], [1250])
    fresh.save(stage.state(assets=stage.changed()))  # rows only, but no stream row yet
    assert fresh.missing_streams == {"cnc1"}
    feed(stage, cfg, [6], [1300])
    again = stage.state(assets=stage.changed(), streams_of=fresh.missing_streams)
    assert set(again["streams"]) == {"cnc1"}
    fresh.save(again)
    assert fresh.missing_streams == set()
    reloaded = fresh.load()
    assert reloaded is not None and set(reloaded["streams"]) == {"cnc1"}


def test_a_file_of_the_previous_layout_is_migrated_and_continues(tmp_path: Path) -> None:
    """The previous version (v4) kept the held rows in the stream's row; opening its file
    moves them to their own table, once, and the agent continues from it as it would have."""
    cfg = config(tmp_path, hold_rows=15)
    stage = AnalyticsStage(cfg)
    feed(stage, cfg, [0, 1, 2], [1000, 1050, 1100])  # booked at once
    feed(stage, cfg, [3, 4], [1150, 1200])  # held
    closed = list(stage.flush())[:2]  # stands in for windows not yet handed over
    state = stage.state(closed)
    path = tmp_path / "v4.analytics-state"
    with sqlite3.connect(path) as db:  # the v4 layout, as that version wrote it
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute(
            "CREATE TABLE asset (id TEXT PRIMARY KEY, inputs BLOB NOT NULL, stream BLOB NOT NULL, "
            "rows BLOB NOT NULL)"
        )
        db.execute("CREATE TABLE outbox (seq INTEGER PRIMARY KEY, item BLOB NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('format', 'edge-agent analytics state v4')")
        db.executemany(
            "INSERT INTO asset VALUES (?, ?, ?, ?)",
            [
                (a, state["inputs"][a], pickle.dumps(stream), pickle.dumps(state["rows"][a]))
                for a, stream in state["streams"].items()
            ],
        )
        db.executemany("INSERT INTO outbox (item) VALUES (?)", [(pickle.dumps(i),) for i in state["outbox"]])
    db.close()
    store = AnalyticsStateStore(path)
    saved = store.load()
    assert saved is not None and set(saved["streams"]) == set(state["streams"]) == set(saved["rows"])
    resumed = AnalyticsStage(cfg)
    replay = resumed.restore(saved)
    assert [(k.asset.id, k.window) for k in replay] == [(k.asset.id, k.window) for k in closed]
    assert resumed.totals()["cnc1"].raw_counts["energy_counter"] == 200  # the held rows came back
    with sqlite3.connect(path) as db:
        columns = [c[1] for c in db.execute("PRAGMA table_info(asset)")]
        fmt = db.execute("SELECT value FROM meta").fetchone()[0]
        held = db.execute("SELECT count(*) FROM held").fetchone()[0]
    db.close()
    assert columns == ["id", "inputs", "stream"] and fmt.endswith("v5") and held == len(state["streams"])
    # and it goes on in the new layout: a rows-only save, then a load, sees the new rows
    store.save({"streams": {}, "rows": {"cnc1": state["rows"]["cnc1"]}, "inputs": {}, "outbox": []})
    again = AnalyticsStateStore(path).load()
    assert again is not None and set(again["streams"]) == set(state["streams"])
    continued = AnalyticsStage(cfg)
    continued.restore(again)
    assert continued.totals()["cnc1"].raw_counts["energy_counter"] == 200


def test_a_stream_saved_midway_continues_exactly_in_this_and_the_previous_format(tmp_path: Path) -> None:
    """The open windows are saved packed into one set of arrays; a stream saved by the
    previous version (a dict of per-window sums) still loads. Either way, the windows that
    close afterwards are exactly those of a stream never saved."""
    cfg = config(tmp_path)
    stage = AnalyticsStage(cfg, linger_s=0)
    stream = stage._streams["cnc1"]
    rng = np.random.default_rng(3)
    t, counts = 0.0, 1000

    def batch(n: int) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
        nonlocal t, counts
        ts = T0 + ((t + np.arange(n)) * NS).astype(np.int64)
        t += n
        kw = rng.choice([0.0, 4.0, 18.0], n)
        e = counts + np.cumsum((kw * 10).astype(np.int64))
        counts = int(e[-1])
        sig = {"power": kw, "energy_counter": e, "state": rng.choice([0.0, 1.0, 3.0], n)}
        return ts, sig, {r: np.zeros(n, np.uint8) for r in sig}

    for _ in range(40):
        stream.update(*batch(int(rng.integers(1, 20))))
    assert any(op.start.size for op in stream._open_sets().values())
    now_format = pickle.loads(pickle.dumps(stream, protocol=pickle.HIGHEST_PROTOCOL))
    old_format = type(stream).__new__(type(stream))
    old_state = {k: v for k, v in stream.__dict__.items() if k != "spec"}
    old_state["_open"] = stream._open_sets()  # as an earlier version saved it: a dict of sums
    old_format.__setstate__(pickle.loads(pickle.dumps(old_state)))
    for s in (now_format, old_format):
        s.spec = stream.spec
    rest = [batch(int(rng.integers(1, 20))) for _ in range(200)]
    want: list[Any] = []
    got: dict[int, list[Any]] = {0: [], 1: []}
    for b in rest:
        want += stream.update(*b)
        for i, s in enumerate((now_format, old_format)):
            got[i] += s.update(*b)
    want += stream.flush()
    for i, s in enumerate((now_format, old_format)):
        got[i] += s.flush()
        assert [(w.window, w.start_ns, list(w.kpis)) for w in got[i]] == [
            (w.window, w.start_ns, list(w.kpis)) for w in want
        ]
        np.testing.assert_array_equal(  # exactly equal, NaN where NaN
            [[*w.kpis.values(), w.coverage] for w in got[i]], [[*w.kpis.values(), w.coverage] for w in want]
        )
    assert len({w.window for w in want}) >= 3


#: a SampleBatch pickled by the previous version (column by column): text, NaN, a partial status
_BATCH_PICKLED_BEFORE = (
    "eJyNUU1Lw0AQzSYWixYsFPTqRaiXgOjBg1Kw0IOBFCoeJeRj0y00adluhIKiIkULe+vob/Wmk02KGxFxDju7OzNv3pt5rL09m4Yy2aTRkHr+"
    "kKbCDnwRMpDbV34yHdML9VrB4RPcQFtaEb0F2UqzZDq3vXDCqY13ykchVngxnyRBFseUY0X7vVmgG6T0ZTcDZE0BoI/EfEoxWZqjU1i+vsAA"
    "2o4lyRm4rnv5iaYOxxAQOOYCJOmCwKR75EJ8YPXvLoV9dEr/AKwhzVhDZc3fMVkrR5QkrcBZpd9Yk2Y7evIM5K4+hSQbi5HPuY+qGh6n4SSd"
    "CZ6FAsWxLbmZRkVwBY6xgC4JoGBFFCgy7Vf03/3Q30GuS7WAwbUL0ur3ekDxL8NBsL2c93q4hqngsiNN+PFfwtl+pRyFnmvBAz1IqkFsXvSu"
    "awuwSA6RMzj57+hnNLC/AFvU4o0="
)


def _same_batch(a: SampleBatch, b: SampleBatch) -> None:
    assert (a.device, a.ts.tolist()) == (b.device, b.ts.tolist())
    for got, want in ((a.values, b.values), (a.quality, b.quality), (a.status, b.status)):
        assert list(got) == list(want)  # the tag order too: it is the payload's column order
        for name, col in want.items():
            assert got[name].dtype == col.dtype, name
            assert np.array_equal(got[name], col, equal_nan=col.dtype.kind == "f"), name


def test_batches_in_the_outbox_pickle_packed_and_the_previous_format_still_loads() -> None:
    """The outbox pickles every KPI window closed; packed by dtype they round-trip exactly, and
    a batch pickled column by column by the previous version loads the same."""
    import base64
    import zlib

    old = pickle.loads(zlib.decompress(base64.b64decode(_BATCH_PICKLED_BEFORE)))
    _same_batch(
        old,
        SampleBatch(
            "dev",
            np.array([1, 2], np.int64),
            {"a": np.array([1.5, np.nan]), "n": np.array([3, 4]), "s": np.array(["RUN", "OFF"], object)},
            {
                "a": np.array([0, 2], np.uint8),
                "n": np.array([0, 0], np.uint8),
                "s": np.array([1, 0], np.uint8),
            },
            {"a": np.array([0, 0x103], np.uint32)},
        ),
    )
    rng = np.random.default_rng(7)
    kinds = [np.float64, np.int64, np.uint32, np.float32, object, ">f4"]
    for _ in range(50):
        n = int(rng.integers(0, 5))
        names = [f"t{i}" for i in rng.permutation(int(rng.integers(0, 12)))]
        values: dict[str, np.ndarray] = {}
        for name in names:
            kind = kinds[int(rng.integers(len(kinds)))]
            if kind is object:
                values[name] = np.array([f"s{v}" for v in rng.integers(0, 9, n)], object)
            else:
                col = rng.normal(size=n) * 1e3
                if np.dtype(kind).kind == "f":
                    col[rng.random(n) < 0.2] = np.nan
                values[name] = col.astype(kind) if np.dtype(kind).kind == "f" else np.abs(col).astype(kind)
        quality = {t: rng.integers(0, 4, n).astype(np.uint8) for t in names}
        status = {t: rng.integers(0, 2**32, n).astype(np.uint32) for t in names if rng.random() < 0.3}
        batch = SampleBatch("d", np.sort(rng.integers(0, 10**18, n)), values, quality, status)
        _same_batch(pickle.loads(pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)), batch)

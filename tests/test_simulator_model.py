"""The plant model on its own: determinism, exact truth, counters, retrofit, schedule, maps."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from edge_agent.config.types import ROLE_UNITS
from edge_agent_simulators.catalog import ASSETS, MACHINES, SIGNALS, UNIT_IDS, opcua_nodes, register_map
from edge_agent_simulators.config import RetrofitConfig
from edge_agent_simulators.plant import PlantModel, TickBlock
from edge_agent_simulators.states import MachineState
from edge_agent_simulators.truth import COUNTER_MODULUS

MONDAY = datetime(2024, 3, 4, tzinfo=UTC).timestamp()  # a Monday, 00:00 UTC
LIVE_START = 1_750_000_000.0


def live_model(**kw: object) -> PlantModel:
    """The configuration the demo uses: 0.1 s ticks, compressed schedule."""
    args: dict[str, object] = {"seed": 42, "start": LIVE_START, "tick_s": 0.1, "time_scale": 240.0}
    args.update(kw)
    return PlantModel(**args)  # type: ignore[arg-type]


def concat(blocks: list[TickBlock], asset: str, field: str) -> np.ndarray:
    return np.concatenate([getattr(b.assets[asset], field) for b in blocks])


# ---- signal catalogue ---------------------------------------------------------------------------
def test_state_codes_are_fixed() -> None:
    assert [(s.name, int(s)) for s in MachineState] == [
        ("OFF", 0),
        ("IDLE", 1),
        ("SETUP", 2),
        ("PRODUCING", 3),
        ("FAULT", 4),
    ]


def test_register_map_is_complete_contiguous_and_mirrored() -> None:
    entries = register_map()
    assert {e.unit_id for e in entries} == {1, 2, 3, 4}
    assert {e.asset: e.unit_id for e in entries} == UNIT_IDS == {"cnc1": 1, "imm1": 2, "comp1": 3, "main": 4}
    holding = [e for e in entries if e.register_type == "holding"]
    inputs = [e for e in entries if e.register_type == "input"]
    assert len(holding) == len(inputs) == len(SIGNALS)
    strip = [(e.asset, e.signal, e.address, e.data_type, e.scale, e.role, e.unit) for e in holding]
    assert strip == [(e.asset, e.signal, e.address, e.data_type, e.scale, e.role, e.unit) for e in inputs]
    words = {"float32": 2, "uint32": 2, "uint16": 1}
    for asset in ASSETS:
        mine = sorted((e for e in holding if e.asset == asset), key=lambda e: e.address)
        addr = 0
        for e in mine:  # no gaps, no overlaps, sizes match the type
            assert e.address == addr, (asset, e.signal)
            assert e.count == words[e.data_type]
            addr += e.count
    # every role/unit pair is one the agent's config accepts
    for e in entries:
        assert e.unit in ROLE_UNITS[e.role], (e.signal, e.role, e.unit)
    by = {(e.asset, e.signal): e for e in holding}
    for a in ASSETS:
        assert by[(a, "energy_kwh")].data_type == "uint32"
        assert by[(a, "energy_kwh")].scale == 0.0001
        assert by[(a, "reactive_energy_kvarh")].scale == 0.0001
        assert by[(a, "power_kw")].role == "power"
    for m in MACHINES:
        assert by[(m, "material_kg")].scale == 0.001
        assert by[(m, "state")].data_type == "uint16"
        assert {by[(m, s)].role for s in ("good_parts", "scrap_parts")} == {
            "good_part_counter",
            "scrap_counter",
        }
    assert by[("comp1", "air_flow_m3min")].unit == "m3/min"
    assert by[("main", "outdoor_temp_c")].role == "temperature"


def test_opcua_nodes_describe_the_same_signals() -> None:
    nodes = opcua_nodes()
    regs = [e for e in register_map() if e.register_type == "holding"]
    assert [(n.asset, n.signal, n.role, n.unit, n.scale) for n in nodes] == [
        (e.asset, e.signal, e.role, e.unit, e.scale) for e in regs
    ]
    for n in nodes:
        assert n.node_id == f"nsu=urn:edge-agent:simulator;s={n.asset}.{n.signal}"
        assert n.browse_path == ("Objects", "Plant", n.asset, n.signal)
        if n.data_type == "Double":
            assert n.unece_code is not None
        else:
            assert n.unece_code is None
    codes = {n.signal: n.unece_code for n in nodes if n.asset == "comp1"}
    assert codes["power_kw"] == "KWT" and codes["air_flow_m3min"] == "G53"
    assert codes["pressure_bar"] == "BAR"


def test_register_map_doc_matches_the_data() -> None:
    doc = (Path(__file__).parents[1] / "simulators" / "REGISTER_MAP.md").read_text(encoding="utf-8")
    rows: list[tuple[str, int, int, int, str, str, float, str, str]] = []
    for block in re.finditer(r"### Unit (\d+): `(\w+)`.*?\n\n(.*?)\n\n", doc, re.S):
        unit, asset = int(block[1]), block[2]
        for line in block[3].splitlines()[2:]:
            cells = [c.strip() for c in line.strip("|").split("|")]
            addr, words, name, dtype, scale, unit_, role = cells[:7]
            rows.append(
                (asset, unit, int(addr), int(words), name.strip("`"), dtype, float(scale), unit_, role)
            )
    expected = [
        (e.asset, e.unit_id, e.address, e.count, e.signal, e.data_type, e.scale, e.unit, e.role)
        for e in register_map()
        if e.register_type == "holding"
    ]
    assert rows == expected


# ---- determinism --------------------------------------------------------------------------------
def test_same_seed_same_plant_other_seed_other_plant() -> None:
    a, b, c = live_model(), live_model(), live_model(seed=7)
    ba, bb, bc = a.advance(600), b.advance(600), c.advance(600)
    for asset in ASSETS:
        np.testing.assert_array_equal(ba.assets[asset].state, bb.assets[asset].state)
        np.testing.assert_array_equal(ba.assets[asset].power_kw, bb.assets[asset].power_kw)
    assert a.snapshot().values == b.snapshot().values
    assert not np.array_equal(ba.assets["cnc1"].power_kw, bc.assets["cnc1"].power_kw)


def test_advancing_in_chunks_equals_one_call() -> None:
    whole, parts = (
        PlantModel(seed=3, start=MONDAY, tick_s=10.0),
        PlantModel(seed=3, start=MONDAY, tick_s=10.0),
    )
    one = whole.advance(8640)  # a day of 10 s ticks
    chunks = [parts.advance(n) for n in (1, 999, 2000, 5640)]
    for asset in ASSETS:
        for field in ("state", "good", "scrap", "power_kw"):
            got = concat(chunks, asset, field)
            if asset in ("comp1", "main") and field == "power_kw":  # float phase carry
                np.testing.assert_allclose(got, getattr(one.assets[asset], field), rtol=1e-9)
            else:
                np.testing.assert_array_equal(got, getattr(one.assets[asset], field), err_msg=asset)
    assert whole.truth()["imm1"].good_parts == parts.truth()["imm1"].good_parts > 0


# ---- truth ----------------------------------------------------------------------------------------
def test_truth_adds_up_for_every_asset() -> None:
    model = PlantModel(seed=11, start=MONDAY, tick_s=30.0)
    blocks = [model.advance(2880) for _ in range(3)]  # three days
    truth = model.truth()
    for asset in ASSETS:
        t = truth[asset]
        assert math.fsum(t.energy_kwh_by_state.values()) == pytest.approx(t.energy_kwh, rel=1e-12)
        independent = math.fsum(concat(blocks, asset, "energy_kwh"))
        assert t.energy_kwh == pytest.approx(independent, rel=1e-12)
        power_integral = math.fsum(concat(blocks, asset, "power_kw") * 30.0 / 3600.0)
        assert t.energy_kwh == pytest.approx(power_integral, rel=1e-12)
        assert sum(t.seconds_by_state.values()) == pytest.approx(3 * 86400.0)
        assert t.energy_kwh > 0
    subs = sum(truth[a].energy_kwh for a in ("cnc1", "imm1", "comp1"))
    assert truth["main"].energy_kwh == pytest.approx(subs + truth["main"].base_kwh, rel=1e-12)
    for m in MACHINES:
        assert truth[m].good_parts > 0 and truth[m].scrap_parts > 0
        assert truth[m].energy_kwh_by_state["producing"] > truth[m].energy_kwh_by_state["setup"] > 0
    # parts follow the cycle time exactly: cycles = ⌊producing seconds / cycle⌋
    cfg = model.config.machines["imm1"]
    produced = truth["imm1"].good_parts + truth["imm1"].scrap_parts
    cycles = math.floor(truth["imm1"].seconds_by_state["producing"] / cfg.cycle_s)
    assert produced == cycles * cfg.parts_per_cycle


def test_counters_track_the_energy_that_flowed() -> None:
    model = live_model()
    model.advance(5)
    before = {s.key: model.snapshot().values[s.key] for s in SIGNALS if s.data_type == "uint32"}
    blocks = [model.advance(100) for _ in range(20)]
    after = model.snapshot().values
    truth = model.truth()
    for asset in ASSETS:
        flowed = math.fsum(concat(blocks, asset, "energy_kwh")) * 10_000
        delta = (int(after[f"{asset}.energy_kwh"]) - int(before[f"{asset}.energy_kwh"])) % COUNTER_MODULUS
        assert abs(delta - flowed) <= 1.0, asset
        for name in truth[asset].counter_initial or {}:
            assert after[f"{asset}.{name}"] == truth[asset].expected_counter(name)
    for m in MACHINES:
        good = int(concat(blocks, m, "good").sum())
        assert (int(after[f"{m}.good_parts"]) - int(before[f"{m}.good_parts"])) % COUNTER_MODULUS == good


def test_main_meter_rolls_over_within_seconds_and_truth_stays_continuous() -> None:
    model = live_model()
    model.advance(1)
    first = int(model.snapshot().values["main.energy_kwh"])
    assert first > COUNTER_MODULUS - 20_000  # starts just below 2^32
    last_energy, wrapped_at = 0.0, None
    for k in range(2, 301):
        model.advance(1)
        raw = int(model.snapshot().values["main.energy_kwh"])
        t = model.truth()["main"]
        assert t.energy_kwh > last_energy  # truth never jumps back
        last_energy = t.energy_kwh
        assert raw == t.expected_counter("energy_kwh")
        if wrapped_at is None and raw < first:
            wrapped_at = k * model.tick_s
    assert wrapped_at is not None and 3.0 <= wrapped_at <= 15.0


def test_counter_reset_reads_zero_and_keeps_truth() -> None:
    model = live_model()
    model.advance(200)
    truth_before = model.truth()["cnc1"].energy_kwh
    model.counter_reset("cnc1", "energy_kwh")
    assert model.snapshot().values["cnc1.energy_kwh"] == 0
    assert model.truth()["cnc1"].energy_kwh == truth_before
    blk = model.advance(300)
    expected = math.floor(
        truth_before * 10_000 + math.fsum(blk.assets["cnc1"].energy_kwh) * 10_000
    ) - math.floor(truth_before * 10_000)
    assert abs(int(model.snapshot().values["cnc1.energy_kwh"]) - expected) <= 1
    assert model.truth()["cnc1"].expected_counter("energy_kwh") == model.snapshot().values["cnc1.energy_kwh"]
    with pytest.raises(ValueError, match=r"cnc1\.power_kw is not a counter"):
        model.counter_reset("cnc1", "power_kw")
    with pytest.raises(KeyError, match="no signal 'kwh'"):
        model.counter_reset("cnc1", "kwh")


# ---- retrofit ----------------------------------------------------------------------------------
def test_retrofit_cuts_idle_power_and_scrap_without_changing_decisions() -> None:
    base = PlantModel(seed=5, start=MONDAY, tick_s=60.0)
    retro = PlantModel(seed=5, start=MONDAY, tick_s=60.0, retrofit_at=MONDAY + 2 * 86400)
    bb, br = base.advance(7 * 1440), retro.advance(7 * 1440)
    after = bb.t_start >= MONDAY + 2 * 86400
    for m in MACHINES:
        np.testing.assert_array_equal(bb.assets[m].state, br.assets[m].state)
        parts_b = bb.assets[m].good + bb.assets[m].scrap
        np.testing.assert_array_equal(parts_b, br.assets[m].good + br.assets[m].scrap)
        idle = bb.assets[m].state == MachineState.IDLE
        ratio = br.assets[m].power_kw[idle & after] / bb.assets[m].power_kw[idle & after]
        np.testing.assert_allclose(ratio, 0.7, rtol=1e-12)
        np.testing.assert_array_equal(br.assets[m].power_kw[~after], bb.assets[m].power_kw[~after])
        np.testing.assert_array_equal(br.assets[m].power_kw[~idle], bb.assets[m].power_kw[~idle])
        # each scrap decision uses the same draw: retrofit scrap is a subset, about 20 % fewer
        sb, sr = bb.assets[m].scrap[after].sum(), br.assets[m].scrap[after].sum()
        assert np.all(br.assets[m].scrap <= bb.assets[m].scrap)
        assert 0.65 < sr / sb < 0.95
    np.testing.assert_array_equal(bb.assets["comp1"].power_kw, br.assets["comp1"].power_kw)
    saved = base.truth()["main"].energy_kwh - retro.truth()["main"].energy_kwh
    idle_saved = sum(
        base.truth()[m].energy_kwh_by_state["idle"] - retro.truth()[m].energy_kwh_by_state["idle"]
        for m in MACHINES
    )
    assert saved == pytest.approx(idle_saved, rel=1e-9) and saved > 0


def test_retrofit_parameters_are_configurable() -> None:
    cfg = RetrofitConfig(idle_power_factor=0.5, scrap_factor=1.0, assets=("imm1",))
    base = PlantModel(seed=5, start=MONDAY, tick_s=60.0)
    retro = PlantModel(seed=5, start=MONDAY, tick_s=60.0, retrofit_at=MONDAY, retrofit=cfg)
    bb, br = base.advance(1440), retro.advance(1440)
    idle = bb.assets["imm1"].state == MachineState.IDLE
    np.testing.assert_allclose(br.assets["imm1"].power_kw[idle] / bb.assets["imm1"].power_kw[idle], 0.5)
    np.testing.assert_array_equal(br.assets["cnc1"].power_kw, bb.assets["cnc1"].power_kw)
    np.testing.assert_array_equal(br.assets["imm1"].scrap, bb.assets["imm1"].scrap)


# ---- schedule ------------------------------------------------------------------------------------
def test_compressed_demo_shows_every_state_within_30_seconds() -> None:
    model = live_model()
    blk = model.advance(300)  # 30 s of 0.1 s ticks
    seen = set(np.unique(np.concatenate([blk.assets[m].state for m in MACHINES])).tolist())
    assert seen == {0, 1, 2, 3, 4}
    for m in MACHINES:
        assert np.count_nonzero(np.diff(blk.assets[m].state)) >= 3, m
    # the schedule runs 240× faster, the physics does not
    assert blk.schedule_s[-1] - blk.schedule_s[0] == pytest.approx(299 * 0.1 * 240)
    assert blk.t_start[-1] - blk.t_start[0] == pytest.approx(299 * 0.1)
    loaded = blk.assets["comp1"].loaded
    assert loaded.any() and (~loaded).any()


def test_realistic_week_follows_shifts() -> None:
    model = PlantModel(seed=42, start=MONDAY, tick_s=60.0)
    blk = model.advance(7 * 1440)
    hours = (blk.schedule_s % 86400) / 3600
    day = ((blk.schedule_s - MONDAY) // 86400).astype(int)
    for m in MACHINES:
        st = blk.assets[m].state
        active = (st == MachineState.PRODUCING) | (st == MachineState.SETUP) | (st == MachineState.FAULT)
        assert not active[(hours < 6) | (hours >= 22)].any(), m  # nights: off or left idle
        assert not active[day == 6].any(), m  # Sunday
        weekday = day < 5
        assert (st[weekday & (hours >= 6) & (hours < 6 + 5 / 60)] == MachineState.SETUP).all()
        for d in range(5):  # every weekday produces, and daily volumes differ
            assert (st[day == d] == MachineState.PRODUCING).sum() > 200
    good_per_day = [int(blk.assets["cnc1"].good[day == d].sum()) for d in range(5)]
    assert len(set(good_per_day)) == 5
    off = blk.assets["comp1"].state == MachineState.OFF
    np.testing.assert_array_equal(blk.assets["comp1"].power_kw[off], 0.0)


def test_compressor_delivers_what_the_plant_consumes() -> None:
    model = PlantModel(seed=9, start=MONDAY, tick_s=5.0)
    model.advance(5 * 17280)  # Monday to Friday
    t = model.truth()["comp1"]
    delivered_m3 = model.config.compressor.capacity_m3min * t.loaded_s / 60.0
    assert delivered_m3 == pytest.approx(t.air_m3, rel=0.01)
    assert t.energy_kwh_by_state["producing"] > t.energy_kwh_by_state["idle"] > 0


def test_temperature_has_daily_and_seasonal_cycles() -> None:
    winter = PlantModel(seed=1, start=datetime(2024, 1, 15, tzinfo=UTC).timestamp(), tick_s=600.0)
    summer = PlantModel(seed=1, start=datetime(2024, 7, 15, tzinfo=UTC).timestamp(), tick_s=600.0)
    w, s = winter.advance(14 * 144), summer.advance(14 * 144)
    assert s.outdoor_temp_c.mean() - w.outdoor_temp_c.mean() > 10
    hours = (w.schedule_s % 86400) / 3600
    assert (
        w.outdoor_temp_c[(hours >= 14) & (hours < 16)].mean()
        > w.outdoor_temp_c[(hours >= 2) & (hours < 4)].mean() + 4
    )


# ---- bad input -----------------------------------------------------------------------------------
def test_bad_parameters_name_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="tick_s must be a positive whole number of milliseconds"):
        PlantModel(tick_s=0.0001)
    with pytest.raises(ValueError, match="time_scale must be > 0"):
        PlantModel(time_scale=0)
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        PlantModel(tz="Mars/Olympus")
    with pytest.raises(ValueError, match=r"RetrofitConfig\.assets names unknown assets \['press9'\]"):
        PlantModel(retrofit=RetrofitConfig(assets=("press9",)))
    with pytest.raises(ValueError, match=r"'cnc1\.power_kw' is not a counter"):
        PlantModel(counter_init={"cnc1.power_kw": 5})
    with pytest.raises(ValueError, match=r"outside 0 … 2\^32-1"):
        PlantModel(counter_init={"cnc1.energy_kwh": 2**32})
    with pytest.raises(RuntimeError, match="call advance"):
        PlantModel().snapshot()
    with pytest.raises(KeyError, match="unknown asset 'press9'"):
        PlantModel().counter_reset("press9", "energy_kwh")

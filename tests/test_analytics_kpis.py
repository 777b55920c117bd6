"""Golden tests: every KPI against values computed by hand from docs/kpi-definitions.md.

The series are sampled every 60 s so each interval's trapezoid can be checked on paper;
the arithmetic is written out next to each expectation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from analytics_oracle import reference

from edge_agent.analytics import (
    AssetSpec,
    CounterSpec,
    EmissionSeries,
    FixedWindow,
    StateThresholds,
    StreamingAnalytics,
    WindowKpis,
)

NS = 1_000_000_000
T0 = 1_700_006_400 * NS  # a UTC midnight: aligned to every window and block
KWS = 1 / 3600  # kW·s → kWh


def run(spec: AssetSpec, ts: np.ndarray, sig: dict[str, np.ndarray]) -> dict[str, WindowKpis]:
    q = {r: np.zeros(ts.size, np.uint8) for r in sig}
    sa = StreamingAnalytics(spec)
    out = sa.update(ts, sig, q) + sa.flush()
    ref = reference(spec, ts, sig, q).windows
    got = {w.window: w for w in out if w.start_ns == T0}
    exp = {w.window: w for w in ref if w.start_ns == T0}
    assert got.keys() == exp.keys()
    for name in got:  # the oracle agrees on every key
        for k, v in exp[name].kpis.items():
            assert got[name].kpis[k] == pytest.approx(v, rel=1e-12, abs=1e-12, nan_ok=True), k
    return got


# ---- a machine: power-integrated energy, parts, scrap, material, reactive energy -------
#   t (s):  0   60  120 180 240 300 360 420 480 540 600 660 720 780 840 900
#   P (kW): 0.5 0.5 5   5   20  20  20  20  20  20  5   5   5   5   0.5 0.5
# Thresholds off < 1 kW, idle < 10 kW, no hysteresis, no dwell: each interval takes the
# state of its start sample, except the four that straddle a change (60–120, 180–240,
# 540–600, 780–840 s). For power-integrated energy the change falls half way (τ = 30 s) and
# the old state gets P₀·τ of the trapezoid, the new state the rest.
P = [0.5, 0.5, 5, 5, 20, 20, 20, 20, 20, 20, 5, 5, 5, 5, 0.5, 0.5]
PARTS = [0, 0, 0, 0, 0, 3, 6, 9, 12, 15, 18, 18, 18, 18, 18, 18]  # 3 per producing minute
SCRAP = [0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 2, 2]
MATERIAL = [0, 0, 0, 0, 50, 100, 150, 200, 250, 300, 350, 400, 450, 500, 500, 500]  # 0.1 kg
KVAR = [0, 0, 0, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 1100, 1200, 1200]  # varh

# interval energies (kW·s), change intervals as old + new part:
#   [60,120) 165 = 0.5·30 + 150   [180,240) 750 = 5·30 + 600
#   [540,600) 750 = 20·30 + 150   [780,840) 165 = 5·30 + 15
# off   [0,60) 30, 15, 15, [840,900) 30                              → 90
# idle  150, [120,180) 300, 150, 150, [600,780) 3×300, 150            → 1800
# prod  600, [240,540) 5×1200, 600                                    → 7200
E_OFF, E_IDLE, E_PROD = 90 * KWS, 1800 * KWS, 7200 * KWS
E = E_OFF + E_IDLE + E_PROD  # 9090 kW·s = 2.525 kWh


@pytest.fixture(scope="module")
def machine() -> dict[str, WindowKpis]:
    spec = AssetSpec(
        asset="press-1",
        rated_power_kw=30.0,
        thresholds=StateThresholds(off_below_kw=1.0, idle_below_kw=10.0),
        counters={
            "part_counter": CounterSpec(max_rate_per_s=1.0),
            "scrap_counter": CounterSpec(max_rate_per_s=1.0),
            "material_counter": CounterSpec(scale=0.1, max_rate_per_s=10.0),
            "reactive_energy_counter": CounterSpec(scale=0.001),
        },
        ideal_cycle_time_s=15.0,
        emission_factor=0.4,
        max_gap_s=120.0,
        demand_block_s=300,
        windows=(FixedWindow("15min", 900),),
    )
    ts = T0 + np.arange(16, dtype=np.int64) * 60 * NS
    sig: dict[str, np.ndarray] = {
        "power": np.array(P, np.float64),
        "part_counter": np.array(PARTS, np.uint32),
        "scrap_counter": np.array(SCRAP, np.uint32),
        "material_counter": np.array(MATERIAL, np.uint32),
        "reactive_energy_counter": np.array(KVAR, np.uint32),
    }
    return run(spec, ts, sig)


def test_energy_and_energy_by_state(machine: dict[str, WindowKpis]) -> None:
    k = machine["15min"].kpis
    assert k["energy_kwh"] == pytest.approx(2.525)
    assert k["energy_off_kwh"] == pytest.approx(E_OFF)
    assert k["energy_idle_kwh"] == pytest.approx(E_IDLE)
    assert k["energy_producing_kwh"] == pytest.approx(E_PROD)
    for s in ("setup", "fault", "unknown"):
        assert k[f"energy_{s}_kwh"] == 0.0
    assert k["idle_share"] == pytest.approx(1800 / 9090)
    assert k["mean_power_kw"] == pytest.approx(9090 / 900)


def test_time_in_state_and_oee(machine: dict[str, WindowKpis]) -> None:
    k = machine["15min"].kpis
    # each change half way through its interval: off [0,90) + [810,900) = 180 s;
    # idle [90,210) + [570,810) = 360 s; producing [210,570) = 360 s
    assert (k["time_off_s"], k["time_idle_s"], k["time_producing_s"]) == pytest.approx((180, 360, 360))
    assert k["time_unknown_s"] == 0.0
    assert k["pbt_s"] == pytest.approx(720)  # not off, not unknown
    assert k["apt_s"] == pytest.approx(360)
    assert k["availability"] == pytest.approx(360 / 720)
    assert k["effectiveness"] == pytest.approx(15 * 18 / 360)  # PRU·PQ/APT
    assert k["quality_ratio"] == pytest.approx(16 / 18)  # GQ/PQ
    assert k["oee"] == pytest.approx(15 * 16 / 720)  # PRU·GQ/PBT = 1/3
    assert k["oee"] == pytest.approx(k["availability"] * k["effectiveness"] * k["quality_ratio"])


def test_quantities_sec_scrap_and_yield(machine: dict[str, WindowKpis]) -> None:
    k = machine["15min"].kpis
    assert (k["produced_quantity"], k["scrap_quantity"], k["good_quantity"]) == (18, 2, 16)
    assert k["scrap_ratio"] == pytest.approx(2 / 18)
    assert k["sec_kwh_per_part"] == pytest.approx(2.525 / 18)
    assert k["sec_kwh_per_good_part"] == pytest.approx(2.525 / 16)
    assert k["consumed_material"] == pytest.approx(50.0)  # 500 counts × 0.1 kg
    assert k["material_yield"] == pytest.approx(16 / 50)


def test_power_factor_co2_and_coverage(machine: dict[str, WindowKpis]) -> None:
    w = machine["15min"]
    k = w.kpis
    assert k["reactive_energy_kvarh"] == pytest.approx(1.2)
    assert k["power_factor"] == pytest.approx(2.525 / math.sqrt(2.525**2 + 1.2**2))
    assert k["co2e_kg"] == pytest.approx(2.525 * 0.4)
    for role in ("power", "part_counter", "scrap_counter", "material_counter"):
        assert k[f"coverage_{role}"] == pytest.approx(1.0)
    assert w.coverage == pytest.approx(1.0)


def test_peak_demand_fixed_and_rolling(machine: dict[str, WindowKpis]) -> None:
    k = machine["15min"].kpis
    # 5-min blocks: [0,300) 30+165+300+750+1200 = 2445 kW·s, [300,600) 4×1200+750 = 5550,
    # [600,900) 3×300+165+30 = 1095 → fixed peak 5550 kW·s / 300 s = 18.5 kW.
    assert k["peak_demand_kw"] == pytest.approx(18.5)
    # trailing window ending at 540 s covers the whole plateau [240,540): 6000 kW·s → 20 kW
    assert k["peak_demand_rolling_kw"] == pytest.approx(20.0)


# ---- a compressor: energy counter, air flow, emission factor series --------------------
#   t (s):       0  60 120 180 240 300 360 420 480 540 600
#   P (kW):      45 45  45  45  15  15  15  15  45  45  45   load ≥ 30 kW, unload ≥ 1 kW
#   flow m³/min: 6  6   6   6   0   0   0   0   6   6   6
#   Wh counter:  0  750 1500 2250 3000 3250 3500 3750 4000 4750 5500


@pytest.fixture(scope="module")
def compressor() -> dict[str, WindowKpis]:
    ef = EmissionSeries(np.array([T0, T0 + 300 * NS]), np.array([0.3, 0.5]))
    spec = AssetSpec(
        asset="comp-1",
        kind="compressor",
        rated_power_kw=55.0,
        thresholds=StateThresholds(off_below_kw=1.0, idle_below_kw=30.0, hysteresis_kw=4.0),
        counters={"energy_counter": CounterSpec(scale=0.001)},
        signals=frozenset({"power", "air_flow"}),
        emission_factor=ef,
        max_gap_s=120.0,
        demand_block_s=300,
        windows=(FixedWindow("10min", 600),),
    )
    ts = T0 + np.arange(11, dtype=np.int64) * 60 * NS
    sig: dict[str, np.ndarray] = {
        "power": np.array([45, 45, 45, 45, 15, 15, 15, 15, 45, 45, 45], np.float32),
        "air_flow": np.array([6, 6, 6, 6, 0, 0, 0, 0, 6, 6, 6], np.float64),
        "energy_counter": np.array([0, 750, 1500, 2250, 3000, 3250, 3500, 3750, 4000, 4750, 5500], np.uint32),
    }
    return run(spec, ts, sig)


def test_compressor_energy_from_counter_by_state(compressor: dict[str, WindowKpis]) -> None:
    k = compressor["10min"].kpis
    assert k["energy_kwh"] == pytest.approx(5.5)
    # The counter says both changes came at the end of their interval: 180–240 s drew
    # 750 Wh = 45 kW × 60 s, 420–480 s drew 250 Wh = 15 kW × 60 s, so φ = 1 exactly — up to
    # the counter's resolution q = 1 Wh = 3.6 kW·s (two floors: variance q²/6) against the
    # lever |ΔP|·Δt = 30 kW × 60 s. The posterior mean of a normal centred on the edge of
    # [0, 1] is one half-normal mean inside: φ = 1 − sd·√(2/π). The old state's share is
    # P₀φ / (P₀φ + P₁(1 − φ)); the intervals without a change fit exactly (no scatter).
    sd = 3.6 / math.sqrt(6) / (30 * 60)
    phi = 1 - sd * math.sqrt(2 / math.pi)
    down = 45 * phi / (45 * phi + 15 * (1 - phi))  # producing → idle, share kept by producing
    up = 15 * phi / (15 * phi + 45 * (1 - phi))  # idle → producing, share kept by idle
    producing = 4.5 - 0.75 * (1 - down) + 0.25 * (1 - up)  # 6 loaded minutes × 0.75 kWh ± splits
    assert k["energy_producing_kwh"] == pytest.approx(producing, rel=1e-9)
    assert k["energy_idle_kwh"] == pytest.approx(5.5 - producing, rel=1e-9)
    assert producing == pytest.approx(4.5, abs=0.001)  # the edge is all but exact
    assert k["idle_share"] == pytest.approx((5.5 - producing) / 5.5, rel=1e-9)


def test_compressor_specific_power_and_load_share(compressor: dict[str, WindowKpis]) -> None:
    k = compressor["10min"].kpis
    # air: trapezoid 60 s × (6+6+6+3+0+0+0+3+6+6) m³/min = 2160 m³/min·s = 36 m³
    assert k["air_volume_m3"] == pytest.approx(36.0)
    # mean power 60 × (45·3 + 30 + 15·3 + 30 + 45·2) / 600 = 33 kW; mean flow 3.6 m³/min
    assert k["mean_power_kw"] == pytest.approx(33.0)
    assert k["specific_power_kw_per_m3min"] == pytest.approx(33.0 / 3.6)
    assert k["load_share"] == pytest.approx(360 / 600)


def test_compressor_co2_from_time_series(compressor: dict[str, WindowKpis]) -> None:
    # increments booked before 300 s: 4×750 + 250 Wh at 0.3 kg/kWh; after: 3×250 + 2×750 Wh at 0.5
    k = compressor["10min"].kpis
    assert k["co2e_kg"] == pytest.approx(3.25 * 0.3 + 2.25 * 0.5)


def test_compressor_peak_from_counter(compressor: dict[str, WindowKpis]) -> None:
    k = compressor["10min"].kpis
    # blocks [0,300) 3250 Wh and [300,600) 2250 Wh: 3.25 kWh / 300 s = 39 kW
    assert k["peak_demand_kw"] == pytest.approx(39.0)
    assert k["peak_demand_rolling_kw"] == pytest.approx(39.0)


def test_undefined_ratios_are_nan_not_zero() -> None:
    spec = AssetSpec(
        asset="idle-press",
        rated_power_kw=10.0,
        thresholds=StateThresholds(off_below_kw=1.0, idle_below_kw=5.0),
        counters={
            "part_counter": CounterSpec(max_rate_per_s=1.0),
            "scrap_counter": CounterSpec(max_rate_per_s=1.0),
        },
        ideal_cycle_time_s=10.0,
        windows=(FixedWindow("1min", 60),),
    )
    ts = T0 + np.arange(61, dtype=np.int64) * NS
    sig: dict[str, np.ndarray] = {
        "power": np.zeros(61),
        "part_counter": np.zeros(61, np.uint32),
        "scrap_counter": np.zeros(61, np.uint32),
    }
    k = run(spec, ts, sig)["1min"].kpis
    assert k["time_off_s"] == pytest.approx(60)
    for name in (
        "availability",
        "effectiveness",
        "oee",
        "quality_ratio",
        "scrap_ratio",
        "sec_kwh_per_part",
        "idle_share",
    ):
        assert math.isnan(k[name]), name

"""The fleet (2-D) path reports exactly what the streaming path reports, asset by asset."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.analytics import (
    AssetSpec,
    CalendarWindow,
    CounterSpec,
    EmissionSeries,
    FixedWindow,
    StateThresholds,
    StreamingAnalytics,
    analyse_fleet,
)

NS = 1_000_000_000


def fleet(
    A: int,
    T: int,
    seed: int,
    *,
    offset: int = 0,
    irregular: bool = False,
    counter: bool = True,
    plc: bool = False,
    mode: str = "instantaneous",
    thresholds: bool = True,
    dwell: float = 3.0,
) -> tuple[list[AssetSpec], np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    if irregular:
        ts = (1_700_000_000 + offset) * NS + np.cumsum(rng.integers(1, 7, T)) * NS // 2
    else:
        ts = (1_700_000_000 + offset) * NS + np.arange(T, dtype=np.int64) * NS
    lvl = rng.choice([0.3, 4.0, 25.0], size=(A, T // 30 + 1))
    p = np.abs(np.repeat(lvl, 30, axis=1)[:, :T] + rng.normal(0, 0.7, (A, T))).astype(np.float32)
    sig: dict[str, np.ndarray] = {
        "power": p,
        "part_counter": np.cumsum(rng.integers(0, 2, (A, T)), axis=1).astype(np.uint32),
        "scrap_counter": np.cumsum(rng.random((A, T)) < 0.05, axis=1).astype(np.uint32),
        "temperature": rng.normal(40, 2, (A, T)),
    }
    counters = {
        "part_counter": CounterSpec(max_rate_per_s=5.0),
        "scrap_counter": CounterSpec(max_rate_per_s=5.0),
    }
    if counter:
        sig["energy_counter"] = np.cumsum(rng.integers(0, 4, (A, T)), axis=1).astype(np.uint32)
        counters["energy_counter"] = CounterSpec(scale=0.001)
    signals = {"power", "temperature"}
    if plc:
        sig["state"] = np.repeat(rng.integers(0, 5, (A, T // 50 + 1)), 50, axis=1)[:, :T].astype(np.int16)
        signals.add("state")
    specs = [
        AssetSpec(
            asset=f"m{i}",
            rated_power_kw=100.0,
            thresholds=StateThresholds(
                off_below_kw=1, idle_below_kw=10, hysteresis_kw=1 + i % 2, min_dwell_s=dwell
            )
            if thresholds
            else None,
            counters=counters,
            signals=frozenset(signals),
            ideal_cycle_time_s=2.0 + i,
            emission_factor=0.4,
            max_gap_s=60,
            power_mode=mode,  # type: ignore[arg-type]
        )
        for i in range(A)
    ]
    return specs, ts, sig


QUARTER = FixedWindow("15min", 900)


def check(specs, ts, sig, q=None, window=QUARTER) -> np.ndarray:  # type: ignore[no-untyped-def]
    fk = analyse_fleet(specs, ts, sig, q, window=window)
    got = {(w.asset, w.start_ns): w for w in fk.window_kpis()}
    for a, s in enumerate(specs):
        sa = StreamingAnalytics(replace(s, windows=(window,)))
        qq = {r: (q[r][a] if q else np.zeros(ts.size, np.uint8)) for r in sig}
        exp = sa.update(ts, {r: v[a] for r, v in sig.items()}, qq) + sa.flush()
        assert {k for k in got if k[0] == s.asset} == {(s.asset, w.start_ns) for w in exp}
        for w in exp:
            g = got[(s.asset, w.start_ns)]
            assert g.kpis.keys() == w.kpis.keys()
            for name, v in w.kpis.items():
                # the same sums in another order: equal to float rounding
                assert g.kpis[name] == pytest.approx(v, rel=1e-9, abs=1e-9, nan_ok=True), (a, name)
            assert g.coverage == pytest.approx(w.coverage, rel=1e-12)
    return fk.fast


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"offset": 17},  # window boundaries between samples
        {"irregular": True},
        {"counter": False},  # power is the energy source: cumulative-energy demand
        {"counter": False, "offset": 13, "irregular": True},
        {"plc": True},
        {"counter": False, "mode": "interval_average", "offset": 7},
        {"thresholds": False},
        # no dwell: every change instant is estimated from the counter and its learned time base
        {"dwell": 0.0},
        {"dwell": 0.0, "offset": 17, "irregular": True},
        {"dwell": 0.0, "counter": False, "offset": 17},
    ],
)
def test_fleet_equals_streaming(kw: dict[str, object]) -> None:
    specs, ts, sig = fleet(3, 2500, seed=1, **kw)  # type: ignore[arg-type]
    assert check(specs, ts, sig).all()  # clean data: every asset on the fast path


def test_fleet_handles_rollovers_resets_ef_series_and_dirty_rows() -> None:
    specs, ts, sig = fleet(5, 3000, seed=3, offset=5)
    sig["energy_counter"] = (
        (sig["energy_counter"].astype(np.int64) + 2**32 - 900).astype(np.uint64).astype(np.uint32)
    )
    sig["part_counter"][1, 1500:] -= sig["part_counter"][1, 1500]  # a reset
    ef = EmissionSeries(ts[0] + np.arange(0, 4000, 700, dtype=np.int64) * NS, np.linspace(0.1, 0.5, 6))
    specs = [replace(s, emission_factor=ef) for s in specs]
    q = {r: np.zeros(v.shape, np.uint8) for r, v in sig.items()}
    q["power"][2, 100:130] = 2  # a dropout: streaming path
    sig["power"][3, 50] = np.nan  # a NaN behind Good quality: streaming path
    fast = check(specs, ts, sig, q)
    assert fast.tolist() == [True, True, False, False, True]
    check(specs, ts, sig, q, window=CalendarWindow("shift", (6.0, 14.0, 22.25), "Europe/Berlin"))
    check(specs, ts, sig, q, window=FixedWindow("1min", 60))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10**6), offset=st.integers(0, 899), irregular=st.booleans(), counter=st.booleans())
def test_fleet_equals_streaming_random(seed: int, offset: int, irregular: bool, counter: bool) -> None:
    specs, ts, sig = fleet(2, 1200, seed, offset=offset, irregular=irregular, counter=counter)
    check(specs, ts, sig, window=FixedWindow("5min", 300))


def test_fleet_input_errors_are_clear() -> None:
    specs, ts, sig = fleet(2, 100, seed=0)
    with pytest.raises(
        ValueError, match=r"role 'power' has shape \(2, 99\), expected \(assets, time\) = \(2, 100\)"
    ):
        analyse_fleet(specs, ts, {**sig, "power": sig["power"][:, :99]})
    with pytest.raises(ValueError, match=r"role 'air_flow' is not configured for asset 'm0'"):
        analyse_fleet(specs, ts, {**sig, "air_flow": np.zeros((2, 100))})
    with pytest.raises(ValueError, match=r"quality of 'power' must be a uint8 array"):
        analyse_fleet(specs, ts, sig, {r: np.zeros((2, 100), np.int32) for r in sig})

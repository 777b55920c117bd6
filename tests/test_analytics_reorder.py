"""Rows from several devices feeding one asset arrive slightly out of order across batches."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_analytics_scenarios import make_scenario

from edge_agent.analytics import AssetSpec, CounterSpec, FixedWindow, StateThresholds, StreamingAnalytics

NS = 1_000_000_000
T0 = 1_700_006_400 * NS


def spec() -> AssetSpec:
    return AssetSpec(
        asset="line-2",
        rated_power_kw=100.0,
        thresholds=StateThresholds(off_below_kw=1.0, idle_below_kw=10.0),
        counters={"energy_counter": CounterSpec(scale=0.001)},
        max_gap_s=10.0,
        windows=(FixedWindow("1min", 60),),
    )


def two_devices() -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """A power meter polled at whole seconds and an energy meter polled 0.3 s *earlier*,
    each delivering 5-s batches; the energy batch for a period lands after the power one."""
    out = []
    for k in range(0, 120, 5):
        t_p = T0 + np.arange(k, k + 5, dtype=np.int64) * NS
        out.append((t_p, {"power": np.full(5, 30.0)}))
        t_e = t_p - 300_000_000
        out.append((t_e, {"energy_counter": (np.arange(k, k + 5) * 8).astype(np.uint32)}))
    return out


def feed(sa: StreamingAnalytics) -> list[object]:
    out: list[object] = []
    for ts, sig in two_devices():
        out += sa.update(ts, sig, {r: np.zeros(ts.size, np.uint8) for r in sig})
    return out + sa.flush()


def test_without_allowance_late_rows_are_dropped_and_counted() -> None:
    sa = StreamingAnalytics(spec())
    feed(sa)
    assert sa.totals.late > 0
    assert sa.totals.raw_counts["energy_counter"] < 119 * 8


def test_allowance_books_every_row_as_one_merged_pass_would() -> None:
    sa = StreamingAnalytics(spec(), reorder_s=6.0)  # > one batch span + offset
    got = {w.start_ns: w.kpis for w in feed(sa)}  # type: ignore[attr-defined]
    assert sa.totals.late == 0
    assert sa.totals.raw_counts["energy_counter"] == 119 * 8
    # the same rows merged and sorted up front, in one update
    parts = two_devices()
    ts = np.concatenate([p[0] for p in parts])
    order = np.argsort(ts, kind="stable")
    merged = StreamingAnalytics(spec())
    sig = {
        "power": np.concatenate([p[1].get("power", np.full(p[0].size, np.nan)) for p in parts])[order],
        "energy_counter": np.concatenate(
            [p[1].get("energy_counter", np.zeros(p[0].size, np.uint32)) for p in parts]
        )[order].astype(np.uint32),
    }
    q = {
        "power": np.concatenate([np.full(p[0].size, 0 if "power" in p[1] else 3, np.uint8) for p in parts])[
            order
        ],
        "energy_counter": np.concatenate(
            [np.full(p[0].size, 0 if "energy_counter" in p[1] else 3, np.uint8) for p in parts]
        )[order],
    }
    exp = {w.start_ns: w.kpis for w in merged.update(ts[order], sig, q) + merged.flush()}
    assert got.keys() == exp.keys()
    for start, k in exp.items():
        for name, v in k.items():
            assert got[start][name] == pytest.approx(v, rel=1e-12, nan_ok=True), name


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10**6), cuts=st.lists(st.integers(0, 150), max_size=6))
def test_rows_late_within_the_allowance_change_nothing(seed: int, cuts: list[int]) -> None:
    sc = make_scenario(seed, n=150, messy=False)
    # deliver rows shuffled within blocks of 4 consecutive rows (at most 4 × 30 s apart)
    rng = np.random.default_rng(seed)
    perm = np.arange(sc.ts.size)
    for a in range(0, perm.size, 4):
        perm[a : a + 4] = rng.permutation(perm[a : a + 4])
    sa = StreamingAnalytics(sc.spec, reorder_s=200.0)
    got = []
    edges = [0, *sorted(set(c for c in cuts if c < perm.size)), perm.size]
    for a, b in itertools.pairwise(edges):
        sel = perm[a:b]
        got += sa.update(
            sc.ts[sel], {r: v[sel] for r, v in sc.signals.items()}, {r: q[sel] for r, q in sc.quality.items()}
        )
    got += sa.flush()
    one = StreamingAnalytics(sc.spec)
    exp = one.update(sc.ts, sc.signals, sc.quality) + one.flush()
    g = {(w.window, w.start_ns): w.kpis for w in got}
    e = {(w.window, w.start_ns): w.kpis for w in exp}
    assert g.keys() == e.keys()
    for key, k in e.items():
        for name, v in k.items():
            assert g[key][name] == pytest.approx(v, rel=1e-9, abs=1e-9, nan_ok=True), (key, name)
    assert sa.totals.late == 0 and sa.totals.raw_counts == one.totals.raw_counts

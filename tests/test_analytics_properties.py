"""Properties over random, messy series (hypothesis, bounded examples).

* streaming batch by batch == one pass, for any split;
* vectorised (streaming) == plain-Python reference;
* Σ energy by state == energy; OEE == PRU·GQ/PBT == A·E·Q; availability and quality in
  [0, 1]; fixed-block peak ≤ rolling peak.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from analytics_oracle import reference
from hypothesis import given, settings
from hypothesis import strategies as st
from test_analytics_scenarios import Scenario, make_scenario

from edge_agent.analytics import StreamingAnalytics, WindowKpis

SETTINGS = settings(max_examples=30, deadline=None)
configs = st.sampled_from(
    [
        {"primary": "counter"},
        {"primary": "power", "plc_state": True},
        {"primary": "power", "power_mode": "interval_average"},
        {"primary": "counter", "plc_state": True, "bits": 32},
    ]
)


def sort_rows(sc: Scenario) -> Scenario:
    o = np.argsort(sc.ts, kind="stable")
    return Scenario(
        sc.spec, sc.ts[o], {r: v[o] for r, v in sc.signals.items()}, {r: q[o] for r, q in sc.quality.items()}
    )


def stream(sc: Scenario, cuts: list[int]) -> tuple[dict[tuple[str, int], WindowKpis], StreamingAnalytics]:
    sa = StreamingAnalytics(sc.spec)
    out: list[WindowKpis] = []
    edges = [0, *sorted(set(cuts)), sc.ts.size]
    for a, b in itertools.pairwise(edges):
        out += sa.update(
            sc.ts[a:b], {r: v[a:b] for r, v in sc.signals.items()}, {r: q[a:b] for r, q in sc.quality.items()}
        )
    out += sa.flush()
    return {(w.window, w.start_ns): w for w in out}, sa


def same(a: dict[tuple[str, int], WindowKpis], b: dict[tuple[str, int], WindowKpis]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].kpis.keys() == b[key].kpis.keys()
        for name, v in b[key].kpis.items():
            # float sums in a different order: equal to rounding, never more
            assert a[key].kpis[name] == pytest.approx(v, rel=1e-9, abs=1e-9, nan_ok=True), (key, name)
        assert a[key].coverage == pytest.approx(b[key].coverage, rel=1e-9, abs=1e-12)


@SETTINGS
@given(seed=st.integers(0, 10**6), cfg=configs, cuts=st.lists(st.integers(0, 170), max_size=8))
def test_streaming_any_split_equals_one_pass(seed: int, cfg: dict[str, object], cuts: list[int]) -> None:
    sc = sort_rows(make_scenario(seed, n=120, **cfg))  # type: ignore[arg-type]
    whole, sa1 = stream(sc, [])
    split, sa2 = stream(sc, [c for c in cuts if c < sc.ts.size])
    same(split, whole)
    t1, t2 = sa1.totals, sa2.totals
    assert t2.raw_counts == t1.raw_counts  # exact integers
    assert (t2.resets, t2.rollovers, t2.gaps, t2.duplicates) == (
        t1.resets,
        t1.rollovers,
        t1.gaps,
        t1.duplicates,
    )
    assert t2.energy_kwh == pytest.approx(t1.energy_kwh, rel=1e-12)


@SETTINGS
@given(seed=st.integers(0, 10**6), cfg=configs)
def test_vectorised_equals_reference(seed: int, cfg: dict[str, object]) -> None:
    sc = make_scenario(seed, n=120, **cfg)  # type: ignore[arg-type]  # unsorted, duplicates, gaps
    got, sa = stream(sc, [])
    ref = reference(sc.spec, sc.ts, sc.signals, sc.quality)
    same(got, {(w.window, w.start_ns): w for w in ref.windows})
    t = sa.totals
    assert t.raw_counts == ref.raw_counts
    assert (t.resets, t.rollovers, t.duplicates) == (ref.resets, ref.rollovers, ref.duplicates)
    assert t.gaps == ref.gaps


def check_identities(k: dict[str, float] | object) -> None:
    kp: dict[str, float] = k  # type: ignore[assignment]
    by_state = sum(kp[f"energy_{s}_kwh"] for s in ("off", "idle", "setup", "producing", "fault", "unknown"))
    assert by_state == pytest.approx(kp["energy_kwh"], rel=1e-9, abs=1e-12)
    assert 0.0 <= kp["availability"] <= 1.0 or math.isnan(kp["availability"])
    if not math.isnan(kp["oee"]):
        timed_good = kp["good_quantity"] - kp["unattributed_good_quantity"]  # parts with no time: out
        assert kp["oee"] == pytest.approx(4.0 * timed_good / kp["pbt_s"], rel=1e-12)
        factors = (kp["availability"], kp["effectiveness"], kp["quality_ratio"])
        if all(math.isfinite(f) for f in factors):  # E is undefined without production time
            assert kp["oee"] == pytest.approx(math.prod(factors), rel=1e-9)
    if not math.isnan(kp["peak_demand_kw"]):
        assert kp["peak_demand_kw"] <= kp["peak_demand_rolling_kw"] * (1 + 1e-12)


@SETTINGS
@given(seed=st.integers(0, 10**6), cfg=configs)
def test_kpi_identities_on_messy_data(seed: int, cfg: dict[str, object]) -> None:
    sc = make_scenario(seed, n=150, **cfg)  # type: ignore[arg-type]
    out, _ = stream(sc, [])
    assert out
    for w in out.values():
        check_identities(w.kpis)


@SETTINGS
@given(seed=st.integers(0, 10**6), cfg=configs)
def test_ratios_in_range_on_clean_data(seed: int, cfg: dict[str, object]) -> None:
    sc = make_scenario(seed, n=150, messy=False, **cfg)  # type: ignore[arg-type]
    out, _ = stream(sc, [])
    for w in out.values():
        k = w.kpis
        check_identities(k)
        for name in ("quality_ratio", "scrap_ratio", "idle_share", "coverage_power"):
            assert math.isnan(k[name]) or 0.0 <= k[name] <= 1.0 + 1e-12, name
        assert 0.0 <= w.coverage <= 1.0 + 1e-12

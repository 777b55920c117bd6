"""Baseline models: known models are recovered within their standard errors, the batched
balance-point search agrees with a per-candidate lstsq loop, and selection explains itself."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.evaluation import (
    Coefficient,
    DegreeDayBasis,
    Frame,
    ModelSpec,
    Role,
    SelectionMethod,
    Shape,
    Unfittable,
    fit_model,
    select_model,
)
from edge_agent.evaluation._reference import loop_search

P = Role.PRODUCTION


def _within(c: Coefficient, truth: float, k: float = 3.0) -> None:
    assert abs(c.value - truth) <= k * c.se, f"{c.name}: {c.value:.4f} ± {c.se:.4f} vs true {truth}"


def _daily(seed: int, n: int = 365) -> tuple[np.random.Generator, np.ndarray]:
    rng = np.random.default_rng(seed)
    day = np.arange(n)
    temp = 10 - 12 * np.cos(2 * np.pi * day / 365) + rng.normal(0, 3, n)
    return rng, temp


def test_recovers_3p_heating_with_production() -> None:
    rng, t = _daily(1)
    prod = rng.uniform(50, 150, t.size)
    e = 200 + 1.5 * prod + 8.0 * np.maximum(15.0 - t, 0) + rng.normal(0, 10, t.size)
    m = fit_model(ModelSpec((P,), Shape.HEATING_3P), Frame.from_arrays(e, production=prod, temperature=t))
    (bp,) = m.balance_points
    _within(bp, 15.0)
    _within(m.slopes[0], 1.5)
    _within(m.slopes[1], 8.0)
    assert bp.se < 0.5 and m.slopes[1].se < 0.3  # informative, not vacuous


def test_recovers_3p_cooling() -> None:
    rng, t = _daily(2)
    e = 100 + 6.0 * np.maximum(t - 18.0, 0) + rng.normal(0, 5, t.size)
    m = fit_model(ModelSpec(shape=Shape.COOLING_3P), Frame.from_arrays(e, temperature=t))
    _within(m.balance_points[0], 18.0)
    _within(m.slopes[0], 6.0)
    _within(m.coefficients[0], 100.0)  # intercept


def test_recovers_5p_with_both_balance_points() -> None:
    rng, t = _daily(3, 730)
    e = 150 + 5.0 * np.maximum(12 - t, 0) + 7.0 * np.maximum(t - 20, 0) + rng.normal(0, 6, t.size)
    m = fit_model(ModelSpec(shape=Shape.FIVE_P), Frame.from_arrays(e, temperature=t))
    heat, cool = m.balance_points
    _within(heat, 12.0)
    _within(cool, 20.0)
    _within(m.slopes[0], 5.0)
    _within(m.slopes[1], 7.0)


def test_recovers_4p_change_point_and_both_slopes() -> None:
    rng, t = _daily(4, 730)
    e = 300 + 9.0 * np.maximum(14 - t, 0) + 2.5 * np.maximum(t - 14, 0) + rng.normal(0, 6, t.size)
    m = fit_model(ModelSpec(shape=Shape.FOUR_P), Frame.from_arrays(e, temperature=t))
    _within(m.balance_points[0], 14.0)
    _within(m.slopes[0], 9.0)
    _within(m.slopes[1], 2.5)


def test_weekly_degree_days_come_from_the_sub_daily_temperatures() -> None:
    # 3 years of hourly temperatures, energy summed per week: the weekly mean temperature would
    # hide the heating in cold nights of mild weeks; the degree-day basis keeps it.
    rng = np.random.default_rng(5)
    hours = np.arange(3 * 364 * 24)
    season, daily = np.cos(2 * np.pi * hours / 8766), np.sin(2 * np.pi * hours / 24)
    t = 10 - 11 * season + 6 * daily + rng.normal(0, 2, hours.size)
    e_hourly = 20 + 3.0 * np.maximum(16.0 - t, 0)  # kWh per hour: 3 kW/K = 72 kWh per °C·d
    week = hours // (7 * 24)
    e = np.bincount(week, weights=e_hourly) + rng.normal(0, 40, week.max() + 1)
    basis = DegreeDayBasis.from_samples(t, week, np.full(week.max() + 1, 7.0))
    frame = Frame(
        start_ns=np.arange(week.max() + 1, dtype=np.int64) * 7 * 86_400 * 10**9,
        end_ns=np.arange(1, week.max() + 2, dtype=np.int64) * 7 * 86_400 * 10**9,
        energy=e,
        variables={Role.TEMPERATURE: np.bincount(week, weights=t) / np.bincount(week)},
        degree_days=basis,
    )
    m = fit_model(ModelSpec(shape=Shape.HEATING_3P), frame)
    _within(m.balance_points[0], 16.0)
    _within(m.slopes[0], 72.0)


@pytest.mark.parametrize(
    ("shape", "heat", "cool"),
    [(Shape.HEATING_3P, 4, 0), (Shape.COOLING_3P, 0, 5), (Shape.FOUR_P, 4, 1), (Shape.FIVE_P, 4, 5)],
)
def test_batched_search_matches_a_per_candidate_lstsq_loop(shape: Shape, heat: float, cool: float) -> None:
    rng, t = _daily(6, 400)
    prod = rng.uniform(0, 100, t.size)
    weather = heat * np.maximum(11 - t, 0) + cool * np.maximum(t - 19, 0)
    e = 80 + 0.8 * prod + weather + rng.normal(0, 4, t.size)
    frame = Frame.from_arrays(e, production=prod, temperature=t)
    spec = ModelSpec((P,), shape)
    fast = fit_model(spec, frame)
    slow = fit_model(spec, frame, search=loop_search)
    assert [b.value for b in fast.balance_points] == pytest.approx([b.value for b in slow.balance_points])
    assert fast.sse == pytest.approx(slow.sse)


def test_batched_search_matches_the_loop_with_time_of_week_dummies() -> None:
    rng = np.random.default_rng(7)
    n = 24 * 7 * 4
    how = np.arange(n) % 168
    t = 8 + 6 * np.sin(2 * np.pi * np.arange(n) / 24) + np.repeat(rng.normal(0, 3, n // 24), 24)
    sched = np.where((how % 24 >= 6) & (how % 24 < 22) & (how < 120), 40.0, 10.0)
    e = sched + 1.5 * np.maximum(12 - t, 0) + rng.normal(0, 1, n)
    frame = Frame.from_arrays(e, temperature=t, bucket_ns=3600 * 10**9, hour_of_week=how)
    spec = ModelSpec(shape=Shape.HEATING_3P, time_of_week=True)
    fast, slow = fit_model(spec, frame), fit_model(spec, frame, search=loop_search)
    assert fast.balance_points[0].value == pytest.approx(slow.balance_points[0].value)
    _within(fast.balance_points[0], 12.0)
    _within(fast.slopes[0], 1.5 * 24)  # per °C·d
    # the 168 constants recover the schedule (heating at 12 °C balance is added on top)
    assert np.corrcoef(fast.constants, sched[:168])[0, 1] > 0.99


def test_selection_finds_the_true_structure_and_explains_rejections() -> None:
    rng, t = _daily(8)
    prod = rng.uniform(50, 150, t.size)
    e = 200 + 1.5 * prod + 8.0 * np.maximum(15.0 - t, 0) + rng.normal(0, 10, t.size)
    frame = Frame.from_arrays(e, production=prod, temperature=t)
    for method in SelectionMethod:
        sel = select_model(frame, method)
        assert sel.chosen.spec == ModelSpec((P,), Shape.HEATING_3P), method
        assert sel.chosen.spec.name in sel.reason
    by_name = {c.spec.name: c for c in sel.candidates}
    assert "rising" in by_name["production + temperature 3P cooling"].rejected  # wrong-sign slopes
    assert not by_name["mean"].rejected
    assert all(c.rejected or c.stats is not None for c in sel.candidates)


def test_unfittable_candidates_say_why() -> None:
    rng, t = _daily(9, 60)
    prod = rng.uniform(10, 20, t.size)
    flat = np.full(60, 5.0)
    frame = Frame.from_arrays(50 + prod, production=prod, operating_hours=prod / 10, temperature=flat)
    with pytest.raises(Unfittable, match="collinear"):
        fit_model(ModelSpec((P, Role.OPERATING_HOURS)), frame)
    with pytest.raises(Unfittable, match="barely varies"):
        fit_model(ModelSpec(shape=Shape.HEATING_3P), frame)
    with pytest.raises(Unfittable, match="hourly"):
        fit_model(ModelSpec(time_of_week=True), frame)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), groups=st.integers(1, 12))
def test_absorbed_constants_equal_an_explicit_dummy_regression(seed: int, groups: int) -> None:
    rng = np.random.default_rng(seed)
    n = 20 * groups + 10
    g = np.arange(n) % groups
    x = rng.normal(size=n)
    y = rng.normal(size=groups)[g] + 2.0 * x + rng.normal(size=n)
    frame = Frame.from_arrays(y, production=x, bucket_ns=3600 * 10**9, hour_of_week=g)
    m = fit_model(ModelSpec((P,), time_of_week=True), frame)
    dense = np.column_stack([np.eye(groups)[g], x])
    beta, *_ = np.linalg.lstsq(dense, y, rcond=None)
    assert m.slopes[0].value == pytest.approx(beta[-1], rel=1e-9, abs=1e-9)
    assert m.constants == pytest.approx(beta[:-1], rel=1e-9, abs=1e-9)
    sigma2 = float(((y - dense @ beta) ** 2).sum()) / (n - groups - 1)
    cov = sigma2 * np.linalg.inv(dense.T @ dense)
    assert m.slopes[0].se == pytest.approx(np.sqrt(cov[-1, -1]), rel=1e-6)
    assert m.constants_se == pytest.approx(np.sqrt(np.diag(cov)[:-1]), rel=1e-6)

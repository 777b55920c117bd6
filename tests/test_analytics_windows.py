"""Window schemes, rolling windows, flush semantics and spec validation."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from edge_agent.analytics import (
    AssetSpec,
    CalendarWindow,
    CounterSpec,
    FixedWindow,
    RollingWindow,
    StateThresholds,
    StreamingAnalytics,
)
from edge_agent.analytics.windows import bounds
from edge_agent.errors import ConfigError

NS = 1_000_000_000
T0 = 1_700_006_400 * NS  # 2023-11-15 00:00 UTC


def ns(y: int, mo: int, d: int, h: int = 0, tz: str = "Europe/Berlin") -> int:
    return int(dt.datetime(y, mo, d, h, tzinfo=ZoneInfo(tz)).timestamp()) * NS


def test_fixed_windows_are_epoch_aligned() -> None:
    b = bounds(FixedWindow("15min", 900), T0 + 100 * NS, T0 + 2000 * NS)
    assert ((b - T0) // NS).tolist() == [0, 900, 1800, 2700]


def test_local_days_follow_dst() -> None:
    w = CalendarWindow("day", tz="Europe/Berlin")
    spring = bounds(w, ns(2024, 3, 31, 12), ns(2024, 3, 31, 13))
    assert spring.tolist() == [ns(2024, 3, 31), ns(2024, 4, 1)]
    assert (spring[1] - spring[0]) // NS == 23 * 3600
    autumn = bounds(w, ns(2024, 10, 27, 12), ns(2024, 10, 27, 13))
    assert (autumn[1] - autumn[0]) // NS == 25 * 3600


def test_shifts_start_at_local_hours() -> None:
    w = CalendarWindow("shift", (6.0, 14.0, 22.0), "Europe/Berlin")
    b = bounds(w, ns(2024, 6, 3, 7), ns(2024, 6, 3, 23))
    assert b.tolist() == [ns(2024, 6, 3, 6), ns(2024, 6, 3, 14), ns(2024, 6, 3, 22), ns(2024, 6, 4, 6)]


def meter(windows: tuple[object, ...]) -> AssetSpec:
    return AssetSpec(
        asset="m",
        kind="meter",
        rated_power_kw=1000.0,
        counters={"energy_counter": CounterSpec(scale=0.001)},
        signals=frozenset(),
        max_gap_s=120.0,
        windows=windows,  # type: ignore[arg-type]
    )


def test_rolling_windows_sum_their_steps() -> None:
    spec = meter((FixedWindow("15min", 900), RollingWindow("1h_rolling", 3600, 900)))
    t = np.arange(0, 7200 + 1, 60)
    inc = (t // 900 + 1) * 10  # each 15-min step draws a different amount
    counts = np.concatenate(([0], np.cumsum(inc[:-1]))).astype(np.uint32)
    sa = StreamingAnalytics(spec)
    ts = T0 + t.astype(np.int64) * NS
    out = sa.update(ts, {"energy_counter": counts}, {"energy_counter": np.zeros(t.size, np.uint8)})
    out += sa.flush()
    step = {(w.start_ns - T0) // NS: w.kpis["energy_kwh"] for w in out if w.window == "15min"}
    roll = {(w.end_ns - T0) // NS: w for w in out if w.window == "1h_rolling"}
    assert step[0] == pytest.approx(15 * 10 * 0.001)
    for end in (3600, 4500, 5400, 6300, 7200):
        w = roll[end]
        assert (w.end_ns - w.start_ns) // NS == 3600
        assert w.kpis["energy_kwh"] == pytest.approx(sum(step[s] for s in range(end - 3600, end, 900)))
        assert w.coverage == pytest.approx(1.0)
    assert roll[900].coverage == pytest.approx(0.25)  # only one step of data in the hour


def test_flush_reports_open_windows_and_later_data_completes_them() -> None:
    spec = meter((FixedWindow("1min", 60),))
    sa = StreamingAnalytics(spec)
    q = np.zeros(31, np.uint8)
    closed = sa.update(
        T0 + np.arange(31, dtype=np.int64) * NS,
        {"energy_counter": np.arange(31, dtype=np.uint32)},
        {"energy_counter": q},
    )
    assert closed == []  # the minute is not over
    partial = sa.flush()
    assert [(w.start_ns, round(w.kpis["energy_kwh"], 6), round(w.coverage, 3)) for w in partial] == [
        (T0, 0.03, 0.5)
    ]
    ts2 = T0 + np.arange(31, 62, dtype=np.int64) * NS
    closed = sa.update(ts2, {"energy_counter": np.arange(31, 62, dtype=np.uint32)}, {"energy_counter": q})
    assert [(w.start_ns, round(w.kpis["energy_kwh"], 6), w.coverage) for w in closed] == [(T0, 0.06, 1.0)]


def test_spec_validation_lists_every_problem() -> None:
    with pytest.raises(ConfigError) as e:
        AssetSpec(
            asset="bad",
            rated_power_kw=-1,
            thresholds=StateThresholds(off_below_kw=5, idle_below_kw=2, hysteresis_kw=-1),
            counters={"part_counter": CounterSpec(), "power": CounterSpec()},
            windows=(RollingWindow("r", 1000, 300), CalendarWindow("d", (25.0,), "Mars/Olympus")),
        )
    msg = str(e.value)
    for needle in (
        "asset 'bad'",
        "rated_power_kw",
        "off_below_kw (5) <= idle_below_kw (2)",
        "counters.part_counter.max_rate_per_s",
        "'power' is not a counter role",
        "multiple of step_s",
        "unknown time zone 'Mars/Olympus'",
        "start_hours",
    ):
        assert needle in msg, needle


def test_a_spec_without_windows_is_refused_with_its_fix() -> None:
    with pytest.raises(ConfigError, match=r"(?s)asset .m.*no window scheme given; give at least one") as e:
        meter(())
    assert "FixedWindow" in str(e.value)


def test_bad_input_names_asset_role_and_fix() -> None:
    sa = StreamingAnalytics(meter((FixedWindow("1min", 60),)))
    ts = T0 + np.arange(3, dtype=np.int64) * NS
    q = np.zeros(3, np.uint8)
    with pytest.raises(ValueError, match=r"asset 'm': role 'power' is not configured"):
        sa.update(ts, {"power": np.ones(3)}, {"power": q})
    with pytest.raises(
        ValueError, match=r"asset 'm' role 'energy_counter': counters must arrive as raw integers"
    ):
        sa.update(ts, {"energy_counter": np.ones(3)}, {"energy_counter": q})
    with pytest.raises(ValueError, match=r"needs 3 values"):
        sa.update(ts, {"energy_counter": np.ones(2, np.uint32)}, {"energy_counter": q})
    with pytest.raises(ValueError, match=r"no quality array"):
        sa.update(ts, {"energy_counter": np.ones(3, np.uint32)}, {})
    with pytest.raises(ValueError, match=r"1-D int64"):
        sa.update(ts.astype(np.float64), {}, {})


def test_meter_without_any_state_source_across_batches() -> None:
    # no thresholds, no PLC tag: no state is ever observed; windows still report energy
    spec = meter((FixedWindow("1min", 60),))
    sa = StreamingAnalytics(spec)
    q = np.zeros(40, np.uint8)
    out = []
    for part in (slice(0, 40), slice(40, 80), slice(80, 120)):
        t = np.arange(120)[part]
        out += sa.update(
            T0 + t.astype(np.int64) * NS, {"energy_counter": (t * 2).astype(np.uint32)}, {"energy_counter": q}
        )
    out += sa.flush()
    assert [round(w.kpis["energy_kwh"], 6) for w in out] == [0.12, 0.118]  # 60 and 59 intervals
    assert all(w.kpis["energy_unknown_kwh"] == w.kpis["energy_kwh"] for w in out)
    assert not any(k.startswith("time_") for k in out[0].kpis)

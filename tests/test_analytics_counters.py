"""Counters: rollover vs reset, meter swap, duplicates, out-of-order rows, gaps — exact."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.analytics import AssetSpec, CounterSpec, FixedWindow, StreamingAnalytics, WindowKpis
from edge_agent.analytics.counters import as_raw_counts, counter_deltas
from edge_agent.batch import Quality

NS = 1_000_000_000
T0 = 1_700_006_400 * NS


def deltas(values: list[int], *, maximum: int = 2**32 - 1, rate: float = 1e3, step_s: float = 1.0):  # type: ignore[no-untyped-def]
    raw = np.array(values, np.uint64)
    t = T0 + (np.arange(len(values)) * step_s * NS).astype(np.int64)
    return counter_deltas(raw, t, maximum=maximum, scale=1.0, max_rate_per_s=rate)


def test_32_bit_rollover_is_a_plausible_wrap() -> None:
    d = deltas([4294967290, 4294967295, 3, 10])
    assert d.delta.tolist() == [5, 4, 7]  # 2**32 − 4294967295 + 3 = 4
    assert d.rollover.tolist() == [False, True, False]
    assert not d.reset.any()


def test_reset_to_zero_is_flagged_and_counts_the_new_value() -> None:
    # wrapping 1010 → 0 would mean ~4.3e9 units in one second: implausible, so a reset
    d = deltas([1000, 1010, 0, 5])
    assert d.delta.tolist() == [10, 0, 5]
    assert d.reset.tolist() == [False, True, False]
    assert not d.rollover.any()


def test_reset_to_a_plausible_value_counts_the_count_since_the_reset() -> None:
    # a meter swapped or restarted from 0 that has counted 800 since: plausible in 1 s at 1000/s
    d = deltas([500000, 500010, 800, 810])
    assert d.delta.tolist() == [10, 800, 10]
    assert d.reset.tolist() == [False, True, False]
    assert not d.jump.any()


def test_fall_to_an_implausible_non_zero_value_is_a_jump_not_a_reset() -> None:
    # issue #12: a part counter fell 1024 → 1002 after a PLC restart; booking 1002 as the
    # count since a reset added ~1000 parts. It cannot be a wrap nor a reset: book nothing.
    d = deltas([1022, 1024, 1002, 1005], rate=2.0)
    assert d.delta.tolist() == [2, 0, 3]
    assert d.jump.tolist() == [False, True, False]
    assert not d.reset.any() and not d.rollover.any()


def test_implausible_rise_is_a_jump_and_books_nothing() -> None:
    # issue #12: an energy counter jumped 18 → 4 294 967 292 on a meter restart
    d = deltas([10, 18, 4294967292, 4294967295], rate=600.0 / 3600 / 0.01)  # 600 kW, 0.01 kWh/count
    assert d.delta.tolist() == [8, 0, 3]
    assert d.jump.tolist() == [False, True, False]
    assert d.limit[1] == pytest.approx(600.0 / 3600 / 0.01 + 1)


def test_one_count_of_a_coarse_counter_is_always_plausible() -> None:
    # a 1 kWh-resolution counter on a 60 kW machine polled every second: a wrap by one
    # count is 1 kWh in 1 s (60 kW allows 0.017 kWh), still plausible thanks to resolution
    raw = np.array([65535, 0, 1], np.uint64)
    t = T0 + np.arange(3, dtype=np.int64) * NS
    d = counter_deltas(raw, t, maximum=65535, scale=1.0, max_rate_per_s=60.0 / 3600)
    assert d.delta.tolist() == [1, 1]
    assert d.rollover.tolist() == [True, False]
    # a meter that steps 10 counts at a time (resolution 10 counts) may step once in any Δt
    raw = np.array([100, 110, 130], np.uint64)
    d = counter_deltas(raw, t, maximum=65535, scale=1.0, max_rate_per_s=0.001, step_counts=10)
    assert d.delta.tolist() == [10, 0]
    assert d.jump.tolist() == [False, True]


def test_plausibility_uses_the_elapsed_time() -> None:
    # the same fall, wrapped delta 16: a rollover if 16 units fit in Δt at 2 units/s
    assert deltas([65530, 10], maximum=65535, rate=2.0, step_s=8.0).rollover.tolist() == [True]
    assert deltas([65530, 10], maximum=65535, rate=2.0, step_s=7.0).reset.tolist() == [True]


def test_16_bit_and_meter_maximum() -> None:
    assert deltas([65530, 65535, 2], maximum=65535).delta.tolist() == [5, 3]
    assert deltas([99990, 5], maximum=99999).delta.tolist() == [15]  # 5-digit register


def test_64_bit_wrap_is_exact() -> None:
    d = deltas([2**64 - 3, 4], maximum=2**64 - 1)
    assert d.delta.tolist() == [7]
    assert d.rollover.tolist() == [True]


def test_raw_counts_validation_names_the_problem() -> None:
    with pytest.raises(ValueError, match=r"asset 'm' role 'part_counter'.*raw integers"):
        as_raw_counts(np.array([1.0, 2.0]), 100, "asset 'm' role 'part_counter'")
    with pytest.raises(ValueError, match=r"exceeds the configured counter maximum 65535"):
        as_raw_counts(np.array([70000], np.uint32), 65535, "asset 'm' role 'energy_counter'")
    with pytest.raises(ValueError, match=r"negative counter reading"):
        as_raw_counts(np.array([-1], np.int32), 65535, "x")


def spec(**kw: object) -> AssetSpec:
    return AssetSpec(
        asset="meter-7",
        kind="meter",
        rated_power_kw=100.0,
        counters={"energy_counter": CounterSpec(scale=0.001, **kw)},  # type: ignore[arg-type]
        signals=frozenset(),
        max_gap_s=10.0,
        windows=(FixedWindow("1min", 60),),
    )


def feed(
    sa: StreamingAnalytics, t_s: Sequence[float], v: Sequence[int], q: Sequence[int] | None = None
) -> list[WindowKpis]:
    ts = T0 + (np.array(t_s) * NS).astype(np.int64)
    quality = np.array(q if q is not None else [0] * len(v), np.uint8)
    return sa.update(ts, {"energy_counter": np.array(v, np.uint32)}, {"energy_counter": quality})


def test_totals_exact_across_wrap_reset_duplicates_and_disorder() -> None:
    sa = StreamingAnalytics(spec(max_rate_per_s=0.2))  # 200 counts/s plausible
    # out of order within the batch, one exact duplicate (t=2) and one conflicting one (t=3)
    feed(sa, [0, 2, 1, 2, 3, 3, 4], [4294967000, 4294967290, 4294967100, 4294967290, 5, 999, 60])
    feed(sa, [5, 6, 7], [0, 40, 41])  # reset to 0 (60 → 0 in 1 s cannot be a wrap)
    t = sa.totals
    # 100 + 190 + 11 (wrap) + 55 + 0 (reset) + 40 + 1
    assert t.raw_counts["energy_counter"] == 100 + 190 + 11 + 55 + 0 + 40 + 1
    assert t.energy_kwh == pytest.approx(397 * 0.001)
    assert (t.rollovers["energy_counter"], t.resets["energy_counter"]) == (1, 1)
    assert t.duplicates == 2
    assert t.late == 0


def test_late_rows_are_dropped_and_counted() -> None:
    sa = StreamingAnalytics(spec())
    feed(sa, [0, 1, 2], [0, 10, 20])
    feed(sa, [1.5, 2, 3], [15, 20, 30])  # 1.5 s is older than the stream, 2 s a re-delivery
    t = sa.totals
    assert t.raw_counts["energy_counter"] == 30
    assert (t.late, t.duplicates) == (1, 1)


def test_bad_samples_are_skipped_and_gaps_keep_the_total() -> None:
    sa = StreamingAnalytics(spec())
    bad = int(Quality.BAD)
    # t=2 and t=3 are Bad (value garbage): the delta 10 → 40 spans them; t=30 follows a
    # 20 s silence (> max gap 10 s): counted as a gap, its increment still counted
    feed(sa, [0, 1, 2, 3, 4, 30, 31], [0, 10, 0, 7, 40, 90, 91], [0, 0, bad, bad, 0, 0, 0])
    t = sa.totals
    assert t.raw_counts["energy_counter"] == 91
    assert t.gaps["energy_counter"] == 1
    assert t.energy_by_state_kwh["unknown"] == pytest.approx(91 * 0.001)  # a meter has no state


def test_gap_increment_is_booked_where_the_gap_ends_in_state_unknown() -> None:
    from edge_agent.analytics import StateThresholds

    s = AssetSpec(
        asset="press-2",
        rated_power_kw=100.0,
        thresholds=StateThresholds(off_below_kw=1.0, idle_below_kw=10.0),
        counters={"energy_counter": CounterSpec(scale=0.001)},
        max_gap_s=10.0,
        windows=(FixedWindow("1min", 60),),
    )
    sa = StreamingAnalytics(s)
    ts = T0 + np.array([0, 1, 70, 71], np.int64) * NS  # 69 s silence across a minute boundary
    sig = {"power": np.full(4, 50.0), "energy_counter": np.array([0, 5, 105, 106], np.uint32)}
    closed = sa.update(ts, sig, {r: np.zeros(4, np.uint8) for r in sig})
    out = {w.start_ns: w.kpis for w in closed + sa.flush()}
    assert out[T0]["energy_kwh"] == pytest.approx(0.005)
    assert out[T0]["energy_producing_kwh"] == pytest.approx(0.005)
    assert out[T0 + 60 * NS]["energy_kwh"] == pytest.approx(0.101)  # 100 at the gap's end + 1
    assert out[T0 + 60 * NS]["energy_unknown_kwh"] == pytest.approx(0.100)
    assert out[T0 + 60 * NS]["energy_producing_kwh"] == pytest.approx(0.001)
    # the state is held for the max gap (10 s) after the last sample, then unknown
    assert out[T0]["time_producing_s"] == pytest.approx(11.0)
    assert out[T0]["time_unknown_s"] == pytest.approx(49.0)
    assert out[T0 + 60 * NS]["time_unknown_s"] == pytest.approx(10.0)


@settings(max_examples=60, deadline=None)
@given(
    incs=st.lists(st.integers(0, 40_000), min_size=2, max_size=60),
    start=st.integers(0, 2**16 - 1),
    cut=st.integers(0, 60),
)
def test_totals_telescope_exactly_through_16_bit_wraps(incs: list[int], start: int, cut: int) -> None:
    # a fast 16-bit counter wraps often; at up to 100 000 counts/s every wrap is plausible
    values = (start + np.cumsum([0, *incs])) % 2**16
    sa = StreamingAnalytics(spec(bits=16, max_rate_per_s=100.0))
    t = list(range(len(values)))
    feed(sa, t[:cut], values[:cut].tolist())
    feed(sa, t[cut:], values[cut:].tolist())
    assert sa.totals.raw_counts["energy_counter"] == sum(incs)
    assert sa.totals.resets["energy_counter"] == 0


def test_implausible_16_bit_falls_to_small_values_are_resets() -> None:
    # at the rated 100 kW only 27.8 counts/s are plausible: a wrap of 65 000 counts is not
    sa = StreamingAnalytics(spec(bits=16))
    feed(sa, [0, 1, 2], [65000, 65010, 20])
    assert sa.totals.raw_counts["energy_counter"] == 10 + 20
    assert sa.totals.resets["energy_counter"] == 1


def oracle(values: Sequence[int], t_ns: Sequence[int], maximum: int, rate: float, scale: float) -> list[int]:
    """The rules one sample at a time, in Python integers (independent of the numpy path)."""
    out = []
    for v0, v1, a, b in zip(values, values[1:], t_ns, t_ns[1:], strict=False):
        limit = (b - a) * (rate / scale) / 1e9 + 1  # same float operations as the array path
        wrapped = maximum + 1 - v0 + v1
        if v1 >= v0:
            out.append(v1 - v0 if v1 - v0 <= limit else 0)
        elif wrapped <= limit:
            out.append(wrapped)
        elif v1 <= limit:
            out.append(v1)
        else:
            out.append(0)
    return out


_event = st.one_of(
    st.tuples(st.just("inc"), st.integers(0, 30)),  # normal counting, ≤ 30 counts/s plausible
    st.tuples(st.just("reset"), st.integers(0, 20)),  # restart from 0, counted a little since
    st.tuples(st.just("jump"), st.integers(0, 2**16 - 1)),  # restart to any value at all
)


@settings(max_examples=150, deadline=None)
@given(
    events=st.lists(_event, min_size=1, max_size=80),
    start=st.integers(0, 2**16 - 1),
    gaps=st.lists(st.integers(1, 3), min_size=80, max_size=80),
    cut=st.integers(0, 80),
)
def test_streaming_equals_oracle_telescopes_and_stays_plausible(
    events: list[tuple[str, int]], start: int, gaps: list[int], cut: int
) -> None:
    m, rate = 2**16 - 1, 30.0  # 16-bit counter, 30 counts/s at most (scale 1)
    values = [start]
    for kind, x in events:
        values.append((values[-1] + x) % (m + 1) if kind == "inc" else x)
    t = [T0 + sum(gaps[:i]) * NS for i in range(len(values))]
    expect = oracle(values, t, m, rate, 1.0)
    d = counter_deltas(
        np.array(values, np.uint64), np.array(t, np.int64), maximum=m, scale=1.0, max_rate_per_s=rate
    )
    assert d.delta.tolist() == expect
    # no booked delta above the plausible maximum; every flagged step books what the rules say
    assert all(int(x) <= lim for x, lim in zip(d.delta.tolist(), d.limit.tolist(), strict=True))
    assert not d.delta[d.jump].any()
    # the streaming path, fed in two batches, telescopes to the same total
    sa = StreamingAnalytics(spec(bits=16, max_rate_per_s=rate / 1000.0, slack_s=0.0))  # 30 counts/s
    feed(sa, [(x - T0) / NS for x in t[:cut]], values[:cut])
    feed(sa, [(x - T0) / NS for x in t[cut:]], values[cut:])
    assert sa.totals.raw_counts["energy_counter"] == sum(expect)


def test_streaming_books_nothing_for_a_jump_and_logs_it_once_with_its_facts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = AssetSpec(
        asset="meter-7",
        kind="meter",
        rated_power_kw=200.0,  # 0.0556 kWh/s → 55.6 counts/s at 0.001 kWh/count
        counters={"energy_counter": CounterSpec(scale=0.001)},
        signals=frozenset(),
        max_gap_s=10.0,
        windows=(FixedWindow("1min", 60),),
        sources={"energy_counter": "device 'm7' tag 'kwh'"},
    )
    sa = StreamingAnalytics(s)
    with caplog.at_level("WARNING", logger="edge_agent.analytics"):
        feed(sa, [0, 1, 2, 3], [10, 18, 4294967292, 4294967295])
        feed(sa, [4, 5], [1002, 1040])  # restart to a non-zero value 1002: a jump, then 38
    t = sa.totals
    assert t.raw_counts["energy_counter"] == 8 + 3 + 38
    assert t.jumps["energy_counter"] == 2
    jumps = [r.getMessage() for r in caplog.records if "jumped" in r.getMessage()]
    assert len(jumps) == 2
    assert "'meter-7' device 'm7' tag 'kwh'" in jumps[0] and "18 -> 4294967292" in jumps[0]
    assert "at most 168 counts" in jumps[0]  # 55.6 counts/s × (1 s + 2 s lag) + 1

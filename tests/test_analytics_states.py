"""Machine state from power: hysteresis, minimum dwell, PLC precedence, max-gap hold."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from analytics_oracle import reference
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.analytics import (
    AssetSpec,
    FixedWindow,
    MachineState,
    StateThresholds,
    StreamingAnalytics,
)
from edge_agent.analytics.states import LEVEL_STATE, PowerCarry, classify_power
from edge_agent.batch import Quality

NS = 1_000_000_000
T0 = 1_700_006_400 * NS
OFF, IDLE, PROD = MachineState.OFF, MachineState.IDLE, MachineState.PRODUCING
LEVEL = {0: OFF, 1: IDLE, 2: PROD}


def levels(p: list[float], th: StateThresholds, step_s: float = 1.0) -> list[MachineState]:
    t = T0 + (np.arange(len(p)) * step_s * NS).astype(np.int64)
    runs, _ = classify_power(t, np.array(p), th, None)
    return [LEVEL[int(x)] for x in runs.dense(len(p))]


def test_hysteresis_bands_hold_the_state() -> None:
    th = StateThresholds(off_below_kw=1.0, idle_below_kw=10.0, hysteresis_kw=1.0)
    # bands [0.5, 1.5) and [9.5, 10.5) hold; band 2 lifts an off machine to idle only
    p = [0.2, 1.2, 1.6, 1.2, 0.4, 10.2, 10.6, 9.8, 9.4, 10.2]
    assert levels(p, th) == [OFF, OFF, IDLE, IDLE, OFF, IDLE, PROD, PROD, IDLE, IDLE]


def test_without_hysteresis_plain_thresholds_apply() -> None:
    th = StateThresholds(off_below_kw=1.0, idle_below_kw=10.0)
    assert levels([0.99, 1.0, 9.99, 10.0, 0.0], th) == [OFF, IDLE, IDLE, PROD, OFF]


def test_float32_power_is_compared_exactly() -> None:
    # float32(0.1) > 0.1 but float32 values just below must stay below
    th = StateThresholds(off_below_kw=0.1, idle_below_kw=0.3)
    below = np.nextafter(np.float32(0.1), np.float32(0))
    t = T0 + np.arange(3, dtype=np.int64) * NS
    runs, _ = classify_power(t, np.array([below, np.float32(0.1), np.float32(0.3)], np.float32), th, None)
    assert runs.dense(3).tolist() == [0, 1, 2]


def test_dwell_debounces_short_excursions() -> None:
    th = StateThresholds(off_below_kw=1.0, idle_below_kw=10.0, min_dwell_s=3.0)
    p = [0.0] * 5 + [20.0] * 2 + [0.0] * 3 + [20.0] * 6
    got = levels(p, th)
    # the 2-s burst never shows; the 6-s run takes effect 3 s after it began (index 13)
    assert got == [OFF] * 13 + [PROD] * 3


def test_dwell_is_measured_in_time_not_samples() -> None:
    th = StateThresholds(off_below_kw=1.0, idle_below_kw=10.0, min_dwell_s=30.0)
    # 10-s sampling: a new level needs 3 samples after its first one
    got = levels([0, 0, 20, 20, 20, 20, 20], th, step_s=10.0)
    assert got == [OFF, OFF, OFF, OFF, OFF, PROD, PROD]


@settings(max_examples=50, deadline=None)
@given(
    p=st.lists(st.floats(0, 30, allow_nan=False), min_size=2, max_size=80),
    cut=st.integers(1, 79),
    dwell=st.sampled_from([0.0, 2.0, 5.0]),
)
def test_carry_makes_batches_equal_one_pass(p: list[float], cut: int, dwell: float) -> None:
    th = StateThresholds(off_below_kw=2.0, idle_below_kw=12.0, hysteresis_kw=3.0, min_dwell_s=dwell)
    t = T0 + np.arange(len(p), dtype=np.int64) * NS
    arr = np.array(p)
    whole, _ = classify_power(t, arr, th, None)
    cut = min(cut, len(p) - 1)
    a, carry = classify_power(t[:cut], arr[:cut], th, None)
    assert isinstance(carry, PowerCarry)
    b, _ = classify_power(t[cut:], arr[cut:], th, carry)
    joined = np.concatenate((a.dense(cut), b.dense(len(p) - cut)))
    assert joined.tolist() == whole.dense(len(p)).tolist()


@settings(max_examples=60, deadline=None)
@given(
    p=st.lists(st.floats(0, 30, allow_nan=False, width=32), min_size=2, max_size=60),
    steps=st.lists(st.sampled_from([1, 2, 3, 7]), min_size=60, max_size=60),
    dwell=st.sampled_from([0.0, 2.0, 5.0]),
)
def test_sample_by_sample_equals_one_pass(p: list[float], steps: list[int], dwell: float) -> None:
    # one sample per call takes a plain-Python path; it must match the array path exactly,
    # the instants at which debounced changes took effect included
    th = StateThresholds(off_below_kw=2.0, idle_below_kw=12.0, hysteresis_kw=3.0, min_dwell_s=dwell)
    t = T0 + np.cumsum(np.array(steps[: len(p)], np.int64)) * NS
    arr = np.array(p, np.float32)
    whole, last = classify_power(t, arr, th, None)
    carry = None
    levels, switch = [], []
    for i in range(len(p)):
        runs, carry = classify_power(t[i : i + 1], arr[i : i + 1], th, carry)
        levels.append(int(runs.level[0]))
        switch.append(int(runs.switch[0]))
    assert levels == whole.dense(len(p)).tolist()
    dense_switch = np.full(len(p), -1)
    dense_switch[whole.start] = whole.switch
    assert switch == dense_switch.tolist()
    assert carry == last


# values in every zone and on every edge of the thresholds below (h = 1 or 3 kW)
_ZONE_VALUES = [
    0.0,
    0.4,
    0.5,
    1.0,
    1.5,
    2.0,
    2.5,
    3.0,
    3.5,
    6.0,
    10.5,
    11.0,
    11.5,
    12.0,
    12.5,
    13.0,
    13.5,
    20.0,
]


@settings(max_examples=300, deadline=None)
@given(
    runs=st.lists(
        st.tuples(
            st.one_of(st.sampled_from(_ZONE_VALUES), st.floats(0, 30, allow_nan=False, width=32)),
            st.integers(1, 12),
        ),
        min_size=1,
        max_size=15,
    ),
    steps=st.lists(st.sampled_from([1, 2, 3, 7]), min_size=180, max_size=180),
    cuts=st.lists(st.integers(1, 179), max_size=8),
    dwell=st.sampled_from([0.0, 1.0, 2.0, 5.0, 30.0]),
    hysteresis=st.sampled_from([0.0, 1.0, 3.0]),
)
def test_batches_with_carries_give_the_textbook_latches_levels(
    runs: list[tuple[float, int]], steps: list[int], cuts: list[int], dwell: float, hysteresis: float
) -> None:
    """The zone-run rules, batch by batch with their carries, against the oracle's textbook
    form (one latch per threshold, the debounce sample by sample): power held in runs (so
    dwells expire, and cuts fall inside pending ones), on every edge and in every zone."""
    p = [v for v, n in runs for _ in range(n)]
    th = StateThresholds(off_below_kw=2.0, idle_below_kw=12.0, hysteresis_kw=hysteresis, min_dwell_s=dwell)
    spec = machine(thresholds=th, signals=frozenset({"power"}), max_gap_s=60.0)
    t = T0 + np.cumsum(np.array(steps[: len(p)], np.int64)) * NS
    arr = np.array(p, np.float32)
    expected = reference(spec, t, {"power": arr}, {"power": np.zeros(len(p), np.uint8)}).states
    got: list[int] = []
    carry = None
    for a, b in itertools.pairwise([0, *sorted({c for c in cuts if c < len(p)}), len(p)]):
        runs, carry = classify_power(t[a:b], arr[a:b], th, carry)
        got += [int(LEVEL_STATE[x]) for x in runs.dense(b - a)]
    assert got == expected


def machine(**kw: object) -> AssetSpec:
    base: dict[str, object] = {
        "asset": "lathe-4",
        "rated_power_kw": 30.0,
        "thresholds": StateThresholds(off_below_kw=1.0, idle_below_kw=10.0),
        "signals": frozenset({"power", "state"}),
        "max_gap_s": 5.0,
        "windows": (FixedWindow("1min", 60),),
    }
    base.update(kw)
    return AssetSpec(**base)  # type: ignore[arg-type]


def test_plc_state_wins_when_good_and_power_decides_otherwise() -> None:
    spec = machine()
    n = 6
    ts = T0 + np.arange(n, dtype=np.int64) * NS
    power = np.full(n, 20.0)  # power says producing throughout
    state = np.array([2, 2, 4, 4, 7, 4], np.float64)  # setup, setup, fault, fault, invalid, fault
    sq = np.array([0, 0, 0, Quality.BAD, 0, 0], np.uint8)
    sig = {"power": power, "state": state}
    q = {"power": np.zeros(n, np.uint8), "state": sq}
    res = reference(spec, ts, sig, q)
    assert res.states == [2, 2, 4, 3, 3, 4]  # a Bad or invalid code falls back to power
    sa = StreamingAnalytics(spec)
    out = {w.start_ns: w.kpis for w in sa.update(ts, sig, q) + sa.flush()}
    k = out[T0]
    # power is the same on both sides of every change, so each change falls half way between
    # its samples: setup [0, 1.5), fault [1.5, 2.5) + [4.5, 5), producing [2.5, 4.5)
    assert (k["time_setup_s"], k["time_fault_s"], k["time_producing_s"]) == pytest.approx((1.5, 1.5, 2))
    assert sa.totals.invalid_state_codes == 1
    assert sa.totals.state == MachineState.FAULT


def test_state_is_held_for_the_max_gap_then_unknown() -> None:
    spec = machine(signals=frozenset({"power"}))
    ts = T0 + np.array([0, 1, 2, 30], np.int64) * NS
    sig = {"power": np.array([20.0, 20.0, np.nan, 0.0])}
    q = {"power": np.array([0, 0, Quality.BAD, 0], np.uint8)}
    sa = StreamingAnalytics(spec)
    out = {w.start_ns: w.kpis for w in sa.update(ts, sig, q) + sa.flush()}
    k = out[T0]
    # producing observed at 1 s, held until 6 s (max gap 5 s), unknown until the next
    # observation at 30 s
    assert k["time_producing_s"] == pytest.approx(6.0)
    assert k["time_unknown_s"] == pytest.approx(24.0)
    assert k["pbt_s"] == pytest.approx(6.0)  # unknown is not planned busy time
    assert sa.totals.state == MachineState.OFF

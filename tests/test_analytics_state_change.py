"""The interval that straddles a state change is split at the change (edge_agent.analytics.state_change).

Golden cases are worked out by hand next to each expectation; the stream cases run the real
StreamingAnalytics and the plain-Python reference on the same rows.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from analytics_oracle import reference

from edge_agent.analytics import (
    AssetSpec,
    CounterSpec,
    FixedWindow,
    StateThresholds,
    StreamingAnalytics,
    WindowKpis,
)
from edge_agent.analytics.state_change import (
    NO_SWITCH,
    TimeBase,
    split_interval,
    time_base_at,
    time_base_terms,
)
from edge_agent.batch import Quality

NS = 1_000_000_000
T0 = 1_700_006_400 * NS  # a UTC midnight: aligned to every window
KWS = 1 / 3600  # kW·s → kWh


def one(x: float) -> np.ndarray:
    return np.array([x], np.float64)


def split(
    e: float, p0: float, p1: float, *, dt_s: float = 10.0, res: float = 1.0, **kw: object
) -> tuple[float, float]:
    tau, share = split_interval(
        np.array([T0]),
        np.array([T0 + round(dt_s * NS)]),
        one(e),
        one(p0),
        one(p1),
        res,
        np.array([kw.pop("switch", NO_SWITCH)], np.int64),
        **kw,  # type: ignore[arg-type]
    )
    return float(tau[0]) / NS, float(share[0])


# ---- the estimator alone ---------------------------------------------------------------
def test_the_energy_pins_the_change() -> None:
    # 5 kW for 3 s, then 20 kW for 7 s: 15 + 140 = 155 kW·s
    tau, share = split(155.0, 5.0, 20.0)
    assert tau == pytest.approx(3.0, abs=1e-9)
    assert share * 155 == pytest.approx(15.0)  # the old state gets exactly P₀·τ
    tau, share = split(20 * 6 + 5 * 4, 20.0, 5.0)  # downwards: 20 kW for 6 s, then 5 kW
    assert tau == pytest.approx(6.0, abs=1e-9)
    assert share * 140 == pytest.approx(120.0)


def test_energy_outside_the_model_lands_on_an_end_and_stays_split_exactly() -> None:
    # more than 20 kW × 10 s: the new state all along (quantisation moves it a hair inside)
    tau, share = split(260.0, 5.0, 20.0)
    assert tau == pytest.approx(0.0, abs=1e-3)
    assert 0.0 <= share < 1e-3
    tau, share = split(30.0, 5.0, 20.0)  # less than 5 kW × 10 s: the old state all along
    assert tau == pytest.approx(10.0, abs=1e-3)
    assert 1 - 1e-3 < share <= 1.0


def test_far_outside_the_window_the_posterior_stays_finite_and_exact() -> None:
    # 612 kW·s in 2.5 s between 0.79 and 20.9 kW: the centre lies 11 units (38 sd) below
    # [0, 1], where the plain probabilities underflow. The mean of a normal truncated that far
    # out is sd²/|centre| to first order: the change sits a hair after the interval's start.
    mu = (612 - 20.87 * 2.5) / ((0.7853 - 20.87) * 2.5)
    sd = 36 / math.sqrt(6) / abs((0.7853 - 20.87) * 2.5)
    tau, share = split(612.0, 0.7853, 20.87, dt_s=2.5, res=36.0)
    assert tau / 2.5 == pytest.approx(sd * sd / abs(mu), rel=0.02)
    assert 0 < share < 1e-3


def test_close_or_missing_readings_fall_back_half_way() -> None:
    # |ΔP|·Δt = 0.05 kW × 10 s is below one count (1 kW·s): the energy cannot tell
    tau, share = split(100.0, 10.0, 10.05)
    assert tau == 5.0
    assert share == pytest.approx(10 * 0.5 / (10 * 0.5 + 10.05 * 0.5))
    tau, share = split(100.0, math.nan, 20.0)  # a Bad reading: half the time, half the energy
    assert (tau, share) == (5.0, 0.5)


def test_the_trapezoid_always_splits_half_way() -> None:
    tau, share = split((5 + 20) / 2 * 10, 5.0, 20.0, res=math.inf)
    assert tau == 5.0
    assert share == pytest.approx(5 / 25)  # E₀ = P₀·Δt/2 of (P₀ + P₁)·Δt/2


def test_a_known_change_instant_wins() -> None:
    tau, share = split(155.0, 20.0, 20.0, switch=T0 + 2 * NS)
    assert tau == 2.0
    assert share == pytest.approx(0.2)


def test_a_longer_device_time_moves_the_change() -> None:
    # the interval's energy was drawn over 12 s of device time, not the stamps' 10 s:
    # 5 kW × 3.6 s + 20 kW × 8.4 s = 186 kW·s; knowing ρ = 1.2 recovers φ = 0.3
    tau, share = split(186.0, 5.0, 20.0, rho=1.2)
    assert tau == pytest.approx(3.0, abs=1e-6)
    assert share == pytest.approx(1.5 / 15.5)
    naive, _ = split(186.0, 5.0, 20.0)
    assert naive == pytest.approx(10 * (186 / 10 - 20) / (5 - 20), abs=1e-6)  # 0.93 s: far off


def test_scatter_shrinks_towards_half_way() -> None:
    exact, noisy, meaningless = (split(155.0, 5.0, 20.0, scatter=s)[0] for s in (0.0, 0.1, 30.0))
    assert exact == pytest.approx(3.0, abs=1e-6)
    assert 3.0 < noisy < 3.5  # a little less sure, and the interval likely covered a bit more
    assert meaningless == pytest.approx(5.0, abs=0.01)  # the energy says nothing: half way


def test_alternating_residuals_are_learned_and_predict_the_next() -> None:
    # a sample stamped late shortens one interval and lengthens the next: residuals ±20 %
    trap = np.full(40, 100.0)
    energy = trap * np.where(np.arange(40) % 2 == 0, 0.8, 1.2)
    xx, xy, yy, w, x, xp = time_base_terms(energy, trap, np.ones(40, np.bool_), 1.0, TimeBase())
    assert np.isnan(xp[0]) and w[0] == 0.0  # nothing before the first interval
    assert x == pytest.approx(energy / trap - 1)
    rho, sigma = time_base_at(one(xx.sum()), one(xy.sum()), one(yy.sum()), one(w.sum()), one(-0.2))
    assert float(rho[0]) == pytest.approx(1.2)  # a = −1: after a short interval, a long one
    assert float(sigma[0]) == pytest.approx(0.0, abs=1e-9)
    rho, sigma = time_base_at(one(xx.sum()), one(xy.sum()), one(yy.sum()), one(w.sum()), one(math.nan))
    assert (float(rho[0]), float(sigma[0])) == pytest.approx((1.0, 0.2))  # no predecessor


# ---- streams ----------------------------------------------------------------------------
#   t (s):         0    10   20   30   40     the device switched idle → producing at 23 s
#   P (kW):        5    5    5    20   20
#   state:         1    1    1    3    3      (PLC tag, or thresholds off < 1, idle < 10 kW)
#   counter:       0    50   100  255  455    1 count = 1 kW·s; 20–30 s: 5·3 + 20·7 = 155
# The steady intervals fit P̄·Δt exactly (no scatter), so 20–30 s splits at φ = 0.3: idle
# keeps 15 counts and 23 s, producing gets 140 counts and 17 s. Windows of 25 s: the time
# splits at 25 s too; counter increments are booked at their interval's start.
COUNTS = [0, 50, 100, 255, 455]


def machine(plc: bool, **kw: object) -> AssetSpec:
    base: dict[str, object] = {
        "asset": "lathe-2",
        "rated_power_kw": 30.0,
        "thresholds": None if plc else StateThresholds(off_below_kw=1.0, idle_below_kw=10.0),
        "counters": {"energy_counter": CounterSpec(scale=KWS)},
        "signals": frozenset({"power", "state"} if plc else {"power"}),
        "max_gap_s": 60.0,
        "windows": (FixedWindow("25s", 25),),
    }
    base.update(kw)
    return AssetSpec(**base)  # type: ignore[arg-type]


def rows(plc: bool, power: list[float], n: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    k = len(power) if n is None else n
    ts = T0 + np.arange(k, dtype=np.int64) * 10 * NS
    sig: dict[str, np.ndarray] = {
        "power": np.array(power[:k]),
        "energy_counter": np.array(COUNTS[:k], np.uint32),
    }
    if plc:
        sig["state"] = np.array([1, 1, 1, 3, 3][:k], np.uint16)
    return ts, sig


def run(
    spec: AssetSpec,
    ts: np.ndarray,
    sig: dict[str, np.ndarray],
    q: dict[str, np.ndarray] | None = None,
    step: int = 0,
) -> tuple[dict[int, WindowKpis], StreamingAnalytics]:
    """One pass (or ``step``-row batches); the reference must agree on every KPI."""
    q = q or {r: np.zeros(ts.size, np.uint8) for r in sig}
    sa = StreamingAnalytics(spec)
    out = []
    for a in range(0, ts.size, step or ts.size):
        b = a + (step or ts.size)
        out += sa.update(ts[a:b], {r: v[a:b] for r, v in sig.items()}, {r: v[a:b] for r, v in q.items()})
    out += sa.flush()
    got = {(w.start_ns - T0) // NS: w for w in out}
    exp = {(w.start_ns - T0) // NS: w for w in reference(spec, ts, sig, q).windows}
    assert got.keys() == exp.keys()
    for key, w in exp.items():
        for name, v in w.kpis.items():
            assert got[key].kpis[name] == pytest.approx(v, rel=1e-9, abs=1e-12, nan_ok=True), (key, name)
    return got, sa


@pytest.mark.parametrize("plc", [True, False], ids=["plc-tag", "power-thresholds"])
@pytest.mark.parametrize("step", [0, 1], ids=["one-pass", "row-by-row"])
def test_a_change_splits_energy_and_time_where_the_counter_says(plc: bool, step: int) -> None:
    got, sa = run(machine(plc), *rows(plc, [5, 5, 5, 20, 20]), step=step)
    w0, w1 = got[0].kpis, got[25].kpis
    assert w0["energy_idle_kwh"] == pytest.approx(115 * KWS)  # 50 + 50 + 15
    assert w0["energy_producing_kwh"] == pytest.approx(140 * KWS)  # booked at 20 s
    assert w1["energy_producing_kwh"] == pytest.approx(200 * KWS)
    assert w1["energy_idle_kwh"] == 0.0
    assert (w0["time_idle_s"], w0["time_producing_s"]) == pytest.approx((23.0, 2.0))
    assert (w1["time_idle_s"], w1["time_producing_s"]) == pytest.approx((0.0, 15.0))
    t = sa.totals
    assert t.energy_by_state_kwh["idle"] == pytest.approx(115 * KWS)
    assert t.energy_by_state_kwh["producing"] == pytest.approx(340 * KWS)
    assert t.raw_counts["energy_counter"] == 455  # the split never touches the exact total
    assert sum(t.energy_by_state_kwh.values()) == pytest.approx(t.energy_kwh, rel=1e-12)


def test_a_bad_power_reading_splits_half_way() -> None:
    ts, sig = rows(True, [5, 5, 5, 20, 20])
    q = {r: np.zeros(ts.size, np.uint8) for r in sig}
    q["power"][3] = Quality.BAD  # the new state's first reading is unusable
    got, sa = run(machine(True), ts, sig, q)
    # 20–30 s: τ = 5 s, and without both readings the energy follows the time: 77.5 each
    assert sa.totals.energy_by_state_kwh["idle"] == pytest.approx((100 + 77.5) * KWS)
    assert sa.totals.energy_by_state_kwh["producing"] == pytest.approx((77.5 + 200) * KWS)
    assert (got[0].kpis["time_idle_s"], got[0].kpis["time_producing_s"]) == pytest.approx((25.0, 0.0))


def test_time_waits_for_the_next_observation_when_rows_lie_between() -> None:
    ts, sig = rows(True, [5, 5, 5, 20, 20])
    q = {r: np.zeros(ts.size, np.uint8) for r in sig}
    q["state"][2] = Quality.BAD  # no state seen at 20 s: the change lies somewhere in 10–30 s
    got, sa = run(machine(True), ts, sig, q)
    # time: idle is held until producing is seen at 30 s (the 20-s row was booked before it)
    assert (got[0].kpis["time_idle_s"], got[25].kpis["time_producing_s"]) == pytest.approx((25.0, 10.0))
    assert got[25].kpis["time_idle_s"] == pytest.approx(5.0)
    # energy: the 20–30 s interval still runs from idle (held) to producing, and is split
    assert sa.totals.energy_by_state_kwh["idle"] == pytest.approx(115 * KWS)


@pytest.mark.parametrize("step", [0, 1], ids=["one-pass", "row-by-row"])
def test_power_only_changes_split_the_trapezoid_half_way(step: int) -> None:
    spec = machine(False, counters={})
    ts = T0 + np.arange(4, dtype=np.int64) * 10 * NS
    got, sa = run(spec, ts, {"power": np.array([5.0, 5.0, 20.0, 20.0])}, step=step)
    # 10–20 s: trapezoid 125 kW·s, change at 15 s; idle gets 5 kW × 5 s, producing the rest.
    # 20–30 s (200 kW·s) is cut by the window boundary at 25 s.
    k = got[0].kpis
    assert k["energy_idle_kwh"] == pytest.approx((50 + 25) * KWS)
    assert k["energy_producing_kwh"] == pytest.approx((100 + 100) * KWS)
    assert (k["time_idle_s"], k["time_producing_s"]) == pytest.approx((15.0, 10.0))
    assert got[25].kpis["energy_producing_kwh"] == pytest.approx(100 * KWS)
    assert sa.totals.energy_by_state_kwh["producing"] == pytest.approx(300 * KWS)


@pytest.mark.parametrize("step", [0, 1], ids=["one-pass", "row-by-row"])
def test_a_debounced_change_takes_effect_when_its_timer_expires(step: int) -> None:
    spec = machine(
        False, counters={}, thresholds=StateThresholds(off_below_kw=1.0, idle_below_kw=10.0, min_dwell_s=12.0)
    )
    ts = T0 + np.arange(7, dtype=np.int64) * 10 * NS
    p = np.array([5.0, 5, 5, 20, 20, 20, 20])
    got, sa = run(spec, ts, {"power": p}, step=step)
    # 20 kW from the 30-s sample on; the 12-s timer expires at 42 s, seen at the 50-s sample.
    # 40–50 s runs at 20 kW throughout: idle keeps 2 s of it (40 kW·s), producing 8 s (160).
    e = sa.totals.energy_by_state_kwh
    assert e["idle"] == pytest.approx((50 + 50 + 125 + 200 + 40) * KWS)
    assert e["producing"] == pytest.approx((160 + 200) * KWS)
    k0, k1 = got[0].kpis, got[25].kpis
    assert k0["time_idle_s"] + k1["time_idle_s"] == pytest.approx(42.0)
    assert k1["time_producing_s"] + got[50].kpis["time_producing_s"] == pytest.approx(18.0)


def test_stamps_that_lag_the_device_do_not_bias_the_split() -> None:
    # Every other sample describes its device 50 ms before its stamp (a register refresh
    # cycle out of step with the poll), so intervals alternately cover 0.2 and 0.3 s of device
    # time for a 0.25-s poll. 180 idle/producing changes at random device instants.
    rng = np.random.default_rng(1)
    n = 4000
    ts = T0 + np.arange(n, dtype=np.int64) * 250_000_000
    dev = ts - (np.where(np.arange(n) % 2 == 0, 0, 50_000_000) + rng.integers(0, 5_000_000, n))
    cuts = np.sort(rng.uniform(dev[0] + NS, dev[-1] - NS, 180)).astype(np.int64)
    level = np.where(np.arange(cuts.size + 1) % 2 == 0, 1, 3)  # idle, producing
    kw = np.where(level == 1, 5.0, 20.0)
    edges = np.concatenate(([dev[0]], cuts, [dev[-1]]))
    cum = np.concatenate(([0.0], np.cumsum(kw * np.diff(edges) / NS)))  # kW·s at each edge
    i = np.searchsorted(edges, dev, side="right") - 1
    i = np.minimum(i, kw.size - 1)
    energy = cum[i] + kw[i] * (dev - edges[i]) / NS
    sig = {
        "power": kw[i],
        "energy_counter": np.floor(energy / 0.36).astype(np.uint32),  # 0.1 Wh counts
        "state": level[i].astype(np.uint16),
    }
    spec = AssetSpec(
        asset="press-7",
        rated_power_kw=50.0,
        counters={"energy_counter": CounterSpec(scale=0.0001)},
        signals=frozenset({"power", "state"}),
        windows=(FixedWindow("1h", 3600),),
    )
    sa = StreamingAnalytics(spec)
    sa.update(ts, sig, {r: np.zeros(n, np.uint8) for r in sig})
    truth = {s: float(np.sum((kw * np.diff(edges) / NS)[level == s])) / 3600 for s in (1, 3)}
    starts = np.diff(sig["energy_counter"].astype(np.int64)) * 0.0001
    naive = {s: float(starts[sig["state"][:-1] == s].sum()) for s in (1, 3)}  # start-state rule
    for s, name in ((1, "idle"), (3, "producing")):
        err = abs(sa.totals.energy_by_state_kwh[name] - truth[s])
        assert err <= 12 * 0.0001, (name, err)  # 12 counts over 180 changes
        assert abs(naive[s] - truth[s]) > 30 * err  # the start-state rule: ~460 counts off


def test_the_normal_tails_match_scipy_over_the_whole_float_range() -> None:
    """The change estimate's erfcx and normal CDF (standard library based, so the agent does not
    load scipy) agree with scipy.special through both tails, ±inf and NaN: erfcx to 2e-14, the
    CDF to 1e-13 (below x = −20 scipy's own erfc and libm's differ by up to 6e-14)."""
    from scipy import special

    from edge_agent.analytics.normal_tails import erfcx, ndtr

    x = np.concatenate(
        [
            np.linspace(-40.0, 40.0, 80_001),
            np.geomspace(1e-300, 1e300, 6_001),
            -np.geomspace(1e-300, 1e300, 6_001),
            [0.0, -0.0, np.inf, -np.inf, np.nan, np.nextafter(10.0, 0.0), 10.0],
        ]
    )
    for ours, theirs, tol in ((erfcx, special.erfcx, 2e-14), (ndtr, special.ndtr, 1e-13)):
        got, want = ours(x), theirs(x)
        assert got.shape == x.shape
        finite = np.isfinite(want)
        np.testing.assert_array_equal(got[~finite], want[~finite])  # inf and NaN alike
        # relative, but values below 1e-300 (where scipy flushes to 0 what libm keeps) are all 0
        error = np.abs(got[finite] - want[finite])
        assert np.all(error <= tol * np.abs(want[finite]) + 1e-300), ours.__name__


def test_estimating_a_change_does_not_load_scipy() -> None:
    """scipy costs the agent 13 MB of memory; only `edge-agent evaluate` needs it."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from edge_agent.analytics.state_change import split_interval, NO_SWITCH\n"
        "one = lambda x: np.array([x], np.float64)\n"
        "split_interval(np.array([0]), np.array([10**10]), one(30.0), one(1.0), one(9.0), 1.0,"
        " np.array([NO_SWITCH]))\n"
        "import edge_agent.operations.run\n"
        "assert 'scipy' not in sys.modules, sorted(m for m in sys.modules if m.startswith('scipy'))[:5]\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr

"""Benchmark of the analytics core: the full per-sample pass over a fleet.

    python benchmarks/bench_analytics.py            # 500 assets × 1 day at 1 s (43.2 M rows)
    python benchmarks/bench_analytics.py --small    # 20 assets × 6 h, a quick run

One *row* is one asset at one timestamp: power (float32 kW) plus three raw uint32 counters
(energy Wh, parts, scrap) and a uint8 quality code for each of the four. The pass does
everything: quality checks, counter deltas with rollover/reset detection, trapezoid
integration, hysteresis + dwell state classification, 15-min windows, fixed and rolling
peak demand and every KPI. Baselines are measured in the same process: numpy memory copy
bandwidth and the plain-Python reference (on a slice, extrapolated per row). Peak memory
is what tracemalloc sees allocated during the pass, relative to the input arrays.
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc

import numpy as np

from edge_agent.analytics import (
    DEFAULT_WINDOWS,
    AssetSpec,
    CalendarWindow,
    CounterSpec,
    FixedWindow,
    RollingWindow,
    StateThresholds,
    StreamingAnalytics,
    WindowSpec,
    analyse_fleet,
)
from edge_agent.analytics.reference import reference

NS = 1_000_000_000
DAY0 = 1_700_006_400  # a UTC midnight


def make_fleet(
    assets: int, seconds: int, seed: int = 7, dropouts: float = 0.0
) -> tuple[list[AssetSpec], np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Machines that switch between off, idle and producing (with work cycles and noise)."""
    rng = np.random.default_rng(seed)
    minutes = seconds // 60
    # state per minute: a Markov-ish walk, 5 % chance of a change each minute
    change = rng.random((assets, minutes)) < 0.05
    draw = rng.choice(np.array([0, 1, 2], np.int8), size=(assets, minutes), p=[0.2, 0.3, 0.5])
    idx = np.where(change, np.arange(minutes), 0)
    np.maximum.accumulate(idx, axis=1, out=idx)
    state = np.take_along_axis(draw, idx, axis=1)
    state = np.repeat(state, 60, axis=1)[:, :seconds]
    off = rng.uniform(0.05, 0.3, (assets, 1)).astype(np.float32)
    idle = rng.uniform(2.0, 6.0, (assets, 1)).astype(np.float32)
    prod = rng.uniform(15.0, 60.0, (assets, 1)).astype(np.float32)
    levels = np.stack([off, idle, prod], axis=2)[:, 0, :]
    power = np.take_along_axis(levels, state.astype(np.intp), axis=1)
    cycle = rng.integers(30, 90, (assets, 1))
    t = np.arange(seconds)
    phase = (t[None, :] % cycle) / cycle
    power *= 1.0 + np.float32(0.15) * (phase < 0.5).astype(np.float32) * (state == 2)
    power *= 1.0 + np.float32(0.02) * rng.standard_normal((assets, seconds), dtype=np.float32)
    np.abs(power, out=power)
    start = rng.integers(0, 2**32 - 2_000_000, (assets, 1)).astype(np.int64)
    near = rng.random(assets) < 0.02  # a few meters roll over during the day
    start[near] = 2**32 - rng.integers(1000, 500_000, near.sum())[:, None]
    wh = np.cumsum(np.round(power / 3.6).astype(np.int64), axis=1)  # Wh in each second
    energy = ((start + wh) % 2**32).astype(np.uint32)
    made = (state == 2) & (t[None, :] % cycle == 0)
    parts = np.cumsum(made, axis=1, dtype=np.uint32)
    scrap = np.cumsum(made & (rng.random((assets, seconds)) < 0.03), axis=1, dtype=np.uint32)
    ts = (DAY0 + np.arange(seconds, dtype=np.int64)) * NS
    signals = {"power": power, "energy_counter": energy, "part_counter": parts, "scrap_counter": scrap}
    quality = {r: np.zeros((assets, seconds), np.uint8) for r in signals}
    for a in np.flatnonzero(rng.random(assets) < dropouts):
        s0 = int(rng.integers(0, seconds - 300))
        for q in quality.values():
            q[a, s0 : s0 + 300] = 2  # a 5-minute communication loss
    specs = [
        AssetSpec(
            asset=f"m{i:03d}",
            rated_power_kw=float(prod[i, 0]) * 1.5,
            thresholds=StateThresholds(
                off_below_kw=1.0, idle_below_kw=10.0, hysteresis_kw=1.0, min_dwell_s=10.0
            ),
            counters={
                "energy_counter": CounterSpec(scale=0.001),
                "part_counter": CounterSpec(max_rate_per_s=1.0),
                "scrap_counter": CounterSpec(max_rate_per_s=1.0),
            },
            ideal_cycle_time_s=float(cycle[i, 0]) * 0.9,
            emission_factor=0.38,
            max_gap_s=60.0,
            windows=(FixedWindow("15min", 900),),
        )
        for i in range(assets)
    ]
    return specs, ts, signals, quality


# the schemes the runtime gives every asset (runtime/analytics_stage.py, kpi_interval 15 s)
RUNTIME_WINDOWS: tuple[WindowSpec, ...] = (
    FixedWindow("15s", 15),
    FixedWindow("15min", 900),
    FixedWindow("1h", 3600),
    CalendarWindow("shift", (6.0, 14.0, 22.0), "Europe/Berlin"),
    CalendarWindow("day", (0.0,), "Europe/Berlin"),
    RollingWindow("rolling_15min", 900, 60),
)


def polled_machine(
    windows: tuple[WindowSpec, ...], rows: int, step_ns: int = 250_000_000
) -> tuple[AssetSpec, np.ndarray, dict[str, np.ndarray]]:
    """One machine as the runtime sees it: power, five counters and a PLC state, polled every
    0.25 s, states changing every 10 s (so the change split runs every 40 rows)."""
    rng = np.random.default_rng(0)
    spec = AssetSpec(
        asset="cnc1",
        rated_power_kw=25.0,
        thresholds=StateThresholds(off_below_kw=1.0, idle_below_kw=10.0, hysteresis_kw=0.5, min_dwell_s=2),
        counters={
            "energy_counter": CounterSpec(scale=0.0001),
            "reactive_energy_counter": CounterSpec(scale=0.0001),
            "part_counter": CounterSpec(max_rate_per_s=100.0),
            "scrap_counter": CounterSpec(max_rate_per_s=100.0),
            "material_counter": CounterSpec(scale=0.001, max_rate_per_s=50.0),
        },
        signals=frozenset({"power", "state"}),
        ideal_cycle_time_s=30.0,
        emission_factor=0.38,
        max_gap_s=5.0,
        windows=windows,
    )
    ts = DAY0 * NS + np.arange(rows, dtype=np.int64) * step_ns
    state = np.repeat(rng.integers(0, 4, rows // 40 + 1), 40)[:rows].astype(np.uint16)
    power = np.array([0.1, 4.5, 6.0, 18.0])[state] * (1 + 0.02 * rng.standard_normal(rows))
    wh = np.cumsum(np.round(power * step_ns / NS / 0.36)).astype(np.uint32)
    signals: dict[str, np.ndarray] = {
        "power": power,
        "energy_counter": wh,
        "reactive_energy_counter": (wh // 3).astype(np.uint32),
        "part_counter": np.cumsum(rng.random(rows) < 0.01).astype(np.uint32),
        "scrap_counter": np.zeros(rows, np.uint32),
        "material_counter": np.cumsum(rng.integers(0, 3, rows)).astype(np.uint32),
        "state": state,
    }
    return spec, ts, signals


def one_row_updates(windows: tuple[WindowSpec, ...], warm: int = 4000, timed_rows: int = 2000) -> float:
    """Seconds per one-row update in steady state: after ``warm`` rows (more than a demand
    block and several windows of history), the best of two runs over ``timed_rows``."""
    spec, ts, sig = polled_machine(windows, warm + timed_rows)
    q = {r: np.zeros(1, np.uint8) for r in sig}
    rows = [(ts[i : i + 1], {r: v[i : i + 1] for r, v in sig.items()}) for i in range(ts.size)]
    best = np.inf
    for _ in range(2):
        sa = StreamingAnalytics(spec)
        for t, s in rows[:warm]:
            sa.update(t, s, q)
        gc.collect()
        start = time.perf_counter()
        for t, s in rows[warm:]:
            sa.update(t, s, q)
        best = min(best, (time.perf_counter() - start) / timed_rows)
    return best


def small_call() -> float:
    """Seconds per small numpy call (a ufunc on one-element arrays): the unit of overhead."""
    a, b = np.ones(1), np.ones(1)
    best = np.inf
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(10_000):
            np.add(a, b)
        best = min(best, (time.perf_counter() - t) / 10_000)
    return best


def copy_bandwidth(nbytes: int) -> float:
    """Bytes per second np.copyto moves (each byte counted once), best of 5."""
    src = np.ones(nbytes // 8)
    dst = np.zeros_like(src)
    best = np.inf
    for _ in range(5):
        t = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t)
    return src.nbytes / best


def timed(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    best = np.inf
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="20 assets × 6 h instead of 500 × 1 day")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    assets, seconds = (20, 6 * 3600) if args.small else (500, 86400)
    rows = assets * seconds
    print(f"fleet: {assets} assets × {seconds} s at 1 s = {rows / 1e6:.1f} M rows")
    t = time.perf_counter()
    specs, ts, sig, qual = make_fleet(assets, seconds)
    print(f"  generated in {time.perf_counter() - t:.1f} s")
    in_bytes = ts.nbytes + sum(a.nbytes for a in sig.values()) + sum(a.nbytes for a in qual.values())
    print(f"  input: {in_bytes / 1e6:.0f} MB ({in_bytes / rows:.0f} bytes per row)")

    bw = copy_bandwidth(min(in_bytes, 400_000_000))
    print(f"memory copy (np.copyto): {bw / 1e9:.1f} GB/s")

    result = analyse_fleet(specs, ts, sig, qual)
    best = timed(lambda: analyse_fleet(specs, ts, sig, qual), args.repeat)
    rate = rows / best
    copy_time = in_bytes / bw
    print(
        f"full pass (clean data): {best:.3f} s = {rate / 1e6:.0f} M rows/s "
        f"({4 * rate / 1e6:.0f} M values/s); fast path for {int(result.fast.sum())}/{assets} assets"
    )
    print(
        f"  input consumed at {in_bytes / best / 1e9:.2f} GB/s = {in_bytes / best / bw:.2f}× copy bandwidth;"
        f" the pass takes {best / copy_time:.1f}× one copy of its input"
    )

    tracemalloc.start()
    analyse_fleet(specs, ts, sig, qual)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"  peak memory allocated by the pass: {peak / 1e6:.0f} MB = {peak / in_bytes:.2f}× the input")

    # reference on a slice: one asset, one hour, extrapolated per row
    n_ref = 3600
    s0 = specs[0]
    sl = {r: v[0, :n_ref] for r, v in sig.items()}
    ql = {r: v[0, :n_ref] for r, v in qual.items()}
    t_ref = timed(lambda: reference(s0, ts[:n_ref], sl, ql), 1)
    per_row_ref = t_ref / n_ref
    print(
        f"reference (plain Python): {n_ref / t_ref / 1e3:.1f} k rows/s on 1 asset × 1 h; "
        f"speed-up of the vectorised pass: {per_row_ref / (best / rows):,.0f}×"
    )

    # the streaming path: one asset, a day at 1 s in one update, then one row per update
    s1 = specs[0]
    one_asset = ({r: v[0] for r, v in sig.items()}, {r: v[0] for r, v in qual.items()})
    t_day = timed(lambda: StreamingAnalytics(s1).update(ts, *one_asset), args.repeat)
    print(
        f"streaming, 1 asset × {seconds} rows in one update: {t_day * 1e3:.0f} ms = "
        f"{t_day / seconds * 1e6:.2f} µs/row ({t_day / seconds / (best / rows):.0f}× the fleet pass per row)"
    )
    unit = small_call()
    for label, windows in (
        ("runtime's 6 window schemes", RUNTIME_WINDOWS),
        ("4 default schemes", DEFAULT_WINDOWS),
    ):
        per = one_row_updates(windows)
        print(
            f"streaming, one-row updates, {label}: {per * 1e6:.0f} µs per update "
            f"= {per / unit:.0f} small numpy calls ({unit * 1e6:.2f} µs each, same run)"
        )

    # the same fleet with a 5-minute dropout on 1 % of the assets (they take the streaming path)
    specs2, ts2, sig2, qual2 = make_fleet(assets, seconds, dropouts=0.01)
    r2 = analyse_fleet(specs2, ts2, sig2, qual2)
    best2 = timed(lambda: analyse_fleet(specs2, ts2, sig2, qual2), args.repeat)
    print(
        f"full pass with dropouts on {assets - int(r2.fast.sum())} assets: {best2:.3f} s = "
        f"{rows / best2 / 1e6:.0f} M rows/s"
    )


if __name__ == "__main__":
    main()

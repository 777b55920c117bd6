"""Benchmark of the analytics core: the streaming path, the one the product runs.

    python benchmarks/bench_analytics.py            # a day of 1-s data per asset
    python benchmarks/bench_analytics.py --small    # 6 h, a quick run

One *row* is one asset at one timestamp. Two shapes are measured:

* a polled machine as the runtime sees it (power, five counters, a PLC state) fed in
  updates of 1, 4, 20 and 120 rows: the cost per row shows how much of it is per-call
  overhead, which the runtime removes by coalescing rows before analytics;
* one asset, a whole day in one update (the large-batch limit).

Baselines measured in the same process: one small numpy call (the unit of per-call
overhead) and the plain-Python oracle of tests/analytics_oracle.py on a slice.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

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
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from analytics_oracle import reference

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


def updates_of(
    windows: tuple[WindowSpec, ...], rows_per_update: int, warm: int = 4000, timed_rows: int = 2400
) -> float:
    """Seconds per row when fed ``rows_per_update`` rows per update, in steady state: after
    ``warm`` rows (more than a demand block and several windows of history), best of two."""
    spec, ts, sig = polled_machine(windows, warm + timed_rows)
    k = rows_per_update
    q = {r: np.zeros(k, np.uint8) for r in sig}
    chunks = [(ts[i : i + k], {r: v[i : i + k] for r, v in sig.items()}) for i in range(0, ts.size, k)]
    n_warm = warm // k
    best = np.inf
    for _ in range(2):
        sa = StreamingAnalytics(spec)
        for t, s in chunks[:n_warm]:
            sa.update(t, s, q)
        gc.collect()
        start = time.perf_counter()
        n = 0
        for t, s in chunks[n_warm:]:
            if t.size == k:
                sa.update(t, s, q)
                n += k
        best = min(best, (time.perf_counter() - start) / n)
    return best


def stage_cost(assets: int, seconds: int, linger_s: float | None) -> tuple[float, float]:
    """CPU µs per tag-sample of the runtime's analytics stage (routing + update) for ``assets``
    assets of 10 tags (power, energy and part counters, PLC state, 6 generic) on one device
    polled every second, and the share of it spent in the stage's update."""
    from bench_gateway import PlantImage, agent_config

    from edge_agent.batch import SampleBatch
    from edge_agent.config import AgentConfig, parse_config
    from edge_agent.runtime.analytics_stage import AnalyticsStage
    from edge_agent.runtime.routing import Router

    tags = 10 * assets
    raw = agent_config(tags, 502, 1883, Path("/tmp"), True, 1.0)
    config: AgentConfig = parse_config(json.dumps(raw))
    router, stage = Router(config), AnalyticsStage(config, linger_s=linger_s)
    plant = PlantImage(tags)
    dev = config.devices[0]
    names = [t.name for t in dev.tag_configs()]
    # uint32 registers (counters, the PLC state) are read as integers, the rest as float32
    integers = {t.name for t in dev.tag_configs() if t.data_type == "uint32"}
    good = np.zeros(1, np.uint8)
    polls = []
    for k in range(seconds):
        plant.tick()
        words = plant.regs[1]
        with np.errstate(invalid="ignore"):  # integer registers seen as float32: unused
            f32 = words.view(">f4").astype(np.float64)
        u32 = words.view(">u4").astype(np.int64)
        values = {n: (u32[i : i + 1] if n in integers else f32[i : i + 1]) for i, n in enumerate(names)}
        polls.append(SampleBatch(dev.name, np.array([(DAY0 + k) * NS]), values, dict.fromkeys(names, good)))
    t_split = t_update = 0.0
    for b in polls:
        t0 = time.process_time()
        parts = list(router.split(b))
        t1 = time.process_time()
        for route, part in parts:
            stage.update(route, part)
        t2 = time.process_time()
        t_split, t_update = t_split + t1 - t0, t_update + t2 - t1
    total = (t_split + t_update) / (tags * seconds) * 1e6
    return total, t_update / (t_split + t_update)


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
    ap.add_argument("--small", action="store_true", help="6 h per asset instead of a day")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    seconds = 6 * 3600 if args.small else 86400
    unit = small_call()
    print(f"one small numpy call: {unit * 1e6:.2f} µs (the unit of per-call overhead, same run)")
    for label, windows in (
        ("runtime's 6 window schemes", RUNTIME_WINDOWS),
        ("4 default schemes", DEFAULT_WINDOWS),
    ):
        for k in (1, 4, 20, 120):
            per_row = updates_of(windows, k)
            print(
                f"streaming, {label}, {k:>3} rows per update: {per_row * 1e6:7.1f} µs per row, "
                f"{per_row * k * 1e3:6.2f} ms per update = {per_row * k / unit:,.0f} small numpy calls"
            )

    for linger in (0.0, None):
        label = "each poll booked at once" if linger == 0 else "rows held (analytics.hold_rows default)"
        per, share = stage_cost(100 if args.small else 500, 300, linger)
        print(f"analytics stage, 10 tags per asset, {label}: {per:.1f} µs/tag-sample ({share:.0%} in update)")

    specs, ts, sig, qual = make_fleet(1, seconds)
    s1 = specs[0]
    one_asset = ({r: v[0] for r, v in sig.items()}, {r: v[0] for r, v in qual.items()})
    t_day = timed(lambda: StreamingAnalytics(s1).update(ts, *one_asset), args.repeat)
    print(
        f"streaming, 1 asset × {seconds} rows in one update: {t_day * 1e3:.0f} ms = "
        f"{t_day / seconds * 1e6:.2f} µs/row"
    )
    n_ref = 3600
    sl = {r: v[0, :n_ref] for r, v in sig.items()}
    ql = {r: v[0, :n_ref] for r, v in qual.items()}
    t_ref = timed(lambda: reference(s1, ts[:n_ref], sl, ql), 1)
    print(
        f"oracle (plain Python, tests/analytics_oracle.py): {n_ref / t_ref / 1e3:.1f} k rows/s on 1 h; "
        f"the streaming path in one update is {t_ref / n_ref / (t_day / seconds):,.0f}× faster per row"
    )


if __name__ == "__main__":
    main()

"""Random but realistic single-asset series for the analytics property tests (no tests here).

One seed and a few switches give a spec plus arrays with irregular spacing, duplicates,
out-of-order rows, Bad/Missing samples, gaps longer than the max gap, counter rollovers and
resets, optional PLC state codes and emission-factor series.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_agent.analytics import (
    AssetSpec,
    CalendarWindow,
    CounterSpec,
    EmissionSeries,
    FixedWindow,
    RollingWindow,
    StateThresholds,
)

NS = 1_000_000_000
T0 = 1_700_000_000 * NS  # 2023-11-14 22:13:20 UTC


@dataclass
class Scenario:
    spec: AssetSpec
    ts: np.ndarray
    signals: dict[str, np.ndarray]
    quality: dict[str, np.ndarray]


def make_scenario(
    seed: int,
    n: int = 200,
    *,
    primary: str = "counter",
    plc_state: bool = False,
    messy: bool = True,
    power_mode: str = "instantaneous",
    bits: int = 16,
) -> Scenario:
    rng = np.random.default_rng(seed)
    steps = rng.choice([1, 2, 5, 10, 30], size=n) * NS + rng.integers(0, NS // 2, n)
    if messy:
        steps[rng.random(n) < 0.03] = rng.integers(70, 400, 1)[0] * NS  # gaps > max_gap
    ts = T0 + rng.integers(0, 3600) * NS + np.cumsum(steps)
    level = rng.choice([0.2, 3.0, 20.0], size=n // 10 + 1)
    p = np.repeat(level, 10)[:n] + rng.normal(0, 0.8, n)
    p = np.abs(p).astype(np.float32 if rng.random() < 0.5 else np.float64)
    inc = np.maximum(0, np.round(p.astype(np.float64) * rng.uniform(0.5, 1.5))).astype(np.int64)
    mod = 1 << bits
    energy = (rng.integers(0, mod) + np.cumsum(inc)) % mod
    part_inc = rng.integers(0, 3, n)
    parts = np.cumsum(part_inc)
    scrap = np.cumsum(rng.binomial(part_inc, 0.1))  # scrap never outruns production
    if messy and n > 20:
        k = int(rng.integers(5, n - 5))
        energy[k:] = energy[k:] - energy[k] + rng.integers(0, 5)  # meter reset
        parts[k // 2 :] -= parts[k // 2]  # counter reset
    signals: dict[str, np.ndarray] = {
        "power": p,
        "energy_counter": energy.astype(np.uint16 if bits == 16 else np.uint32),
        "part_counter": parts.astype(np.uint32),
        "scrap_counter": scrap.astype(np.uint32),
        "air_flow": rng.uniform(0, 10, n),
        "temperature": rng.normal(20, 3, n),
    }
    if plc_state:
        st = rng.choice([0, 1, 2, 3, 4], n).astype(np.float64)
        st[rng.random(n) < 0.05] = 7  # invalid code
        signals["state"] = st
    quality = {}
    for role in signals:
        q = np.zeros(n, np.uint8)
        if messy:
            q[rng.random(n) < 0.08] = rng.choice([1, 2, 3])
            q[rng.random(n) < 0.05] = 1
        quality[role] = q
    if messy:
        signals["power"][rng.random(n) < 0.02] = np.nan
        dup = rng.choice(n, size=n // 15)
        order = np.concatenate([np.arange(n), dup])
        ts = ts[order]
        signals = {r: v[order] for r, v in signals.items()}
        quality = {r: q[order] for r, q in quality.items()}
        # shuffle within small blocks: out of order, but not across the whole series
        perm = np.arange(ts.size)
        for a in range(0, ts.size, 7):
            perm[a : a + 7] = rng.permutation(perm[a : a + 7])
        ts = ts[perm]
        signals = {r: v[perm] for r, v in signals.items()}
        quality = {r: q[perm] for r, q in quality.items()}
    counters = {
        "part_counter": CounterSpec(max_rate_per_s=5.0),
        "scrap_counter": CounterSpec(max_rate_per_s=5.0),
    }
    if primary == "counter":
        counters["energy_counter"] = CounterSpec(scale=0.01, bits=bits)  # type: ignore[arg-type]
    else:
        signals.pop("energy_counter")
        quality.pop("energy_counter")
    ef: float | EmissionSeries = 0.35
    if rng.random() < 0.5:
        ef_ts = T0 + np.arange(0, 4 * 3600, 900, dtype=np.int64) * NS
        ef = EmissionSeries(ef_ts, rng.uniform(0.1, 0.5, ef_ts.size))
    spec = AssetSpec(
        asset=f"a{seed}",
        kind="compressor" if seed % 2 else "machine",
        rated_power_kw=150.0,
        thresholds=StateThresholds(
            off_below_kw=1.0, idle_below_kw=8.0, hysteresis_kw=1.0, min_dwell_s=float(rng.choice([0, 3, 20]))
        ),
        counters=counters,
        signals=frozenset({"power", "air_flow", "temperature"} | ({"state"} if plc_state else set())),
        ideal_cycle_time_s=4.0,
        emission_factor=ef,
        max_gap_s=60.0,
        power_mode=power_mode,  # type: ignore[arg-type]
        demand_block_s=300,
        windows=(
            FixedWindow("1min", 60),
            FixedWindow("15min", 900),
            CalendarWindow("shift", (6.0, 14.0, 22.5), "Europe/Berlin"),
            RollingWindow("r30", 1800, 300),
        ),
    )
    return Scenario(spec, ts.astype(np.int64), signals, quality)

"""A small synthetic site for tests, benchmarks and demos: known model, known savings.

Energy per interval = base load (higher in working hours) + a per-unit production term
+ heating below a balance point + noise. A retrofit cuts the base load by a fraction from
a given day on, and the true savings are computed from the same draws without it.
"""

from __future__ import annotations

__all__ = ["SyntheticSite", "synthetic_site"]

from dataclasses import dataclass
from datetime import UTC, date

import numpy as np

from edge_agent.evaluation._arrays import FloatArray, IntArray
from edge_agent.evaluation._channels import Channel, LoadedData, Role
from edge_agent.evaluation._timebase import local_midnight_ns

_H = 3600.0


@dataclass(frozen=True)
class SyntheticSite:
    """The data as loaded, and the truth behind them."""

    data: LoadedData
    start: date
    true_savings_kwh: float  # in intervals from ``retrofit_day`` on
    energy_without_retrofit: FloatArray


def synthetic_site(
    *,
    days: int,
    interval_s: int = 900,
    seed: int = 0,
    start: date = date(2023, 1, 2),
    retrofit_day: int | None = None,
    base_cut: float = 0.3,
    balance_c: float = 15.0,
    heating_kw_per_k: float = 2.0,
    kwh_per_unit: float = 0.5,
    noise: float = 0.05,
) -> SyntheticSite:
    """``days`` of interval data (UTC, interval END stamps) for a one-shift-pattern site."""
    rng = np.random.default_rng(seed)
    n = days * 86_400 // interval_s
    dt_h = interval_s / _H
    t0 = local_midnight_ns(start, UTC)
    starts: IntArray = t0 + np.arange(n, dtype=np.int64) * interval_s * 1_000_000_000
    hour = (np.arange(n) * dt_h) % 24.0
    day = (np.arange(n) * dt_h // 24).astype(np.int64)
    weekday = (np.datetime64(start, "D").astype(np.int64) + 3 + day) % 7  # 0 = Monday
    working = (weekday < 5) & (hour >= 6) & (hour < 22)
    # weather: seasonal swing, a daily cycle and persistent day-to-day anomalies
    season = 9.0 - 11.0 * np.cos(2 * np.pi * (day + (start.timetuple().tm_yday - 15)) / 365.25)
    anomaly = np.repeat(np.cumsum(rng.normal(0.0, 1.2, days)) * 0.3, 86_400 // interval_s)[:n]
    temp = season + anomaly + 4.0 * np.sin(2 * np.pi * (hour - 9) / 24) + rng.normal(0.0, 0.5, n)
    demand = np.repeat(rng.uniform(0.5, 1.0, days), 86_400 // interval_s)[:n]
    units = np.where(working, rng.poisson(40.0 * dt_h * demand), 0).astype(np.float64)
    base_kw = np.where(working, 30.0, 8.0)
    heating = heating_kw_per_k * np.maximum(balance_c - temp, 0.0)
    scatter = 1.0 + rng.normal(0.0, noise, n)
    without = (base_kw + heating) * dt_h * scatter + kwh_per_unit * units
    cut = np.zeros(n, dtype=np.bool_) if retrofit_day is None else day >= retrofit_day
    energy = without - np.where(cut, base_cut * base_kw * dt_h * scatter, 0.0)
    hours = np.where(units > 0, dt_h, 0.0)
    step = interval_s * 1_000_000_000

    def ch(role: Role, values: FloatArray) -> Channel:
        return Channel(role, f"synthetic:{role.value}", starts, values.astype(np.float64), step)

    channels = {
        Role.ENERGY: ch(Role.ENERGY, energy),
        Role.PRODUCTION: ch(Role.PRODUCTION, units),
        Role.OPERATING_HOURS: ch(Role.OPERATING_HOURS, hours),
        Role.TEMPERATURE: ch(Role.TEMPERATURE, temp),
    }
    return SyntheticSite(
        data=LoadedData(channels=channels, timezone=UTC, description=f"synthetic site (seed {seed})"),
        start=start,
        true_savings_kwh=float((without - energy).sum()),
        energy_without_retrofit=without,
    )

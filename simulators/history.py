"""Offline history: weeks of interval data plus the exact truth, for the M&V evaluator.

Two models with the same seed run side by side, one with the retrofit and one without
(the counterfactual). Their production decisions are identical, so the true savings in
the reporting period is simply counterfactual minus actual, per asset.
"""

from __future__ import annotations

__all__ = ["HistoryResult", "SimulatedHistory", "generate_history", "simulate_history"]

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from .catalog import ASSETS, MACHINES
from .clock import DAY_S, LocalClock
from .config import PlantConfig, RetrofitConfig
from .plant import PlantModel, TickBlock
from .states import MachineState
from .truth import AssetTruth, PlantTruth

F64 = npt.NDArray[np.float64]

DEFAULT_START = datetime(2024, 1, 1)  # a Monday; interpreted in the requested time zone
#: Hours per machine state besides producing (``operating_h``), as the agent publishes them
#: (``time_idle_s`` …): an evaluator may use idle hours as a driver, since a machine left
#: idling overnight costs energy that no production figure explains.
_STATE_HOURS = {s.label: int(s) for s in (MachineState.IDLE, MachineState.SETUP, MachineState.FAULT)}


@dataclass(frozen=True)
class SimulatedHistory:
    """A history in memory: interval-end times, one array per CSV column, and the truth.

    The calibration harness evaluates hundreds of these; keeping them in memory spares it
    writing and parsing a CSV per case.
    """

    ends_s: npt.NDArray[np.float64]  # interval END, epoch seconds
    columns: dict[str, npt.NDArray[Any]]  # keyed by CSV column name
    truth: dict[str, Any]
    tz: tzinfo
    interval_s: int


@dataclass(frozen=True, slots=True)
class HistoryResult:
    """Where the files went and what the truth says."""

    csv_path: Path
    truth_path: Path
    rows: int
    truth: dict[str, Any]


def _columns() -> list[tuple[str, str]]:
    """(column name, printf format) in CSV order."""
    cols = [("outdoor_temp_c", "%.3f")]
    for a in ASSETS:
        cols += [(f"{a}_kwh", "%.6f"), (f"{a}_kvarh", "%.6f")]
        if a in MACHINES:
            cols += [
                (f"{a}_good", "%d"),
                (f"{a}_scrap", "%d"),
                (f"{a}_material_kg", "%.6f"),
                (f"{a}_operating_h", "%.6f"),
                (f"{a}_idle_kwh", "%.6f"),
                *((f"{a}_{state}_h", "%.6f") for state in _STATE_HOURS),
            ]
        if a == "comp1":
            cols += [("comp1_air_m3", "%.6f"), ("comp1_loaded_h", "%.6f")]
    return cols


def _aggregate(blk: TickBlock, per: int) -> dict[str, npt.NDArray[Any]]:
    """Sum (or average) a block of ticks into intervals of ``per`` ticks."""

    def s(x: npt.NDArray[Any]) -> npt.NDArray[Any]:
        out: npt.NDArray[Any] = x.reshape(-1, per).sum(axis=1)
        return out

    dt = blk.tick_s
    out: dict[str, npt.NDArray[Any]] = {"outdoor_temp_c": blk.outdoor_temp_c.reshape(-1, per).mean(axis=1)}
    for a in ASSETS:
        ab = blk.assets[a]
        out[f"{a}_kwh"] = s(ab.energy_kwh)
        out[f"{a}_kvarh"] = s(ab.reactive_kvarh)
        if a in MACHINES:
            out[f"{a}_good"] = s(ab.good)
            out[f"{a}_scrap"] = s(ab.scrap)
            out[f"{a}_material_kg"] = s(ab.material_g) / 1000.0
            out[f"{a}_operating_h"] = s((ab.state == 3).astype(np.float64)) * dt / 3600.0
            out[f"{a}_idle_kwh"] = s(np.where(ab.state == 1, ab.energy_kwh, 0.0))
            for state, code in _STATE_HOURS.items():
                out[f"{a}_{state}_h"] = s((ab.state == code).astype(np.float64)) * dt / 3600.0
        if a == "comp1":
            out["comp1_air_m3"] = s(ab.air_m3min) * dt / 60.0
            out["comp1_loaded_h"] = s(ab.loaded_frac) * dt / 3600.0
    return out


def _day_bounds(start: datetime | float | None, clock: LocalClock, days: int) -> list[float]:
    """Epoch seconds of each day boundary: same local wall time on consecutive dates, so a
    day is 23 or 25 hours across a DST change and periods end on local midnights."""
    if start is None:
        start = DEFAULT_START
    if not isinstance(start, datetime):
        start = datetime.fromtimestamp(float(start), clock.tz)
    elif start.tzinfo is None:
        start = start.replace(tzinfo=clock.tz)
    local = start.astimezone(clock.tz)
    return [(local + timedelta(days=d)).timestamp() for d in range(days + 1)]


def _period(truth_a: PlantTruth, truth_b: PlantTruth | None) -> dict[str, AssetTruth]:
    if truth_b is None:
        return dict(truth_a.assets)
    return {a: truth_b[a].minus(truth_a[a]) for a in ASSETS}


@contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Progress]:
    cols = (
        TextColumn("[bold]simulating plant history"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} days"),
        TimeRemainingColumn(),
    )
    with Progress(*cols, disable=not enabled, transient=True) as prog:
        prog.add_task("days", total=total)
        yield prog


def simulate_history(
    days: int,
    retrofit_day: int,
    interval_s: int = 60,
    seed: int = 42,
    *,
    start: datetime | float | None = None,
    tz: str | tzinfo = "UTC",
    config: PlantConfig | None = None,
    retrofit: RetrofitConfig | None = None,
    progress: bool = False,
) -> SimulatedHistory:
    """Simulate ``days`` days in memory; the baseline is days ``[0, retrofit_day)``."""
    if not isinstance(days, int) or days < 2:
        raise ValueError(f"days must be an integer >= 2 (baseline + reporting), got {days!r}")
    if not isinstance(retrofit_day, int) or not 0 < retrofit_day < days:
        raise ValueError(
            f"retrofit_day must be an integer with 0 < retrofit_day < days ({days}), got "
            f"{retrofit_day!r}: both the baseline and the reporting period need at least a day"
        )
    if not isinstance(interval_s, int) or interval_s < 1 or DAY_S % interval_s:
        raise ValueError(
            f"interval_s must be a whole number of seconds dividing a day (60, 300, 900 …), "
            f"got {interval_s!r}"
        )
    clock = LocalClock(tz)
    bounds = _day_bounds(start, clock, days)
    start_s = bounds[0]
    tick_s = math.gcd(interval_s, 60)  # ≤ 60 s ticks keep states and cycles faithful
    per = interval_s // tick_s
    day_ticks = []
    for d in range(days):
        length = round(bounds[d + 1] - bounds[d])
        if length % interval_s:
            raise ValueError(
                f"interval_s={interval_s} does not divide local day {d} ({length / 3600:g} h, a "
                f"DST change in {clock.tz}); use an interval that divides an hour, e.g. 900"
            )
        day_ticks.append(length // tick_s)
    retrofit_at = bounds[retrofit_day]
    common: dict[str, Any] = {
        "seed": seed,
        "start": start_s,
        "tick_s": float(tick_s),
        "time_scale": 1.0,
        "schedule_start": start_s,
        "config": config,
        "retrofit": retrofit,
        "tz": clock.tz,
        "main_rollover_s": None,
    }
    actual = PlantModel(retrofit_at=retrofit_at, **common)
    counterfactual = PlantModel(retrofit_at=None, **common)

    chunks: list[dict[str, npt.NDArray[Any]]] = []
    marks: dict[str, PlantTruth] = {}
    with _progress(progress, days) as prog:
        for d in range(days):
            if d == retrofit_day:
                marks["actual"], marks["cf"] = actual.truth(), counterfactual.truth()
            chunks.append(_aggregate(actual.advance(day_ticks[d]), per))
            counterfactual.advance(day_ticks[d])
            prog.advance(prog.task_ids[0])
    data = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    rows = data["outdoor_temp_c"].shape[0]

    end_a, end_cf = actual.truth(), counterfactual.truth()
    baseline = _period(marks["actual"], None)
    reporting = _period(marks["actual"], end_a)
    cf_reporting = _period(marks["cf"], end_cf)
    truth: dict[str, Any] = {
        "seed": seed,
        "timezone": str(clock.tz),
        "interval_s": interval_s,
        "model_tick_s": tick_s,
        "start": datetime.fromtimestamp(start_s, clock.tz).isoformat(),
        "end": datetime.fromtimestamp(bounds[-1], clock.tz).isoformat(),
        "retrofit_at": datetime.fromtimestamp(retrofit_at, clock.tz).isoformat(),
        "retrofit": {
            "idle_power_factor": actual.retrofit.idle_power_factor,
            "scrap_factor": actual.retrofit.scrap_factor,
            "assets": list(actual.retrofit.assets),
        },
        "periods": {
            "baseline": {
                "start": datetime.fromtimestamp(start_s, clock.tz).isoformat(),
                "end": datetime.fromtimestamp(retrofit_at, clock.tz).isoformat(),
                "days": retrofit_day,
            },
            "reporting": {
                "start": datetime.fromtimestamp(retrofit_at, clock.tz).isoformat(),
                "end": datetime.fromtimestamp(bounds[-1], clock.tz).isoformat(),
                "days": days - retrofit_day,
            },
        },
        "assets": {
            a: {"baseline": baseline[a].summary(), "reporting": reporting[a].summary()} for a in ASSETS
        },
        "counterfactual_reporting": {a: cf_reporting[a].summary() for a in ASSETS},
        "true_savings_kwh": {a: cf_reporting[a].energy_kwh - reporting[a].energy_kwh for a in ASSETS},
        "true_savings_kvarh": {
            a: cf_reporting[a].reactive_kvarh - reporting[a].reactive_kvarh for a in ASSETS
        },
        "scrap_avoided_parts": {a: cf_reporting[a].scrap_parts - reporting[a].scrap_parts for a in MACHINES},
        "notes": (
            "Savings = counterfactual (same seed, same production decisions, no retrofit) "
            "minus actual, over the reporting period. Timestamps in history.csv are interval "
            "ends. operating_h = hours in state producing; idle_h, setup_h and fault_h = hours "
            "in those states. Production volume trends upward, so "
            "raw before/after totals understate the savings."
        ),
    }
    ends = start_s + interval_s * np.arange(1, rows + 1, dtype=np.float64)
    return SimulatedHistory(ends_s=ends, columns=data, truth=truth, tz=clock.tz, interval_s=interval_s)


def generate_history(
    days: int,
    retrofit_day: int,
    interval_s: int = 60,
    seed: int = 42,
    out_dir: str | Path = "out/history",
    *,
    start: datetime | float | None = None,
    tz: str | tzinfo = "UTC",
    config: PlantConfig | None = None,
    retrofit: RetrofitConfig | None = None,
    progress: bool = True,
) -> HistoryResult:
    """Write ``history.csv`` and ``truth.json`` for ``days`` days into ``out_dir``.

    The baseline period is days ``[0, retrofit_day)``, the reporting period
    ``[retrofit_day, days)``. Timestamps mark the interval END, ISO 8601 with UTC offset.
    """
    sim = simulate_history(
        days,
        retrofit_day,
        interval_s,
        seed,
        start=start,
        tz=tz,
        config=config,
        retrofit=retrofit,
        progress=progress,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, truth_path = out / "history.csv", out / "truth.json"
    cols = _columns()
    stamps = [datetime.fromtimestamp(float(t), sim.tz).isoformat() for t in sim.ends_s]
    fmt = "%s," + ",".join(f for _, f in cols) + "\n"
    columns = [stamps] + [sim.columns[name].tolist() for name, _ in cols]
    with csv_path.open("w", encoding="utf-8", newline="") as fh:
        fh.write("timestamp," + ",".join(name for name, _ in cols) + "\n")
        fh.writelines(fmt % row for row in zip(*columns, strict=True))
    truth_path.write_text(json.dumps(sim.truth, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return HistoryResult(csv_path=csv_path, truth_path=truth_path, rows=len(stamps), truth=sim.truth)

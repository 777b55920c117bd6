"""Calibration harness: does a stated 90 % interval contain the truth 90 % of the time?

An uncertainty is only worth signing when it is calibrated. The bundled plant simulator
runs every history twice, with and without the retrofit, so each case has an exact
counterfactual saving. The harness evaluates many such histories through the production
path (:func:`evaluate`) across seeds, retrofit sizes (zero included), production trends,
baseline lengths, daily and hourly resolution, single machines and sums, and reports:

- the share of 68 % and 90 % intervals that contain the true saving;
- the mean and median error as a share of the true saving (non-zero savings only);
- the false-claim rate: the share of zero-saving cases where savings were claimed.

The grid can evaluate the same histories with and without an idle-hours channel (hours
switched on without producing), a paired comparison of what that driver is worth.

``benchmarks/bench_calibration.py`` runs the full grid; a reduced grid runs in CI.
"""

from __future__ import annotations

__all__ = [
    "CalibrationCase",
    "CalibrationSummary",
    "CaseOutcome",
    "HistorySpec",
    "calibration_grid",
    "format_table",
    "loaded_data",
    "run_calibration",
    "summaries",
    "summarise",
]

import itertools
import math
import os
import statistics
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np

from edge_agent.evaluation._channels import Channel, LoadedData, Role
from edge_agent.evaluation._evaluate import EvaluationOptions, evaluate
from edge_agent.evaluation._timebase import Period, Resolution

if TYPE_CHECKING:
    from edge_agent_simulators.history import SimulatedHistory

REPORTING_DAYS = 28
INTERVAL_S = 900


@dataclass(frozen=True, slots=True)
class HistorySpec:
    """One simulated plant history: the seed, the retrofit size and the demand trend."""

    seed: int
    retrofit_size: float  # 0 = no change; 0.3 = idle power −30 %, scrap −20 %
    trend_per_day: float  # production demand growth per day
    baseline_days: int  # the longest baseline any case of this history uses


@dataclass(frozen=True, slots=True)
class CalibrationCase:
    """One evaluation of one history."""

    history: HistorySpec
    baseline_days: int
    resolution: Resolution
    assets: tuple[str, ...]
    #: Machine states whose hours the evaluator gets as its idle-hours driver (``--idle-hours``),
    #: e.g. ``("idle",)``; empty: no such channel, as before issue #10's third round.
    idle_states: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CaseOutcome:
    """What the evaluator said against what was true."""

    case: CalibrationCase
    truth_kwh: float
    savings_kwh: float
    u68_kwh: float
    u90_kwh: float
    claimed: bool
    model: str

    def inside(self, confidence: float) -> bool:
        u = self.u68_kwh if confidence < 0.8 else self.u90_kwh
        return abs(self.savings_kwh - self.truth_kwh) <= u


@dataclass(frozen=True, slots=True)
class CalibrationSummary:
    """The harness's figures for one group of cases."""

    label: str
    n: int
    coverage68: float
    coverage90: float
    mean_error: float  # mean of (estimate − truth) / truth over non-zero truths
    #: Standard error of ``mean_error`` with the cases of one seed as a cluster: the cases of a
    #: seed share its reporting period's rare events, so they are not independent.
    mean_error_se: float
    median_error: float
    n_zero: int
    false_claims: float  # share of zero-saving cases with a claim
    claim_rate: float  # share of non-zero cases with a claim


def calibration_grid(
    seeds: Iterable[int],
    sizes: Sequence[float] = (0.0, 0.15, 0.3, 0.5),
    trends: Sequence[float] = (0.0, 0.004),
    baseline_days: Sequence[int] = (28, 56),
    resolutions: Sequence[Resolution] = (Resolution.DAY, Resolution.HOUR),
    asset_sets: Sequence[tuple[str, ...]] = (("cnc1",), ("imm1",), ("cnc1", "imm1")),
    idle_states: Sequence[tuple[str, ...]] = ((),),
) -> list[CalibrationCase]:
    """Every combination; each (seed, size, trend) is one simulated history.

    Several ``idle_states`` evaluate the same histories with and without an idle-hours channel:
    a paired comparison, free of the seeds' luck."""
    longest = max(baseline_days)
    cases = []
    for seed, size, trend in itertools.product(seeds, sizes, trends):
        hist = HistorySpec(seed, size, trend, longest)
        for b, res, assets, idle in itertools.product(baseline_days, resolutions, asset_sets, idle_states):
            cases.append(CalibrationCase(hist, b, res, assets, idle))
    return cases


def _simulate(spec: HistorySpec) -> SimulatedHistory:
    from edge_agent_simulators.config import PlantConfig, RetrofitConfig, SiteParams
    from edge_agent_simulators.history import simulate_history

    config = PlantConfig(site=SiteParams(demand_trend_per_day=spec.trend_per_day))
    retrofit = RetrofitConfig(
        idle_power_factor=1.0 - spec.retrofit_size, scrap_factor=1.0 - spec.retrofit_size * 2.0 / 3.0
    )
    days = spec.baseline_days + REPORTING_DAYS
    return simulate_history(days, spec.baseline_days, INTERVAL_S, spec.seed, config=config, retrofit=retrofit)


def loaded_data(sim: SimulatedHistory, assets: Sequence[str], idle_states: Sequence[str] = ()) -> LoadedData:
    """The channels ``--asset A+B`` would load from the history's CSV, without the CSV; with
    ``idle_states``, also ``--idle-hours A_idle_h+B_idle_h`` (hours in those states)."""
    start_ns = np.round((sim.ends_s - sim.interval_s) * 1e9).astype(np.int64)
    step = sim.interval_s * 1_000_000_000
    cols = sim.columns

    def total(suffixes: Sequence[str]) -> np.ndarray:
        return np.asarray(sum(cols[f"{a}_{s}"] for a in assets for s in suffixes), dtype=np.float64)

    series = {
        Role.ENERGY: total(("kwh",)),
        Role.PRODUCTION: total(("good", "scrap")),
        Role.OPERATING_HOURS: total(("operating_h",)),
        Role.TEMPERATURE: np.asarray(cols["outdoor_temp_c"], dtype=np.float64),
    }
    if idle_states:
        series[Role.IDLE_HOURS] = total(tuple(f"{s}_h" for s in idle_states))
    channels = {r: Channel(r, f"sim:{r.value}", start_ns, v, step) for r, v in series.items()}
    return LoadedData(channels=channels, timezone=sim.tz, description=f"simulated {'+'.join(assets)}")


def _evaluate_case(case: CalibrationCase, sim: SimulatedHistory) -> CaseOutcome:
    retrofit = datetime.fromisoformat(sim.truth["retrofit_at"]).date()
    end = datetime.fromisoformat(sim.truth["end"]).date() - timedelta(days=1)
    options = EvaluationOptions(
        baseline=Period(retrofit - timedelta(days=case.baseline_days), retrofit - timedelta(days=1)),
        reporting=Period(retrofit, end),
        resolution=case.resolution,
    )
    result = evaluate(loaded_data(sim, case.assets, case.idle_states), options)
    sv = result.savings
    return CaseOutcome(
        case=case,
        truth_kwh=float(sum(sim.truth["true_savings_kwh"][a] for a in case.assets)),
        savings_kwh=sv.savings_kwh,
        u68_kwh=sv.at(0.68).kwh,
        u90_kwh=sv.at(0.90).kwh,
        claimed=result.verdict.claimed,
        model=result.model.spec.name,
    )


def _run_history(cases: Sequence[CalibrationCase]) -> list[CaseOutcome]:
    sim = _simulate(cases[0].history)
    return [_evaluate_case(c, sim) for c in cases]


def run_calibration(cases: Sequence[CalibrationCase], workers: int | None = None) -> list[CaseOutcome]:
    """Evaluate every case, one simulated history per task, on ``workers`` processes."""
    groups: dict[HistorySpec, list[CalibrationCase]] = {}
    for c in cases:
        groups.setdefault(c.history, []).append(c)
    tasks = list(groups.values())
    n = workers if workers is not None else min(os.cpu_count() or 1, len(tasks))
    if n <= 1:
        return [o for t in tasks for o in _run_history(t)]
    with ProcessPoolExecutor(max_workers=n) as pool:
        return [o for chunk in pool.map(_run_history, tasks) for o in chunk]


def summarise(outcomes: Sequence[CaseOutcome], label: str) -> CalibrationSummary:
    nonzero = [o for o in outcomes if o.case.history.retrofit_size > 0 and o.truth_kwh != 0]
    zero = [o for o in outcomes if o.case.history.retrofit_size == 0]
    errors = [(o.savings_kwh - o.truth_kwh) / o.truth_kwh for o in nonzero]
    by_seed: dict[int, list[float]] = {}
    for o, e in zip(nonzero, errors, strict=True):
        by_seed.setdefault(o.case.history.seed, []).append(e)
    seed_means = [statistics.fmean(v) for v in by_seed.values()]
    n = len(outcomes)
    return CalibrationSummary(
        label=label,
        n=n,
        coverage68=sum(o.inside(0.68) for o in outcomes) / n if n else math.nan,
        coverage90=sum(o.inside(0.90) for o in outcomes) / n if n else math.nan,
        mean_error=statistics.fmean(errors) if errors else math.nan,
        mean_error_se=statistics.stdev(seed_means) / math.sqrt(len(seed_means))
        if len(seed_means) > 1
        else math.nan,
        median_error=statistics.median(errors) if errors else math.nan,
        n_zero=len(zero),
        false_claims=sum(o.claimed for o in zero) / len(zero) if zero else math.nan,
        claim_rate=sum(o.claimed for o in nonzero) / len(nonzero) if nonzero else math.nan,
    )


def summaries(outcomes: Sequence[CaseOutcome]) -> list[CalibrationSummary]:
    """All cases, then per resolution; per idle-hours channel first when the grid varies it."""
    variants = sorted({o.case.idle_states for o in outcomes})
    out = []
    for idle in variants:
        group = [o for o in outcomes if o.case.idle_states == idle]
        name = "idle hours " + "+".join(idle) if idle else "no idle hours"
        prefix = "" if len(variants) == 1 else name + ", "
        out.append(summarise(group, prefix + "all"))
        for res in Resolution:
            sel = [o for o in group if o.case.resolution is res]
            if sel:
                out.append(summarise(sel, prefix + res.adjective))
    return out


def format_table(rows: Sequence[CalibrationSummary]) -> str:
    """A Markdown table, as it goes into the README and the closing note."""
    head = (
        "| cases | n | 68 % cover | 90 % cover | mean error (± SE over seeds) | median error "
        "| false claims at 0 | claims when saving > 0 |\n|---|---|---|---|---|---|---|---|\n"
    )
    body = "".join(
        f"| {r.label} | {r.n} | {100 * r.coverage68:.0f} % | {100 * r.coverage90:.0f} % | "
        f"{100 * r.mean_error:+.1f} % (± {100 * r.mean_error_se:.1f} %) | {100 * r.median_error:+.1f} % | "
        f"{100 * r.false_claims:.0f} % of {r.n_zero} | {100 * r.claim_rate:.0f} % |\n"
        for r in rows
    )
    return head + body

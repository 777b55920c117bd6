"""The evaluation itself: resample, fit and select a baseline, compute savings, apply gates.

Pure computation on already loaded channels: no I/O, so it can be tested and benchmarked
with in-memory data.
"""

from __future__ import annotations

__all__ = ["EvaluationOptions", "EvaluationResult", "evaluate"]

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta, tzinfo

import numpy as np

from edge_agent.evaluation._arrays import FloatArray, IntArray
from edge_agent.evaluation._channels import Channel, LoadedData, Role
from edge_agent.evaluation._design_gates import (
    DEFAULT_MIN_BASELINE_DAYS,
    REPORTING_COVERAGE_MIN,
    baseline_length_gate,
    day_type_gate,
    reporting_coverage_gate,
    significance_gate,
)
from edge_agent.evaluation._errors import EvaluationError
from edge_agent.evaluation._gates import (
    FSU_CONFIDENCE,
    RANGE_MARGIN,
    Gate,
    Verdict,
    evaluate_gates,
    share_in_range,
    verdict,
)
from edge_agent.evaluation._indicators import Indicator, RawComparison, production_indicators, raw_comparison
from edge_agent.evaluation._model import FittedModel
from edge_agent.evaluation._provenance import Provenance
from edge_agent.evaluation._resample import PeriodData, resample_period
from edge_agent.evaluation._savings import Savings, compute_savings
from edge_agent.evaluation._selection import (
    MIN_DOF,
    Selection,
    SelectionMethod,
    force_model,
    out_of_sample_rmse,
    select_model,
)
from edge_agent.evaluation._spec import ModelSpec
from edge_agent.evaluation._stats import FitStatistics
from edge_agent.evaluation._timebase import Period, Resolution, local_midnight_ns, local_ns

_DAY_NS = 86_400 * 1_000_000_000

REPORTED_CONFIDENCES = (0.68, 0.90)


@dataclass(frozen=True)
class EvaluationOptions:
    """How to evaluate. Periods are inclusive local dates; data between them are ignored."""

    baseline: Period
    reporting: Period
    resolution: Resolution = Resolution.DAY
    timezone: tzinfo | None = None  # None: the time zone the data were written in
    coverage_threshold: float = 0.9  # per bucket
    selection: SelectionMethod = SelectionMethod.ADJ_R2
    folds: int = 5
    confidence: float = 0.90  # the level the headline result is stated at
    title: str = "Before/after evaluation"
    #: Shortest baseline that may support a claim (at least one week is always required).
    min_baseline_days: int = DEFAULT_MIN_BASELINE_DAYS
    #: Share of the reporting period's expected energy readings in usable buckets.
    reporting_coverage_min: float = REPORTING_COVERAGE_MIN
    #: A forced baseline model instead of the selection (``--model``); None selects one.
    model: ModelSpec | None = None
    #: Non-routine adjustments (M&V plan): local days left out with a reason, and static
    #: changes inside the boundary as (kWh added to the adjusted baseline, justification).
    excluded: tuple[tuple[Period, str], ...] = ()
    static_adjustments: tuple[tuple[float, str], ...] = ()

    def __post_init__(self) -> None:
        if self.baseline.end >= self.reporting.start:
            raise EvaluationError(
                f"baseline {self.baseline} must end before the reporting period {self.reporting} starts"
            )
        if not 0.5 <= self.confidence < 1.0:
            raise EvaluationError(f"--confidence {self.confidence}: expected a level such as 0.9 or 0.95")
        if self.min_baseline_days < 1:
            raise EvaluationError(
                f"minimum baseline {self.min_baseline_days} days: expected a positive number"
            )
        if not 0.0 <= self.reporting_coverage_min <= 1.0:
            raise EvaluationError(
                f"reporting coverage minimum {self.reporting_coverage_min}: expected a fraction in [0, 1]"
            )
        if self.folds < 2:
            raise EvaluationError(f"--folds {self.folds}: cross-validation needs at least 2 folds")


@dataclass(frozen=True)
class EvaluationResult:
    """Everything the report, the JSON and the CSV are made from."""

    options: EvaluationOptions
    source: str
    timezone: tzinfo
    baseline: PeriodData
    reporting: PeriodData
    selection: Selection
    savings: Savings
    gates: tuple[Gate, ...]
    verdict: Verdict
    indicators: tuple[Indicator, ...]
    raw: RawComparison
    notes: tuple[str, ...]
    provenance: Provenance = field(default_factory=Provenance)

    @property
    def model(self) -> FittedModel:
        return self.selection.model

    @property
    def stats(self) -> FitStatistics:
        return self.selection.stats

    @property
    def confidences(self) -> tuple[float, ...]:
        return tuple(u.confidence for u in self.savings.uncertainty)


def _extrapolation_notes(model: FittedModel, base: PeriodData, rep: PeriodData) -> list[str]:
    notes = []
    for role in model.spec.roles:
        b: FloatArray = base.frame.variables[role]
        r: FloatArray = rep.frame.variables[role]
        lo, hi = float(b.min()), float(b.max())
        margin = RANGE_MARGIN * (hi - lo)
        outside = int(((r < lo - margin) | (r > hi + margin)).sum())
        if outside:
            notes.append(
                f"In {outside} of {r.shape[0]} reporting buckets the {role.label} lies outside the "
                f"baseline range ({lo:,.1f}–{hi:,.1f} {role.unit}); the adjusted baseline extrapolates there."
            )
    return notes


def _notes(model: FittedModel, base: PeriodData, rep: PeriodData) -> tuple[str, ...]:
    notes = _extrapolation_notes(model, base, rep)
    unseen = model.unseen_weekend_buckets(rep.frame)
    if unseen:
        how = (
            "the working weekdays' constant at the same hour"
            if model.spec.time_of_week
            else "half the weekday operating constant, with the spread of that guess in the uncertainty"
            if model.spec.on_off is not None and rep.frame.hour_of_week is None
            else "the weekday model"
        )
        notes.append(
            f"{unseen} reporting {rep.resolution.value} bucket(s) are working weekend buckets, which the "
            f"baseline never had; they are predicted with {how}. Include weekend work in the baseline."
        )
    for pd in (base, rep):
        dropped = pd.n_buckets - pd.n_kept
        if dropped:
            why = ", ".join(f"{role.label} {n}" for role, n in pd.drop_counts.items() if n)
            notes.append(
                f"{pd.name.capitalize()}: {dropped} of {pd.n_buckets} {pd.resolution.value} buckets dropped "
                f"for coverage below {100 * pd.threshold:.0f} % (by channel: {why})."
            )
    if rep.data_coverage < 0.9:
        notes.append(
            f"Usable data cover only {100 * rep.data_coverage:.0f} % of the reporting period; savings are "
            "stated for the usable buckets only and are not extrapolated to the missing ones."
        )
    if model.spec.time_of_week and rep.frame.hour_of_week is not None:
        _, unknown = model.absorber.lookup(rep.frame.hour_of_week, len(rep.frame))
        if unknown.any():
            notes.append(
                f"{int(unknown.sum())} reporting hours fall in time-of-week bins absent from the baseline; "
                "they use the average constant."
            )
    return tuple(notes)


def _per_local_day(values: FloatArray, start_ns: IntArray, tz: tzinfo) -> FloatArray:
    """Sums of ``values`` per local calendar day (buckets of a day or less)."""
    _, day = np.unique(local_ns(start_ns, tz) // _DAY_NS, return_inverse=True)
    return np.asarray(np.bincount(day.reshape(-1), weights=values), dtype=np.float64)


def _without_excluded(
    channels: Mapping[Role, Channel], excluded: tuple[tuple[Period, str], ...], tz: tzinfo
) -> Mapping[Role, Channel]:
    """Energy readings on excluded days become missing, so their buckets drop out of both periods."""
    if not excluded:
        return channels
    e = channels[Role.ENERGY]
    gone = np.zeros(e.start_ns.shape, dtype=np.bool_)
    for period, _ in excluded:
        lo = local_midnight_ns(period.start, tz)
        hi = local_midnight_ns(period.end + timedelta(days=1), tz)
        gone |= (e.start_ns >= lo) & (e.start_ns < hi)
    out = dict(channels)
    out[Role.ENERGY] = replace(e, values=np.where(gone, np.nan, e.values))
    return out


def evaluate(data: LoadedData, options: EvaluationOptions) -> EvaluationResult:
    """Run the whole evaluation on loaded data. Gate failures are results, not exceptions."""
    tz = options.timezone or data.timezone
    kw = {"threshold": options.coverage_threshold}
    channels = _without_excluded(data.channels, options.excluded, tz)
    base = resample_period("baseline", options.baseline, options.resolution, tz, channels, **kw)
    rep = resample_period("reporting", options.reporting, options.resolution, tz, channels, **kw)
    if rep.n_kept == 0:
        raise EvaluationError(
            f"{data.description}: the reporting period {options.reporting} has no usable "
            f"{options.resolution.value} buckets (coverage ≥ {100 * options.coverage_threshold:.0f} %); "
            "check the dates, the time zone and that the data reach that far."
        )
    if options.model is not None:
        selection = force_model(base.frame, options.model)
    else:
        selection = select_model(base.frame, options.selection, folds=options.folds)
    model = selection.model
    adjusted = model.predict(rep.frame)
    levels = {*REPORTED_CONFIDENCES, FSU_CONFIDENCE, options.confidence}
    savings = compute_savings(
        selection.stats,
        adjusted,
        rep.frame.energy,
        levels,
        model.sum_variance(rep.frame),
        static_kwh=sum(a for a, _ in options.static_adjustments),
        oos_rmse=out_of_sample_rmse(model.spec, base.frame, options.folds),
        day_gaps=_per_local_day(adjusted - rep.frame.energy, rep.frame.start_ns, tz),
    )
    in_range = share_in_range(model, base.frame, rep.frame)
    gates = evaluate_gates(options.resolution, base.data_coverage, selection.stats, savings, in_range)
    day_types = day_type_gate(base.frame, rep.frame)
    gates += (
        baseline_length_gate(base, options.min_baseline_days),
        *((day_types,) if day_types is not None else ()),
        reporting_coverage_gate(rep, options.reporting_coverage_min),
        significance_gate(model, MIN_DOF),
    )
    return EvaluationResult(
        options=options,
        source=data.description,
        timezone=tz,
        baseline=base,
        reporting=rep,
        selection=selection,
        savings=savings,
        gates=gates,
        verdict=verdict(gates, savings, options.confidence),
        indicators=production_indicators(base, rep),
        raw=raw_comparison(base, rep),
        notes=_notes(model, base, rep),
    )

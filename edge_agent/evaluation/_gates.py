"""Acceptance gates: when one fails, no savings are claimed.

Savings are also withheld when the reporting period lies mostly outside the conditions the
baseline saw (ISO 50006: a baseline is valid over the range of its relevant variables): the
ASHRAE 14 formula assumes similar conditions and understates the error of an extrapolation.
Daily limits follow the brief (CV(RMSE) ≤ 25 %, |NMBE| ≤ 0.5 %). Hourly models may be
noisier (ASHRAE 14's hourly calibration limit, 30 %); weekly ones should be tighter
(20 %, between daily and ASHRAE 14's 15 % for monthly models). Savings are claimed only
when their uncertainty is below 50 % of the savings at 68 % confidence (ASHRAE 14).
"""

from __future__ import annotations

__all__ = [
    "COVERAGE_MIN",
    "CV_RMSE_LIMITS",
    "FSU_CONFIDENCE",
    "FSU_LIMIT",
    "NMBE_LIMIT",
    "RANGE_MARGIN",
    "RANGE_MIN",
    "Gate",
    "Verdict",
    "evaluate_gates",
    "share_in_range",
    "verdict",
]

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge_agent.evaluation._frame import Frame
from edge_agent.evaluation._model import FittedModel
from edge_agent.evaluation._savings import Savings
from edge_agent.evaluation._stats import FitStatistics
from edge_agent.evaluation._timebase import Resolution

CV_RMSE_LIMITS = {Resolution.HOUR: 0.30, Resolution.DAY: 0.25, Resolution.WEEK: 0.20}
# Share of reporting buckets that must lie inside the baseline's conditions. A rising order
# book pushes a few buckets past the baseline maximum, which a linear model bridges well; a
# reporting period mostly outside (a heating-season baseline applied to summer) does not.
RANGE_MIN = 0.75
RANGE_MARGIN = 0.10  # the baseline range is widened by this share of its span on each side
NMBE_LIMIT = 0.005
COVERAGE_MIN = 0.90
FSU_LIMIT = 0.50
FSU_CONFIDENCE = 0.68


@dataclass(frozen=True, slots=True)
class Gate:
    """One pass/fail check with the value found and the threshold applied."""

    key: str
    title: str
    passed: bool
    value: str
    threshold: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the evaluation may claim, in one plain sentence, at a stated confidence."""

    claimed: bool
    confidence: float
    headline: str


def share_in_range(model: FittedModel, base: Frame, rep: Frame) -> float:
    """Share of reporting buckets whose every model variable lies in the (widened) baseline range."""
    inside = np.ones(len(rep), dtype=np.bool_)
    for role in model.spec.roles:
        b = base.variables[role]
        lo, hi = float(b.min()), float(b.max())
        margin = RANGE_MARGIN * (hi - lo)
        r = rep.variables[role]
        inside &= (r >= lo - margin) & (r <= hi + margin)
    return float(inside.mean()) if len(rep) else 0.0


def evaluate_gates(
    resolution: Resolution, baseline_coverage: float, stats: FitStatistics, savings: Savings, in_range: float
) -> tuple[Gate, ...]:
    cv_limit = CV_RMSE_LIMITS[resolution]
    fsu = savings.at(FSU_CONFIDENCE).fsu
    return (
        Gate(
            "data_sufficiency",
            "Data sufficiency (baseline period covered by usable data)",
            baseline_coverage >= COVERAGE_MIN,
            f"{100 * baseline_coverage:.1f} %",
            f"≥ {100 * COVERAGE_MIN:.0f} %",
        ),
        Gate(
            "cv_rmse",
            f"Baseline model CV(RMSE), {resolution.adjective} data",
            stats.cv_rmse <= cv_limit,
            f"{100 * stats.cv_rmse:.2f} %",
            f"≤ {100 * cv_limit:.0f} %",
        ),
        Gate(
            "nmbe",
            "Baseline model NMBE",
            abs(stats.nmbe) <= NMBE_LIMIT,
            f"{100 * stats.nmbe:.3f} %",
            f"within ±{100 * NMBE_LIMIT:.1f} %",
        ),
        Gate(
            "baseline_range",
            f"Reporting conditions within the baseline range (±{100 * RANGE_MARGIN:.0f} % of its span)",
            in_range >= RANGE_MIN,
            f"{100 * in_range:.1f} % of reporting buckets",
            f"≥ {100 * RANGE_MIN:.0f} %",
        ),
        Gate(
            "savings_uncertainty",
            f"Fractional savings uncertainty at {100 * FSU_CONFIDENCE:.0f} % confidence (ASHRAE 14)",
            fsu <= FSU_LIMIT,
            f"{100 * fsu:.1f} %",
            f"≤ {100 * FSU_LIMIT:.0f} %",
        ),
    )


def verdict(gates: Sequence[Gate], savings: Savings, confidence: float) -> Verdict:
    """Claim savings (or an increase) only when every gate passes; otherwise say why not."""
    failed = [g for g in gates if not g.passed]
    pct = f"{100 * confidence:.0f} %"
    if failed:
        why = "; ".join(f"{g.title}: {g.value} (required {g.threshold})" for g in failed)
        return Verdict(
            False,
            confidence,
            f"No savings are claimed: {len(failed)} gate(s) failed — {why}. The figures below are "
            "diagnostics only, not a savings result.",
        )
    u = savings.at(confidence)
    s, f = savings.savings_kwh, savings.savings_fraction
    if s >= 0:
        head = f"Savings of {s:,.0f} kWh ({100 * f:.1f} % of the adjusted baseline)"
    else:
        head = f"Energy use rose by {-s:,.0f} kWh ({-100 * f:.1f} % above the adjusted baseline)"
    return Verdict(True, confidence, f"{head}, ± {u.kwh:,.0f} kWh at {pct} confidence.")

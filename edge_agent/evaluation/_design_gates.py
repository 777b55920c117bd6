"""Gates on the evaluation's design: is the baseline long and varied enough to stand for the
reporting period, is the reporting period covered, and does the model hold only terms the
data support?

A model fitted on five weekdays passes every goodness-of-fit test and still cannot say what a
Saturday shift or a quiet Monday costs; these gates refuse such claims in plain words.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MIN_BASELINE_DAYS",
    "MIN_DAY_TYPE_BUCKETS",
    "REPORTING_COVERAGE_MIN",
    "baseline_length_gate",
    "day_type_gate",
    "reporting_coverage_gate",
    "significance_gate",
]

from edge_agent.evaluation._channels import ACTIVITY_ROLES
from edge_agent.evaluation._frame import Frame
from edge_agent.evaluation._gates import Gate
from edge_agent.evaluation._model import FittedModel
from edge_agent.evaluation._resample import PeriodData
from edge_agent.evaluation._selection import weak_terms

#: Four weeks: every weekday four times, and a fair chance of the occasional weekend shift.
DEFAULT_MIN_BASELINE_DAYS = 28
#: A day type (working weekday, working weekend day, idle day) needs this many baseline buckets.
MIN_DAY_TYPE_BUCKETS = 2
REPORTING_COVERAGE_MIN = 0.90
MIN_T = 2.0

_DAY_TYPES = ("working weekday", "working weekend day", "idle weekday", "idle weekend day")


def baseline_length_gate(base: PeriodData, min_days: int) -> Gate:
    """The baseline spans at least ``min_days`` days and at least one full week."""
    need = max(min_days, 7)
    days = base.period.days
    return Gate(
        "baseline_length",
        "Baseline length (at least one full operating cycle)",
        days >= need,
        f"{days} days",
        f"≥ {need} days",
    )


def _day_types(frame: Frame) -> list[int] | None:
    """Counts of each day type among the frame's buckets, or None without weekdays."""
    weekend = frame.weekend
    if weekend is None:
        return None
    driver = next((frame.variables[r] for r in ACTIVITY_ROLES if r in frame.variables), None)
    if driver is None:
        return None
    on = driver > 0
    return [
        int((on & ~weekend).sum()),
        int((on & weekend).sum()),
        int((~on & ~weekend).sum()),
        int((~on & weekend).sum()),
    ]


def day_type_gate(base: Frame, rep: Frame) -> Gate | None:
    """Every day type the reporting period has was seen in the baseline (production data only)."""
    b, r = _day_types(base), _day_types(rep)
    if b is None or r is None:
        return None
    missing = [
        f"{_DAY_TYPES[k]} ({r[k]} in reporting, {b[k]} in baseline)"
        for k in range(len(_DAY_TYPES))
        if r[k] > 0 and b[k] < MIN_DAY_TYPE_BUCKETS
    ]
    return Gate(
        "day_types",
        "Every day type in the reporting period is in the baseline",
        not missing,
        "missing: " + "; ".join(missing) if missing else "all present",
        f"≥ {MIN_DAY_TYPE_BUCKETS} baseline buckets of each",
    )


def reporting_coverage_gate(rep: PeriodData, minimum: float = REPORTING_COVERAGE_MIN) -> Gate:
    """Savings over a mostly missing reporting period are not the period's savings."""
    return Gate(
        "reporting_coverage",
        "Reporting period covered by usable data",
        rep.data_coverage >= minimum,
        f"{100 * rep.data_coverage:.1f} %",
        f"≥ {100 * minimum:.0f} %",
    )


def significance_gate(model: FittedModel, min_dof: int) -> Gate:
    """Every fitted slope is significant and enough degrees of freedom remain."""
    weak = [f"{c.name} (t = {c.t:.1f})" for c in weak_terms(model)]
    dof = model.n - model.p
    problems = weak + ([f"only {dof} degrees of freedom"] if dof < min_dof else [])
    return Gate(
        "significance",
        "Model terms significant",
        not problems,
        "; ".join(problems) if problems else f"all |t| ≥ {MIN_T:g}, {dof} degrees of freedom",
        f"|t| ≥ {MIN_T:g}, ≥ {min_dof} degrees of freedom",
    )

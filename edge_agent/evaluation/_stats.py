"""Fit statistics and ASHRAE Guideline 14 savings uncertainty.

CV(RMSE) = √(Σe²/(n−p)) / ȳ and NMBE = Σe / ((n−p)·ȳ), with p counting every fitted
parameter (balance points included). The fractional savings uncertainty is

    FSU = α · t · CV · √[(n/n′)(1 + 2/n′) / m] / F,   n′ = n(1−ρ)/(1+ρ),  α = 1.26,

with t two-sided on n−p degrees of freedom and ρ the lag-1 autocorrelation of residuals.
"""

from __future__ import annotations

__all__ = [
    "ASHRAE_ALPHA",
    "MIN_SCATTER_DAYS",
    "FitStatistics",
    "day_sum_variance",
    "effective_n",
    "fit_statistics",
    "fractional_savings_uncertainty",
    "lag1_autocorrelation",
    "minimum_detectable_savings_fraction",
    "prediction_uncertainty_kwh",
    "savings_uncertainty_kwh",
    "t_critical",
]

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from edge_agent.evaluation._arrays import BoolArray, FloatArray

#: Empirical correction factor of ASHRAE Guideline 14's savings-uncertainty formula.
ASHRAE_ALPHA = 1.26


@dataclass(frozen=True, slots=True)
class FitStatistics:
    """Goodness of fit of a baseline model on its own period."""

    n: int
    p: int
    mean: float
    r2: float
    adj_r2: float
    cv_rmse: float  # fraction, not percent
    nmbe: float  # fraction
    rho: float  # lag-1 autocorrelation of residuals
    rmse: float


def lag1_autocorrelation(residuals: FloatArray, adjacent: BoolArray | None = None) -> float:
    """Σ e_t e_{t−1} / Σ e_t², using only pairs of buckets that are next to each other in time."""
    e = np.asarray(residuals, dtype=np.float64)
    n = int(e.shape[0])
    if n < 3:
        return 0.0
    pairs = np.ones(n - 1, dtype=np.bool_) if adjacent is None else adjacent[1:]
    n_pairs = int(pairs.sum())
    denom = float(e @ e)
    if n_pairs == 0 or denom == 0.0:
        return 0.0
    num = float(np.sum((e[1:] * e[:-1])[pairs]))
    return num / denom * (n - 1) / n_pairs


def fit_statistics(
    y: FloatArray, fitted: FloatArray, p: int, adjacent: BoolArray | None = None
) -> FitStatistics:
    """R², adjusted R², CV(RMSE), NMBE and ρ for ``n`` points and ``p`` fitted parameters."""
    n = int(y.shape[0])
    if n - p < 1:
        raise ValueError(f"{n} points cannot support {p} parameters")
    e = y - fitted
    mean = float(y.mean())
    sse = float(e @ e)
    sst = float(((y - mean) ** 2).sum())
    r2 = 1.0 - sse / sst if sst > 0 else 0.0
    adj = 1.0 - (1.0 - r2) * (n - 1) / (n - p) if n > p else float("nan")
    rmse = math.sqrt(sse / (n - p))
    return FitStatistics(
        n=n,
        p=p,
        mean=mean,
        r2=r2,
        adj_r2=adj,
        cv_rmse=rmse / mean if mean != 0 else float("inf"),
        nmbe=float(e.sum()) / ((n - p) * mean) if mean != 0 else float("inf"),
        rho=lag1_autocorrelation(e, adjacent),
        rmse=rmse,
    )


def t_critical(confidence: float, dof: int) -> float:
    """Two-sided Student-t critical value, e.g. 1.649 for 90 % and 363 degrees of freedom."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), not {confidence}")
    t: float = float(stats.t.ppf(0.5 + confidence / 2.0, dof))
    return t


def effective_n(n: int, rho: float) -> float:
    """n′ = n(1−ρ)/(1+ρ). Negative ρ is treated as 0 (no credit for anti-correlation)."""
    r = min(max(rho, 0.0), 0.999)
    return n * (1.0 - r) / (1.0 + r)


def _spread(n: int, m: int, rho: float) -> float:
    n_eff = effective_n(n, rho)
    return math.sqrt((n / n_eff) * (1.0 + 2.0 / n_eff) / m)


def fractional_savings_uncertainty(
    *, n: int, m: int, p: int, cv_rmse: float, savings_fraction: float, rho: float, confidence: float
) -> float:
    """ASHRAE 14 fractional savings uncertainty (a fraction of the savings, not percent)."""
    if savings_fraction == 0:
        return float("inf")
    t = t_critical(confidence, n - p)
    return ASHRAE_ALPHA * t * cv_rmse * _spread(n, m, rho) / abs(savings_fraction)


def savings_uncertainty_kwh(
    *, n: int, m: int, p: int, cv_rmse: float, rho: float, confidence: float, adjusted_baseline_kwh: float
) -> float:
    """Absolute uncertainty of the savings over ``m`` reporting buckets: FSU × savings."""
    t = t_critical(confidence, n - p)
    return ASHRAE_ALPHA * t * cv_rmse * _spread(n, m, rho) * abs(adjusted_baseline_kwh)


def prediction_uncertainty_kwh(
    *,
    n: int,
    m: int,
    p: int,
    sigma2: float,
    param_variance: float,
    rho: float,
    confidence: float,
    reporting_variance: float = 0.0,
) -> float:
    """± of a sum of ``m`` reporting buckets from the least-squares prediction variance.

    Var = (n/n′)·(m·σ² + Var_param): the reporting period's own scatter plus the exact
    parameter error of the summed prediction, both inflated for lag-1 autocorrelation. The
    scatter term is at least ``reporting_variance``, the variance of the sum that the
    reporting period's own day-to-day scatter shows (:func:`day_sum_variance`).
    """
    t = t_critical(confidence, n - p)
    inflate = n / effective_n(n, rho)
    return t * math.sqrt(max(inflate * m * sigma2, reporting_variance) + inflate * param_variance)


#: Fewer reporting days than this say too little about their own scatter to be used.
MIN_SCATTER_DAYS = 7


def day_sum_variance(day_gaps: FloatArray) -> float:
    """Variance of Σ over the reporting days of (adjusted baseline − measured), from their scatter.

    A baseline without a rare, costly day (a machine left idling overnight) fits so well that
    its scatter promises a precision the reporting period does not have once such a day comes.
    The reporting days' own spread around their mean saving shows it: D² s² / D′ for D days
    with lag-1 autocorrelation ρ (D′ = D(1−ρ)/(1+ρ)). It also holds any real day-to-day
    variation of the saving, so it can only widen, never narrow, the model's interval.
    """
    d = np.asarray(day_gaps, dtype=np.float64)
    k = int(d.shape[0])
    if k < MIN_SCATTER_DAYS:
        return 0.0
    s2 = float(d.var(ddof=1))
    return k * k * s2 / effective_n(k, lag1_autocorrelation(d - d.mean()))


def minimum_detectable_savings_fraction(
    *, n: int, m: int, p: int, cv_rmse: float, rho: float, confidence: float, max_fsu: float = 0.5
) -> float:
    """Smallest savings fraction whose FSU at ``confidence`` stays within ``max_fsu``."""
    t = t_critical(confidence, n - p)
    return ASHRAE_ALPHA * t * cv_rmse * _spread(n, m, rho) / max_fsu

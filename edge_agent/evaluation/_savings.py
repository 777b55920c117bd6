"""Avoided energy: adjusted baseline minus measured, with its ASHRAE 14 uncertainty over time."""

from __future__ import annotations

__all__ = ["Savings", "Uncertainty", "compute_savings"]

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from edge_agent.evaluation._arrays import FloatArray
from edge_agent.evaluation._stats import (
    FitStatistics,
    day_sum_variance,
    minimum_detectable_savings_fraction,
    prediction_uncertainty_kwh,
    savings_uncertainty_kwh,
)


@dataclass(frozen=True, slots=True)
class Uncertainty:
    """Savings uncertainty at one confidence level."""

    confidence: float
    fsu: float  # fractional savings uncertainty (fraction of the savings)
    kwh: float  # ± absolute
    min_detectable_fraction: float  # smallest savings fraction with FSU ≤ 50 % at this level


@dataclass(frozen=True)
class Savings:
    """Savings over the usable reporting buckets, in total and cumulatively."""

    adjusted: FloatArray  # adjusted baseline per reporting bucket
    measured: FloatArray
    uncertainty: tuple[Uncertainty, ...]
    cumulative_band: dict[float, FloatArray]  # ± kWh of the cumulative savings, per confidence
    #: Non-routine static adjustments added to the adjusted baseline (M&V plan), kWh in total.
    static_kwh: float = 0.0

    @property
    def m(self) -> int:
        return int(self.measured.shape[0])

    @property
    def adjusted_baseline_kwh(self) -> float:
        return float(self.adjusted.sum()) + self.static_kwh

    @property
    def measured_kwh(self) -> float:
        return float(self.measured.sum())

    @property
    def savings_kwh(self) -> float:
        return self.adjusted_baseline_kwh - self.measured_kwh

    @property
    def savings_fraction(self) -> float:
        adj = self.adjusted_baseline_kwh
        return self.savings_kwh / adj if adj != 0 else float("nan")

    @property
    def cumulative(self) -> FloatArray:
        return np.asarray(np.cumsum(self.adjusted - self.measured), dtype=np.float64)

    def at(self, confidence: float) -> Uncertainty:
        for u in self.uncertainty:
            if abs(u.confidence - confidence) < 1e-9:
                return u
        raise KeyError(f"no uncertainty computed at {confidence:.0%} confidence")


def compute_savings(
    stats: FitStatistics,
    adjusted: FloatArray,
    measured: FloatArray,
    confidences: Iterable[float],
    param_variance: float | None = None,
    static_kwh: float = 0.0,
    oos_rmse: float | None = None,
    day_gaps: FloatArray | None = None,
) -> Savings:
    """Savings = Σ adjusted baseline − Σ measured, with the larger of two uncertainties.

    ASHRAE 14's formula counts the model's parameter error as 2m/n′ of the scatter whatever
    the reporting conditions; with ``param_variance`` (the exact variance of the summed
    prediction, :meth:`FittedModel.sum_variance`) the least-squares prediction interval is
    computed too, and the wider one is stated. The calibration harness showed ASHRAE's alone
    too narrow once production moves away from the baseline's mean. ``day_gaps`` (adjusted
    baseline − measured per local reporting day) put a floor under the scatter term: see
    :func:`day_sum_variance`.
    """
    reporting_variance = day_sum_variance(day_gaps) if day_gaps is not None else 0.0
    m = int(measured.shape[0])
    total_adj = float(adjusted.sum()) + static_kwh
    # an adjusted baseline of zero (nothing would have run) leaves no fraction to state;
    # the uncertainty gate then fails instead of the evaluation crashing
    savings = total_adj - float(measured.sum())
    levels = sorted(set(confidences))

    def ashrae(c: float, k: int, adj: float) -> float:
        return savings_uncertainty_kwh(
            m=k,
            confidence=c,
            adjusted_baseline_kwh=adj,
            n=stats.n,
            p=stats.p,
            cv_rmse=stats.cv_rmse,
            rho=stats.rho,
        )

    def widened(c: float) -> float:
        """How much wider than ASHRAE's the stated interval is (≥ 1)."""
        base = ashrae(c, m, total_adj)
        if param_variance is None or m == 0 or not base > 0:
            return 1.0
        # held-out error larger than the fit's scatter: scale the whole prediction variance
        inflate = max(1.0, (oos_rmse / stats.rmse) ** 2) if oos_rmse and stats.rmse > 0 else 1.0
        exact = prediction_uncertainty_kwh(
            n=stats.n,
            m=m,
            p=stats.p,
            sigma2=stats.rmse**2 * inflate,
            param_variance=param_variance * inflate,
            rho=stats.rho,
            confidence=c,
            reporting_variance=reporting_variance,
        )
        return max(1.0, exact / base)

    factor = {c: widened(c) for c in levels}
    unc = []
    for c in levels:
        kwh = ashrae(c, m, total_adj) * factor[c]
        mdf = (
            minimum_detectable_savings_fraction(
                m=m, confidence=c, n=stats.n, p=stats.p, cv_rmse=stats.cv_rmse, rho=stats.rho
            )
            * factor[c]
        )
        fsu = kwh / abs(savings) if savings != 0 and total_adj != 0 else float("inf")
        unc.append(Uncertainty(confidence=c, fsu=fsu, kwh=kwh, min_detectable_fraction=mdf))
    k = np.arange(1, m + 1, dtype=np.float64)
    cum_adj = np.cumsum(adjusted)
    band = {c: ashrae(c, 1, 1.0) * factor[c] * cum_adj / np.sqrt(k) for c in levels}
    return Savings(
        adjusted=adjusted,
        measured=measured,
        uncertainty=tuple(unc),
        cumulative_band=band,
        static_kwh=static_kwh,
    )

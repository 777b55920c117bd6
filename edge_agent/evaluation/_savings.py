"""Avoided energy: adjusted baseline minus measured, with its ASHRAE 14 uncertainty over time."""

from __future__ import annotations

__all__ = ["Savings", "Uncertainty", "compute_savings"]

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from edge_agent.evaluation._arrays import FloatArray
from edge_agent.evaluation._stats import (
    FitStatistics,
    fractional_savings_uncertainty,
    minimum_detectable_savings_fraction,
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

    @property
    def m(self) -> int:
        return int(self.measured.shape[0])

    @property
    def adjusted_baseline_kwh(self) -> float:
        return float(self.adjusted.sum())

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
    stats: FitStatistics, adjusted: FloatArray, measured: FloatArray, confidences: Iterable[float]
) -> Savings:
    """Savings = Σ adjusted baseline − Σ measured; uncertainty from the baseline fit (ASHRAE 14)."""
    m = int(measured.shape[0])
    total_adj = float(adjusted.sum())
    # an adjusted baseline of zero (nothing would have run) leaves no fraction to state;
    # the uncertainty gate then fails instead of the evaluation crashing
    fraction = (total_adj - float(measured.sum())) / total_adj if total_adj != 0 else float("nan")
    levels = sorted(set(confidences))
    unc = tuple(
        Uncertainty(
            confidence=c,
            fsu=fractional_savings_uncertainty(
                m=m,
                savings_fraction=fraction,
                confidence=c,
                n=stats.n,
                p=stats.p,
                cv_rmse=stats.cv_rmse,
                rho=stats.rho,
            ),
            kwh=savings_uncertainty_kwh(
                m=m,
                confidence=c,
                adjusted_baseline_kwh=total_adj,
                n=stats.n,
                p=stats.p,
                cv_rmse=stats.cv_rmse,
                rho=stats.rho,
            ),
            min_detectable_fraction=minimum_detectable_savings_fraction(
                m=m, confidence=c, n=stats.n, p=stats.p, cv_rmse=stats.cv_rmse, rho=stats.rho
            ),
        )
        for c in levels
    )
    k = np.arange(1, m + 1, dtype=np.float64)
    cum_adj = np.cumsum(adjusted)
    band = {
        c: savings_uncertainty_kwh(
            m=1,
            confidence=c,
            adjusted_baseline_kwh=1.0,
            n=stats.n,
            p=stats.p,
            cv_rmse=stats.cv_rmse,
            rho=stats.rho,
        )
        * cum_adj
        / np.sqrt(k)
        for c in levels
    }
    return Savings(adjusted=adjusted, measured=measured, uncertainty=unc, cumulative_band=band)

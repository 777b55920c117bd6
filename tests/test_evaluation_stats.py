"""ASHRAE Guideline 14 statistics: golden values and the formulas behind CV(RMSE), NMBE and ρ."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from edge_agent.evaluation import (
    ASHRAE_ALPHA,
    effective_n,
    fit_statistics,
    fractional_savings_uncertainty,
    lag1_autocorrelation,
    minimum_detectable_savings_fraction,
    savings_uncertainty_kwh,
    t_critical,
)


@pytest.mark.parametrize(
    ("rho", "fsu68", "fsu90"),
    [(0.0, 6.59, 10.91), (0.5, 11.47, 18.99)],
)
def test_fsu_golden_values(rho: float, fsu68: float, fsu90: float) -> None:
    common: dict[str, Any] = {
        "n": 365,
        "m": 365,
        "p": 2,
        "cv_rmse": 0.10,
        "savings_fraction": 0.10,
        "rho": rho,
    }
    assert round(100 * fractional_savings_uncertainty(confidence=0.68, **common), 2) == fsu68
    assert round(100 * fractional_savings_uncertainty(confidence=0.90, **common), 2) == fsu90


def test_t_is_two_sided_on_n_minus_p_degrees_of_freedom() -> None:
    assert t_critical(0.90, 363) == pytest.approx(1.6490, abs=1e-4)
    assert t_critical(0.95, 10) == pytest.approx(2.2281, abs=1e-4)  # textbook table value
    with pytest.raises(ValueError):
        t_critical(1.0, 10)


def test_effective_n_ignores_negative_autocorrelation() -> None:
    assert effective_n(365, 0.5) == pytest.approx(365 / 3)
    assert effective_n(100, -0.4) == 100  # no credit for anti-correlation: conservative


def test_absolute_uncertainty_is_fsu_times_savings() -> None:
    kw: dict[str, Any] = {"n": 100, "m": 50, "p": 3, "cv_rmse": 0.08, "rho": 0.3, "confidence": 0.9}
    adjusted, savings = 10_000.0, 900.0
    fsu = fractional_savings_uncertainty(savings_fraction=savings / adjusted, **kw)
    u = savings_uncertainty_kwh(adjusted_baseline_kwh=adjusted, **kw)
    assert u == pytest.approx(fsu * savings)


def test_minimum_detectable_savings_gives_fsu_of_one_half() -> None:
    kw: dict[str, Any] = {"n": 200, "m": 120, "p": 4, "cv_rmse": 0.12, "rho": 0.2, "confidence": 0.68}
    f_min = minimum_detectable_savings_fraction(**kw)
    assert fractional_savings_uncertainty(savings_fraction=f_min, **kw) == pytest.approx(0.5)
    assert fractional_savings_uncertainty(savings_fraction=2 * f_min, **kw) == pytest.approx(0.25)


def test_fit_statistics_follow_the_definitions() -> None:
    y = np.array([10.0, 12.0, 9.0, 11.0, 13.0, 10.0])
    fitted = np.array([10.5, 11.5, 9.5, 11.0, 12.0, 10.5])
    e = y - fitted
    n, p = 6, 2
    st = fit_statistics(y, fitted, p)
    assert st.cv_rmse == pytest.approx(math.sqrt((e @ e) / (n - p)) / y.mean())
    assert st.nmbe == pytest.approx(e.sum() / ((n - p) * y.mean()))
    r2 = 1 - (e @ e) / ((y - y.mean()) ** 2).sum()
    assert st.r2 == pytest.approx(r2)
    assert st.adj_r2 == pytest.approx(1 - (1 - r2) * (n - 1) / (n - p))


def test_lag1_autocorrelation_recovers_an_ar1_process() -> None:
    rng = np.random.default_rng(11)
    e = np.zeros(20_000)
    for i in range(1, e.size):
        e[i] = 0.6 * e[i - 1] + rng.normal()
    assert lag1_autocorrelation(e) == pytest.approx(0.6, abs=0.02)
    white = rng.normal(size=20_000)
    assert abs(lag1_autocorrelation(white)) < 0.03


def test_lag1_autocorrelation_skips_pairs_across_dropped_buckets() -> None:
    e = np.array([1.0, 1.0, -1.0, -1.0, 1.0, 1.0])
    adjacent = np.array([False, True, False, True, False, True])  # gaps between the pairs
    # only (1,1), (-1,-1), (1,1) are neighbours: perfectly correlated pairs, which the usual
    # estimator Σe_t·e_{t-1}/Σe² rates (n-1)/n, as it would a constant series of six values
    assert lag1_autocorrelation(e, adjacent) == pytest.approx(5 / 6)
    assert lag1_autocorrelation(np.ones(6)) == pytest.approx(5 / 6)
    assert lag1_autocorrelation(e) == pytest.approx(1 / 6)  # treating the gaps as neighbours


def test_alpha_is_ashrae_value() -> None:
    assert ASHRAE_ALPHA == 1.26

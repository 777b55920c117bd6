"""Gates and the verdict: thresholds per resolution, and a claim only when every gate passes."""

from __future__ import annotations

import numpy as np

from edge_agent.evaluation import Resolution
from edge_agent.evaluation._gates import evaluate_gates, verdict
from edge_agent.evaluation._savings import compute_savings
from edge_agent.evaluation._stats import FitStatistics


def _stats(cv: float, nmbe: float = 0.0) -> FitStatistics:
    return FitStatistics(
        n=365, p=3, mean=100.0, r2=0.9, adj_r2=0.9, cv_rmse=cv, nmbe=nmbe, rho=0.1, rmse=cv * 100
    )


def _gates(
    res: Resolution, cv: float, coverage: float = 1.0, in_range: float = 1.0, saved: float = 0.2
) -> dict[str, bool]:
    st = _stats(cv)
    sv = compute_savings(st, np.full(90, 100.0), np.full(90, 100.0 * (1 - saved)), (0.68, 0.9))
    return {g.key: g.passed for g in evaluate_gates(res, coverage, st, sv, in_range)}


def test_cv_rmse_limit_depends_on_resolution() -> None:
    assert _gates(Resolution.HOUR, 0.28)["cv_rmse"]  # hourly: ≤ 30 %
    assert not _gates(Resolution.DAY, 0.28)["cv_rmse"]  # daily: ≤ 25 %
    assert _gates(Resolution.DAY, 0.24)["cv_rmse"]
    assert not _gates(Resolution.WEEK, 0.22)["cv_rmse"]  # weekly: ≤ 20 %


def test_coverage_range_and_uncertainty_gates() -> None:
    assert not _gates(Resolution.DAY, 0.05, coverage=0.89)["data_sufficiency"]
    assert _gates(Resolution.DAY, 0.05, coverage=0.90)["data_sufficiency"]
    assert not _gates(Resolution.DAY, 0.05, in_range=0.70)["baseline_range"]
    assert not _gates(Resolution.DAY, 0.05, saved=0.002)["savings_uncertainty"]  # savings lost in the noise


def test_verdict_claims_only_when_every_gate_passes() -> None:
    st = _stats(0.05)
    saved = compute_savings(st, np.full(90, 100.0), np.full(90, 90.0), (0.68, 0.9))
    ok = evaluate_gates(Resolution.DAY, 1.0, st, saved, 1.0)
    v = verdict(ok, saved, 0.9)
    assert (
        v.claimed
        and v.headline.startswith("Savings of 900 kWh (10.0 %")
        and "at 90 % confidence" in v.headline
    )
    rose = compute_savings(st, np.full(90, 100.0), np.full(90, 110.0), (0.68, 0.9))
    v = verdict(evaluate_gates(Resolution.DAY, 1.0, st, rose, 1.0), rose, 0.9)
    assert v.claimed and v.headline.startswith("Energy use rose by 900 kWh")
    v = verdict(evaluate_gates(Resolution.DAY, 0.5, st, saved, 1.0), saved, 0.9)
    assert (
        not v.claimed and v.headline.startswith("No savings are claimed") and "Data sufficiency" in v.headline
    )


def test_zero_adjusted_baseline_fails_instead_of_crashing() -> None:
    st = _stats(0.05)
    sv = compute_savings(st, np.zeros(10), np.zeros(10), (0.68, 0.9))
    gates = {g.key: g.passed for g in evaluate_gates(Resolution.DAY, 1.0, st, sv, 1.0)}
    assert not gates["savings_uncertainty"]

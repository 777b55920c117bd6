"""Calibration in CI: a reduced grid of simulated plant histories with known counterfactual
savings, evaluated through the production path on both cores (~25 s on a quiet machine).

The full grid (benchmarks/bench_calibration.py, 768 cases) measures the goals of issue #10.
This one has 96 cases from 16 histories (4 seeds × zero and 30 % retrofit × flat and rising
production; daily and hourly; cnc1, imm1 and their sum). On this grid the evaluator gives 86 %
of 90 % intervals containing the truth, 74 % of 68 % intervals, a median error of +2.9 % and
1 false claim in 48 zero-saving cases (before the reporting-scatter floor and the unseen
weekend day type: 77 %, 69 %, +1.7 %, 2). The thresholds sit below those figures: they catch a
collapse (intervals half as wide give about 50 % coverage), not a few points of drift.

The same 16 histories are evaluated a second time with an idle-hours channel (hours switched
on without producing), which narrows the intervals: 93 % of 90 % intervals and 75 % of 68 %
intervals contain the truth, median error −1.6 %, no false claim (third calibration round).
"""

from __future__ import annotations

import pytest

from edge_agent.evaluation.calibration import calibration_grid, run_calibration, summarise

IDLE = ("idle", "setup", "fault")


@pytest.mark.slow
def test_reduced_calibration_grid_keeps_its_coverage() -> None:
    cases = calibration_grid(
        seeds=(500, 501, 502, 503),
        sizes=(0.0, 0.3),
        trends=(0.0, 0.004),
        baseline_days=(28,),
        idle_states=((), IDLE),
    )
    assert len(cases) == 192
    outcomes = run_calibration(cases, workers=2)
    for idle in ((), IDLE):
        s = summarise([o for o in outcomes if o.case.idle_states == idle], f"ci, idle hours {idle}")
        assert s.n == 96
        assert s.coverage90 >= 0.80, s
        assert s.coverage68 >= 0.50, s
        assert s.false_claims <= 0.125, s  # at most 6 of the 48 zero-saving cases
        assert abs(s.median_error) <= 0.10, s

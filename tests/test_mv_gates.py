"""Design gates on simulated plant histories: a claim is refused, with the reason, when the
baseline is too short, misses a day type the reporting period has, or the reporting period
is mostly missing. Histories are simulated in memory (no CSV) to keep the tests quick."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import numpy as np
import pytest

from edge_agent.evaluation import EvaluationOptions, EvaluationResult, LoadedData, Period, Role, evaluate
from edge_agent.evaluation.calibration import loaded_data
from edge_agent_simulators.config import PlantConfig, SiteParams
from edge_agent_simulators.history import SimulatedHistory, simulate_history

START = date(2024, 1, 1)  # a Monday
RETROFIT_DAY = 35


@pytest.fixture(scope="module")
def sim() -> SimulatedHistory:
    # every Saturday has a morning shift, so both periods have working weekend days
    config = PlantConfig(site=SiteParams(saturday_prob=1.0))
    return simulate_history(63, RETROFIT_DAY, 900, 11, config=config)


def _run(data: LoadedData, baseline: Period, **kw: object) -> EvaluationResult:
    retrofit = START + timedelta(days=RETROFIT_DAY)
    reporting = Period(retrofit, retrofit + timedelta(days=27))
    return evaluate(data, EvaluationOptions(baseline=baseline, reporting=reporting, **kw))  # type: ignore[arg-type]


def _gate(result: EvaluationResult, key: str) -> tuple[bool, str]:
    g = next(g for g in result.gates if g.key == key)
    return g.passed, g.value


def _full_baseline() -> Period:
    return Period(START, START + timedelta(days=RETROFIT_DAY - 1))


def test_full_baseline_passes_the_design_gates(sim: SimulatedHistory) -> None:
    r = _run(loaded_data(sim, ("cnc1",)), _full_baseline())
    for key in ("baseline_length", "day_types", "reporting_coverage", "significance"):
        assert _gate(r, key)[0], (key, r.gates)


def test_five_day_baseline_is_refused(sim: SimulatedHistory) -> None:
    last_week = START + timedelta(days=RETROFIT_DAY - 7)  # Monday … Friday before the retrofit
    r = _run(loaded_data(sim, ("cnc1",)), Period(last_week, last_week + timedelta(days=4)))
    passed, value = _gate(r, "baseline_length")
    assert not passed and value == "5 days"
    assert not r.verdict.claimed
    assert "Baseline length" in r.verdict.headline and "≥ 28 days" in r.verdict.headline


def test_minimum_baseline_is_configurable(sim: SimulatedHistory) -> None:
    r = _run(loaded_data(sim, ("cnc1",)), _full_baseline(), min_baseline_days=42)
    assert _gate(r, "baseline_length") == (False, "35 days")


def _without_weekend_work(data: LoadedData, until: date) -> LoadedData:
    """The baseline's weekends become idle: no production, no hours, standby energy only."""
    channels = dict(data.channels)
    ts = channels[Role.ENERGY].start_ns
    day = ts // 86_400_000_000_000
    weekend = ((day + 3) % 7 >= 5) & (ts < np.datetime64(until, "ns").astype(np.int64))
    for role, low in ((Role.PRODUCTION, 0.0), (Role.OPERATING_HOURS, 0.0), (Role.ENERGY, 0.0125)):
        ch = channels[role]
        channels[role] = replace(ch, values=np.where(weekend, low, ch.values))
    return replace(data, channels=channels)


def test_missing_day_type_is_refused(sim: SimulatedHistory) -> None:
    retrofit = START + timedelta(days=RETROFIT_DAY)
    data = _without_weekend_work(loaded_data(sim, ("cnc1",)), retrofit)
    r = _run(data, _full_baseline())
    passed, value = _gate(r, "day_types")
    assert not passed
    assert "working weekend day (4 in reporting, 0 in baseline)" in value
    assert not r.verdict.claimed
    # the report says how the four unseen working Saturdays were predicted
    assert any("4 reporting day bucket(s) are working weekend buckets" in n for n in r.notes), r.notes


def test_reporting_coverage_gate(sim: SimulatedHistory) -> None:
    data = loaded_data(sim, ("cnc1",))
    ch = data.channels[Role.ENERGY]
    retrofit_ns = np.datetime64(START + timedelta(days=RETROFIT_DAY), "ns").astype(np.int64)
    rep_days = (ch.start_ns - retrofit_ns) // 86_400_000_000_000
    gone = rep_days >= 15  # the last 13 of 28 reporting days are missing
    channels = dict(data.channels)
    channels[Role.ENERGY] = replace(ch, values=np.where(gone, np.nan, ch.values))
    r = _run(replace(data, channels=channels), _full_baseline())
    passed, value = _gate(r, "reporting_coverage")
    assert not passed and value.startswith("5")  # 50–59 % covered
    assert not r.verdict.claimed

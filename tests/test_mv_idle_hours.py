"""Idle hours (switched on without producing) as an optional driver: the term enters only
when it earns its place, `--model` and the plan accept it, and a bad column names itself.

A machine left idling overnight costs energy no production figure explains; the agent
measures time per state (``time_idle_s`` …) and the simulator's history writes ``A_idle_h``,
``A_setup_h`` and ``A_fault_h``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_agent.evaluation import (
    EXIT_INPUT,
    EvaluationError,
    Frame,
    ModelSpec,
    Role,
    cli_main,
    fit_model,
    select_model,
)
from edge_agent.evaluation._design_gates import significance_gate
from edge_agent.evaluation._model_text import parse_model_spec
from edge_agent.evaluation._plan import load_plan, plan_cli_args
from edge_agent.evaluation.calibration import CaseOutcome, calibration_grid, summaries
from edge_agent_simulators.history import HistoryResult, generate_history

P, IDLE = Role.PRODUCTION, Role.IDLE_HOURS
PERIODS = ["--baseline", "2024-01-01/2024-01-28", "--reporting", "2024-01-29/2024-02-25"]


def _plant_days(seed: int, idle_kw: float) -> Frame:
    """56 days of a two-shift plant: weekdays work, weekends do not; on 10 % of working days
    the machine is left idling for 8 hours overnight."""
    rng = np.random.default_rng(seed)
    n = 56
    weekday = np.arange(n) % 7
    on = weekday < 5
    prod = np.where(on, rng.uniform(800, 1200, n), 0.0)
    left = on & (rng.random(n) < 0.10)
    idle_h = np.where(on, rng.uniform(4.0, 6.0, n), 0.0) + 8.0 * left
    e = np.where(on, 40.0, 2.0) + 0.3 * prod + idle_kw * idle_h + rng.normal(0, 3.0, n)
    return Frame.from_arrays(e, production=prod, idle_hours=idle_h, weekday=weekday)


def test_idle_hours_enter_when_they_explain_energy() -> None:
    frame = _plant_days(1, idle_kw=4.5)
    sel = select_model(frame)
    assert IDLE in sel.chosen.spec.dense, sel.reason
    slope = next(c for c in sel.model.slopes if c.name == "idle hours slope")
    assert abs(slope.value - 4.5) <= 3 * slope.se and slope.unit == "kWh/h"


def test_idle_hours_without_an_effect_are_screened_out_and_fail_the_gate() -> None:
    frame = _plant_days(2, idle_kw=0.0)
    sel = select_model(frame)
    assert IDLE not in sel.chosen.spec.dense, sel.reason
    forced = fit_model(ModelSpec((P, IDLE), on_off=P), frame)
    gate = significance_gate(forced, 5)
    assert not gate.passed and "idle hours slope" in gate.value


def test_idle_hours_cannot_mark_working_days() -> None:
    """A machine left idling on Friday night idles into a Saturday that is not a working day."""
    with pytest.raises(ValueError, match="operating constant"):
        ModelSpec((IDLE,), on_off=IDLE)
    assert parse_model_spec("production+idle-hours+on") == ModelSpec((P, IDLE), on_off=P)
    with pytest.raises(EvaluationError, match="need a production or hours term"):
        parse_model_spec("idle-hours+on")


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> HistoryResult:
    return generate_history(56, 28, 900, 7, tmp_path_factory.mktemp("history"), progress=False)


def test_cli_idle_hours_flag_and_forced_model(history: HistoryResult, tmp_path: Path) -> None:
    args = ["--csv", str(history.csv_path), "--asset", "imm1", *PERIODS, "--out", str(tmp_path)]
    idle = "imm1_idle_h+imm1_setup_h+imm1_fault_h"
    code = cli_main([*args, "--idle-hours", idle, "--model", "production+idle-hours+on"])
    assert code in (0, 3)
    doc = json.loads((tmp_path / "evaluation.json").read_text(encoding="utf-8"))
    assert doc["model"]["name"] == "production + idle hours + production > 0"
    assert "idle hours" in doc["model_equation"]
    header = (tmp_path / "evaluation_series.csv").read_text(encoding="utf-8").splitlines()[0]
    assert "idle_hours" in header


def test_cli_idle_hours_bad_column_names_it(
    history: HistoryResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--csv", str(history.csv_path), "--asset", "imm1", *PERIODS, "--out", str(tmp_path)]
    assert cli_main([*args, "--idle-hours", "imm1_idle_hours"]) == EXIT_INPUT
    assert "imm1_idle_hours" in capsys.readouterr().err


def test_plan_carries_idle_hours(history: HistoryResult) -> None:
    plan_path = history.csv_path.parent / "idle-plan.yaml"
    plan_path.write_text(
        "project: {name: P, site: S, measure: M, boundary: IPMVP Option B, evaluator: E}\n"
        "data: {csv: history.csv, asset: imm1, idle_hours: imm1_idle_h}\n"
        "periods: {baseline: 2024-01-01/2024-01-28, reporting: 2024-01-29/2024-02-25}\n",
        encoding="utf-8",
    )
    args = plan_cli_args(load_plan(plan_path), plan_path)
    assert args[args.index("--idle-hours") + 1] == "imm1_idle_h"


def test_calibration_grid_pairs_the_channel_and_summaries_separate_it() -> None:
    """The same histories with and without the channel; the table reports each variant."""
    idle = ("idle", "setup", "fault")
    cases = calibration_grid(
        (1,), sizes=(0.0, 0.3), trends=(0.0,), baseline_days=(28,), idle_states=((), idle)
    )
    assert len(cases) == 2 * 2 * 2 * 3  # sizes × resolutions × asset sets × variants
    assert len({c.history for c in cases}) == 2  # one history per size, shared by the variants
    outcomes = [
        CaseOutcome(c, truth_kwh=100.0 * c.history.retrofit_size, savings_kwh=30.0 if c.idle_states else 40.0,
                    u68_kwh=5.0, u90_kwh=8.0, claimed=False, model="m")
        for c in cases
    ]  # fmt: skip
    rows = {r.label: r for r in summaries(outcomes)}
    assert rows["idle hours idle+setup+fault, all"].mean_error == pytest.approx(0.0)
    assert rows["no idle hours, daily"].mean_error == pytest.approx(1 / 3)
    assert rows["no idle hours, all"].n == rows["idle hours idle+setup+fault, hourly"].n * 2 == 12

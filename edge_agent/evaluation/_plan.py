"""The M&V plan: a small YAML file that fixes who, what, which data and which model before
anyone sees the result, so that the report can be signed against it.

It is validated like the agent's config (pydantic, every problem with its line) and turned
into the same arguments the CLI takes, so a plan and a command line cannot drift apart.

Example::

    project: {name: Idle power retrofit, id: P-017, site: Plant 2, measure: CNC idle standby,
              boundary: IPMVP Option B, evaluator: A. Auditor}
    data:
      csv: history.csv              # relative to the plan file
      asset: cnc1+imm1
      energy_unit: kWh              # kWh, MWh, therm, or m3 with gas_kwh_per_m3
      temperature_unit: C
      weather_source: simulator outdoor temperature
    periods: {baseline: 2024-01-01/2024-01-28, reporting: 2024-01-29/2024-02-25}
    model: production+on            # optional: forces the baseline model
    adjustments:
      excluded:
        - {period: 2024-02-10/2024-02-11, reason: metering outage}
      static:
        - {amount_kwh: -40, justification: added conveyor inside the boundary}
"""

from __future__ import annotations

__all__ = ["ExcludedPeriod", "MvPlan", "PlanIdentity", "StaticAdjustment", "load_plan", "plan_cli_args"]

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edge_agent.config.loader import load_yaml_model
from edge_agent.errors import ConfigError
from edge_agent.evaluation._errors import EvaluationError
from edge_agent.evaluation._model_text import parse_model_spec
from edge_agent.evaluation._timebase import Period, parse_period

Text = Annotated[str, Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PlanIdentity(_Strict):
    """Who and what the evaluation is for: the report's identity block."""

    name: Text
    id: str = ""
    site: Text
    measure: Text
    boundary: Text  # e.g. "IPMVP Option B (cnc1 + imm1)"
    evaluator: Text
    organisation: str = ""


class PlanData(_Strict):
    """Where the data are and what unit they are in."""

    csv: Text
    asset: str | None = None
    energy: str | None = None
    production: str | None = None
    operating_hours: str | None = None
    idle_hours: str | None = None  # on without producing; only if the measure leaves that time alone
    temperature: str | None = None
    energy_unit: Literal["kWh", "MWh", "therm", "m3"] = "kWh"
    gas_kwh_per_m3: float | None = Field(default=None, gt=0)
    temperature_unit: Literal["C", "F"] = "C"
    weather_source: str = ""
    timezone: str | None = None

    @model_validator(mode="after")
    def _gas_needs_factor(self) -> PlanData:
        if self.energy_unit == "m3" and self.gas_kwh_per_m3 is None:
            raise ValueError("energy_unit m3 needs gas_kwh_per_m3 (the gas's calorific value, e.g. 10.55)")
        if self.asset is None and self.energy is None:
            raise ValueError("give either asset (simulator layout) or energy (the column to model)")
        return self


class PlanPeriods(_Strict):
    baseline: Text
    reporting: Text

    @field_validator("baseline", "reporting")
    @classmethod
    def _is_period(cls, v: str) -> str:
        _parse(v)
        return v


class ExcludedPeriod(_Strict):
    """Days left out of both fits and sums (a non-routine event), with the reason."""

    period: Text
    reason: Text

    @field_validator("period")
    @classmethod
    def _is_period(cls, v: str) -> str:
        _parse(v)
        return v

    @property
    def dates(self) -> Period:
        return _parse(self.period)


class StaticAdjustment(_Strict):
    """A change of static factors inside the boundary: kWh added to the adjusted baseline."""

    amount_kwh: float
    justification: Text


class PlanAdjustments(_Strict):
    excluded: list[ExcludedPeriod] = []
    static: list[StaticAdjustment] = []


class MvPlan(_Strict):
    """A whole M&V plan."""

    project: PlanIdentity
    data: PlanData
    periods: PlanPeriods
    model: str | None = None
    resolution: Literal["hour", "day", "week"] = "day"
    confidence: float = Field(default=0.90, ge=0.5, lt=1.0)
    min_baseline_days: int = Field(default=28, ge=1)
    co2e_kg_per_kwh: float | None = Field(default=None, ge=0)
    adjustments: PlanAdjustments = PlanAdjustments()

    @field_validator("model")
    @classmethod
    def _is_model(cls, v: str | None) -> str | None:
        if v is not None:
            parse_model_spec(v, "model")
        return v


def _parse(text: str) -> Period:
    try:
        return parse_period(text, "period")
    except EvaluationError as exc:
        raise ValueError(str(exc).replace("--period ", "")) from None


def load_plan(path: Path) -> MvPlan:
    """Read and validate a plan; every problem is reported with its line."""
    try:
        return load_yaml_model(path, MvPlan, what="an M&V plan with project, data and periods")
    except ConfigError as exc:
        listed = "\n".join(f"  {p}" for p in exc.problems)
        raise EvaluationError(
            f"{path}: {len(exc.problems)} problem(s) in the M&V plan:\n{listed}\nFix them and run again."
        ) from None


def plan_cli_args(plan: MvPlan, plan_path: Path) -> list[str]:
    """The ``edge-agent evaluate`` arguments the plan stands for (paths relative to the plan)."""
    d = plan.data
    csv = Path(d.csv) if Path(d.csv).is_absolute() else plan_path.parent / d.csv
    args: list[str] = [
        "--csv",
        str(csv),
        "--baseline",
        plan.periods.baseline,
        "--reporting",
        plan.periods.reporting,
    ]
    optional: dict[str, Any] = {
        "--asset": d.asset,
        "--energy": d.energy,
        "--production": d.production,
        "--operating-hours": d.operating_hours,
        "--idle-hours": d.idle_hours,
        "--temperature": d.temperature,
        "--timezone": d.timezone,
        "--model": plan.model,
        "--gas-calorific-value": d.gas_kwh_per_m3,
    }
    for opt, value in optional.items():
        if value is not None:
            args += [opt, str(value)]
    args += [
        "--energy-unit",
        d.energy_unit,
        "--temperature-unit",
        d.temperature_unit,
        "--resolution",
        plan.resolution,
        "--confidence",
        str(plan.confidence),
        "--min-baseline-days",
        str(plan.min_baseline_days),
        "--title",
        plan.project.name,
    ]
    return args

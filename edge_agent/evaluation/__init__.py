"""Before/after evaluation (M&V): baseline models, savings with uncertainty, an HTML report.

IPMVP Option B (machine boundary) or C (whole site) with an ISO 50006 energy baseline and
ASHRAE Guideline 14 savings uncertainty. Typical use is the CLI (``edge-agent evaluate``,
see README.md in this folder); in Python::

    data = load_csv(CsvSpec(file=Path("history.csv"), refs={Role.ENERGY: parse_ref("main_kwh", "--energy")}))
    result = evaluate(data, EvaluationOptions(baseline=parse_period("2024-01-01/2024-01-28", "baseline"),
                                              reporting=parse_period("2024-01-29/2024-02-25", "reporting")))
    write_report(result, Path("out"))
"""

from edge_agent.evaluation._changepoint import ChangePointBank
from edge_agent.evaluation._channels import INDICATOR_ROLES, MODEL_ROLES, Channel, LoadedData, Role
from edge_agent.evaluation._cli import EXIT_CLAIMED, EXIT_INPUT, EXIT_NOT_CLAIMED, cli_main
from edge_agent.evaluation._csv_source import CsvSpec, csv_header, load_csv
from edge_agent.evaluation._degree_days import DegreeDayBasis
from edge_agent.evaluation._errors import EvaluationError
from edge_agent.evaluation._evaluate import EvaluationOptions, EvaluationResult, evaluate
from edge_agent.evaluation._export import result_to_dict
from edge_agent.evaluation._frame import Frame
from edge_agent.evaluation._gates import COVERAGE_MIN, CV_RMSE_LIMITS, FSU_LIMIT, NMBE_LIMIT, Gate, Verdict
from edge_agent.evaluation._indicators import Indicator, RawComparison
from edge_agent.evaluation._influx_source import InfluxSpec, influx_field_keys, load_influx
from edge_agent.evaluation._model import Coefficient, FittedModel, Unfittable, fit_model
from edge_agent.evaluation._model_text import parse_model_spec
from edge_agent.evaluation._plan import MvPlan, load_plan
from edge_agent.evaluation._provenance import InputFile, Provenance, model_equation
from edge_agent.evaluation._refs import Ref, parse_ref
from edge_agent.evaluation._report import ReportFiles, render_html, write_report
from edge_agent.evaluation._resample import PeriodData, resample_period
from edge_agent.evaluation._savings import Savings, Uncertainty
from edge_agent.evaluation._selection import (
    Candidate,
    Selection,
    SelectionMethod,
    candidate_specs,
    select_model,
)
from edge_agent.evaluation._spec import ModelSpec, Shape
from edge_agent.evaluation._stats import (
    ASHRAE_ALPHA,
    FitStatistics,
    effective_n,
    fit_statistics,
    fractional_savings_uncertainty,
    lag1_autocorrelation,
    minimum_detectable_savings_fraction,
    savings_uncertainty_kwh,
    t_critical,
)
from edge_agent.evaluation._synthetic import SyntheticSite, synthetic_site
from edge_agent.evaluation._timebase import Period, Resolution, parse_period, parse_timezone

__all__ = [
    "ASHRAE_ALPHA",
    "COVERAGE_MIN",
    "CV_RMSE_LIMITS",
    "EXIT_CLAIMED",
    "EXIT_INPUT",
    "EXIT_NOT_CLAIMED",
    "FSU_LIMIT",
    "INDICATOR_ROLES",
    "MODEL_ROLES",
    "NMBE_LIMIT",
    "Candidate",
    "ChangePointBank",
    "Channel",
    "Coefficient",
    "CsvSpec",
    "DegreeDayBasis",
    "EvaluationError",
    "EvaluationOptions",
    "EvaluationResult",
    "FitStatistics",
    "FittedModel",
    "Frame",
    "Gate",
    "Indicator",
    "InfluxSpec",
    "InputFile",
    "LoadedData",
    "ModelSpec",
    "MvPlan",
    "Period",
    "PeriodData",
    "Provenance",
    "RawComparison",
    "Ref",
    "ReportFiles",
    "Resolution",
    "Role",
    "Savings",
    "Selection",
    "SelectionMethod",
    "Shape",
    "SyntheticSite",
    "Uncertainty",
    "Unfittable",
    "Verdict",
    "candidate_specs",
    "cli_main",
    "csv_header",
    "effective_n",
    "evaluate",
    "fit_model",
    "fit_statistics",
    "fractional_savings_uncertainty",
    "influx_field_keys",
    "lag1_autocorrelation",
    "load_csv",
    "load_influx",
    "load_plan",
    "minimum_detectable_savings_fraction",
    "model_equation",
    "parse_model_spec",
    "parse_period",
    "parse_ref",
    "parse_timezone",
    "render_html",
    "resample_period",
    "result_to_dict",
    "savings_uncertainty_kwh",
    "select_model",
    "synthetic_site",
    "t_critical",
    "write_report",
]

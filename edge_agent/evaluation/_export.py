"""Machine-readable outputs: every figure as JSON, and the modelled series as CSV."""

from __future__ import annotations

__all__ = ["result_to_dict", "write_json", "write_series_csv"]

import csv
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.evaluation._channels import MODEL_ROLES, Role
from edge_agent.evaluation._evaluate import EvaluationResult
from edge_agent.evaluation._provenance import model_equation, provenance_to_dict
from edge_agent.evaluation._resample import PeriodData
from edge_agent.evaluation._stats import effective_n

SCHEMA_VERSION = 1


def _clean(x: Any) -> Any:
    """JSON has no NaN/inf: map them to null; numpy scalars to Python numbers."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _iso(ns: int, result: EvaluationResult) -> str:
    return datetime.fromtimestamp(ns / 1e9, result.timezone).isoformat()


def _period(pd: PeriodData) -> dict[str, Any]:
    return {
        "start": pd.period.start.isoformat(),
        "end": pd.period.end.isoformat(),
        "days": pd.period.days,
        "buckets": pd.n_buckets,
        "buckets_used": pd.n_kept,
        "buckets_dropped_by_channel": {r.value: n for r, n in pd.drop_counts.items()},
        "data_coverage": pd.data_coverage,
        "raw_coverage": pd.raw_coverage,
        "sources": {r.value: ch.source for r, ch in pd.channels.items()},
        "totals_raw": {r.value: ch.raw_total for r, ch in pd.channels.items() if r.extensive},
    }


def result_to_dict(result: EvaluationResult) -> dict[str, Any]:
    """Every number in the report, with units in the key names or alongside."""
    o, st, sv, m = result.options, result.stats, result.savings, result.model
    raw = result.raw
    d: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "title": o.title,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": result.source,
        "options": {
            "baseline": str(o.baseline),
            "reporting": str(o.reporting),
            "resolution": o.resolution.value,
            "timezone": str(result.timezone),
            "coverage_threshold": o.coverage_threshold,
            "selection": o.selection.value,
            "folds": o.folds,
            "confidence": o.confidence,
        },
        "provenance": provenance_to_dict(result.provenance),
        "model_equation": model_equation(m, result.provenance.temperature_unit),
        "adjustments": {
            "excluded": [{"period": str(p), "reason": why} for p, why in o.excluded],
            "static": [{"amount_kwh": a, "justification": why} for a, why in o.static_adjustments],
        },
        "verdict": {
            "savings_claimed": result.verdict.claimed,
            "confidence": result.verdict.confidence,
            "headline": result.verdict.headline,
        },
        "gates": [
            {"key": g.key, "title": g.title, "passed": g.passed, "value": g.value, "threshold": g.threshold}
            for g in result.gates
        ],
        "data": {"baseline": _period(result.baseline), "reporting": _period(result.reporting)},
        "model": {
            "name": m.spec.name,
            "terms": {
                "linear": [r.value for r in m.spec.dense],
                "on_off": None if m.spec.on_off is None else m.spec.on_off.value,
                "weekend_on": m.spec.weekend_on,
                "temperature_shape": m.spec.shape.value,
                "time_of_week": m.spec.time_of_week,
            },
            "selection_method": result.selection.method.value,
            "why_chosen": result.selection.reason,
            "coefficients": [
                {"name": c.name, "value": c.value, "se": c.se, "t": c.t, "unit": c.unit}
                for c in m.coefficients
            ],
        },
        "fit": {
            "n": st.n,
            "p": st.p,
            "mean_kwh": st.mean,
            "r2": st.r2,
            "adj_r2": st.adj_r2,
            "cv_rmse": st.cv_rmse,
            "nmbe": st.nmbe,
            "rho_lag1": st.rho,
            "n_effective": effective_n(st.n, st.rho),
            "rmse_kwh": st.rmse,
        },
        "candidates": [
            {
                "name": c.spec.name,
                "valid": c.valid,
                "rejected_because": c.rejected or None,
                "p": None if c.stats is None else c.stats.p,
                "r2": None if c.stats is None else c.stats.r2,
                "adj_r2": None if c.stats is None else c.stats.adj_r2,
                "cv_rmse": None if c.stats is None else c.stats.cv_rmse,
                "cv_rmse_out_of_sample": c.cv_rmse_out_of_sample,
                "chosen": c is result.selection.chosen,
            }
            for c in result.selection.candidates
        ],
        "savings": {
            "reporting_buckets_used": sv.m,
            "adjusted_baseline_kwh": sv.adjusted_baseline_kwh,
            "measured_kwh": sv.measured_kwh,
            "savings_kwh": sv.savings_kwh,
            "savings_fraction": sv.savings_fraction,
            "uncertainty": [
                {
                    "confidence": u.confidence,
                    "fsu": u.fsu,
                    "plus_minus_kwh": u.kwh,
                    "min_detectable_savings_fraction": u.min_detectable_fraction,
                }
                for u in sv.uncertainty
            ],
        },
        "raw_comparison": {
            "baseline_kwh": raw.baseline_kwh,
            "reporting_kwh": raw.reporting_kwh,
            "baseline_days": raw.baseline_days,
            "reporting_days": raw.reporting_days,
            "baseline_kwh_per_day": raw.baseline_kwh_per_day,
            "reporting_kwh_per_day": raw.reporting_kwh_per_day,
            "naive_savings_kwh": raw.naive_savings_kwh,
            "naive_savings_fraction": raw.naive_savings_fraction,
            "baseline_production": raw.baseline_production,
            "reporting_production": raw.reporting_production,
            "note": "raw totals ignore changes in volume, mix and weather; they are not a savings result",
        },
        "indicators": [
            {
                "name": i.name,
                "unit": i.unit,
                "baseline": i.baseline,
                "reporting": i.reporting,
                "change": i.change,
            }
            for i in result.indicators
        ],
        "indicators_note": "production-normalised indicators, not savings",
        "notes": list(result.notes),
    }
    return dict(_clean(d))


def write_json(result: EvaluationResult, path: Path) -> None:
    path.write_text(json.dumps(result_to_dict(result), indent=2, allow_nan=False) + "\n", encoding="utf-8")


def write_series_csv(result: EvaluationResult, path: Path) -> None:
    """One row per bucket of both periods, dropped buckets included (flagged, no model value)."""
    variables = [r for r in MODEL_ROLES if r in result.baseline.channels]
    header = [
        "bucket_start",
        "bucket_end",
        "period",
        "used",
        "energy_coverage",
        "measured_kwh",
        "modelled_kwh",
        "savings_kwh",
        "cumulative_savings_kwh",
        *(f"cumulative_uncertainty_{round(100 * c)}_kwh" for c in result.confidences),
        *(f"{r.value}" for r in variables),
    ]
    rows: list[list[Any]] = []
    cumulative = result.savings.cumulative  # a property that sums: once, not once per row
    for pd in (result.baseline, result.reporting):
        kept_pos = np.cumsum(pd.kept) - 1
        modelled = result.model.fitted if pd is result.baseline else result.savings.adjusted
        stamps = [_iso(int(e), result) for e in pd.edges]  # each edge ends one bucket and starts the next
        for b in range(pd.n_buckets):
            used = bool(pd.kept[b])
            k = int(kept_pos[b])
            measured = float(pd.channels[Role.ENERGY].values[b])
            row: list[Any] = [
                stamps[b],
                stamps[b + 1],
                pd.name,
                int(used),
                f"{pd.channels[Role.ENERGY].coverage[b]:.4f}",
                "" if not math.isfinite(measured) else f"{measured:.6g}",
                f"{modelled[k]:.6g}" if used else "",
            ]
            if pd is result.reporting and used:
                row += [f"{modelled[k] - measured:.6g}", f"{cumulative[k]:.6g}"]
                row += [f"{result.savings.cumulative_band[c][k]:.6g}" for c in result.confidences]
            else:
                row += [""] * (2 + len(result.confidences))
            for r in variables:
                v = float(pd.channels[r].values[b])
                row.append("" if not math.isfinite(v) else f"{v:.6g}")
            rows.append(row)
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)

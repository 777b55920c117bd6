"""The self-contained HTML report (inline CSS, plots embedded as base64 PNG) and its siblings.

One file a funder can open anywhere: the verdict first, then the numbers behind it, the
figures, the model and why it was chosen, the data coverage and the method.
"""

from __future__ import annotations

__all__ = ["ReportFiles", "render_html", "write_report"]

import base64
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path

from edge_agent.evaluation._channels import MODEL_ROLES
from edge_agent.evaluation._errors import EvaluationError
from edge_agent.evaluation._evaluate import EvaluationResult
from edge_agent.evaluation._export import write_json, write_series_csv
from edge_agent.evaluation._gates import (
    COVERAGE_MIN,
    CV_RMSE_LIMITS,
    FSU_CONFIDENCE,
    FSU_LIMIT,
    NMBE_LIMIT,
    RANGE_MARGIN,
    RANGE_MIN,
)
from edge_agent.evaluation._plots import (
    cumulative_savings_png,
    measured_vs_modelled_png,
    residuals_png,
    variable_png,
)
from edge_agent.evaluation._provenance import model_equation, provenance_html, signoff_html
from edge_agent.evaluation._stats import ASHRAE_ALPHA, effective_n

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ccc}
.meta{color:#666;font-size:.9em}
.verdict{padding:.8em 1em;border-radius:6px;font-weight:600;margin:1em 0}
.verdict.ok{background:#e8f5e9;border:1px solid #66bb6a}
.verdict.fail{background:#ffebee;border:1px solid #e57373}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}th{background:#f5f5f5}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#2e7d32;font-weight:600}.fail{color:#c62828;font-weight:600}
.chosen{background:#fffde7}figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#555;font-size:.9em}.note{color:#555;font-size:.9em}code{font-size:.95em}
td.hash code{font-size:.75em;word-break:break-all}td.sign{min-width:12em;height:3em}
.equation{font-family:ui-monospace,monospace;background:#f7f7f7;padding:.5em;overflow-wrap:anywhere}
@media print{body{max-width:none;margin:0;font-size:10pt}h2{break-after:avoid}
table,figure,.verdict,#signoff{break-inside:avoid}figure img{max-height:9cm}a{color:inherit}}
@page{size:A4;margin:15mm}
"""


@dataclass(frozen=True, slots=True)
class ReportFiles:
    """Paths of everything ``write_report`` produced."""

    html: Path
    json: Path
    csv: Path


def _num(x: float | None, digits: int = 0, unit: str = "") -> str:
    if x is None or not math.isfinite(x):
        return "–"
    s = f"{x:,.{digits}f}"
    return f"{s} {unit}".rstrip()


def _pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{100 * x:.{digits}f} %"


def _row(*cells: str, header: bool = False, cls: str = "") -> str:
    tag = "th" if header else "td"
    attr = f' class="{cls}"' if cls else ""
    return f"<tr{attr}>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>"


def _table(table_id: str, head: list[str], rows: list[str]) -> str:
    return f'<table id="{table_id}">' + _row(*map(escape, head), header=True) + "".join(rows) + "</table>"


def _img(png: bytes, alt: str, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{escape(alt)}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def _summary(r: EvaluationResult) -> str:
    sv, b, p = r.savings, r.baseline, r.reporting
    res = r.options.resolution.value
    rows = [
        _row(
            "Baseline period",
            escape(
                f"{b.period.start} – {b.period.end} ({b.period.days} days; "
                f"{b.n_kept} of {b.n_buckets} {res} buckets usable)"
            ),
        ),
        _row(
            "Reporting period",
            escape(
                f"{p.period.start} – {p.period.end} ({p.period.days} days; "
                f"{p.n_kept} of {p.n_buckets} {res} buckets usable)"
            ),
        ),
        _row("Baseline model", escape(f"{r.model.spec.name} (selected by {r.selection.method.label})")),
        _row("Adjusted baseline energy, reporting period", _num(sv.adjusted_baseline_kwh, 0, "kWh")),
        _row("Measured energy, reporting period", _num(sv.measured_kwh, 0, "kWh")),
        _row("Avoided energy (savings)", f"{_num(sv.savings_kwh, 0, 'kWh')} ({_pct(sv.savings_fraction)})"),
    ]
    for u in sv.uncertainty:
        rows.append(
            _row(
                f"Savings uncertainty at {100 * u.confidence:.0f} % confidence",
                f"± {_num(u.kwh, 0, 'kWh')} (FSU {_pct(u.fsu)}; minimum detectable savings "
                f"{_pct(u.min_detectable_fraction)})",
            )
        )
    rows += [
        _row("Savings claimed", "yes" if r.verdict.claimed else "<strong>no</strong> — a gate failed"),
        _row("Stated at confidence level", f"{100 * r.verdict.confidence:.0f} %"),
    ]
    return _table("summary", ["Item", "Value"], rows)


def _gates(r: EvaluationResult) -> str:
    rows = [
        _row(
            escape(g.title),
            escape(g.value),
            escape(g.threshold),
            '<span class="pass">PASS</span>' if g.passed else '<span class="fail">FAIL</span>',
        )
        for g in r.gates
    ]
    return _table("gates", ["Gate", "Value", "Required", "Verdict"], rows)


def _raw(r: EvaluationResult) -> str:
    raw, sv = r.raw, r.savings
    rows = [
        _row("Days", str(raw.baseline_days), str(raw.reporting_days), ""),
        _row(
            "Measured energy (all readings)",
            _num(raw.baseline_kwh, 0, "kWh"),
            _num(raw.reporting_kwh, 0, "kWh"),
            "",
        ),
        _row(
            "Energy per day",
            _num(raw.baseline_kwh_per_day, 1, "kWh"),
            _num(raw.reporting_kwh_per_day, 1, "kWh"),
            _pct(-raw.naive_savings_fraction),
        ),
    ]
    if raw.baseline_production is not None and raw.reporting_production is not None:
        ch = raw.reporting_production / raw.reporting_days / (raw.baseline_production / raw.baseline_days) - 1
        rows.append(
            _row(
                "Production per day",
                _num(raw.baseline_production / raw.baseline_days, 1),
                _num(raw.reporting_production / raw.reporting_days, 1),
                _pct(ch),
            )
        )
    rows.append(
        _row(
            '<strong>Naive "savings"</strong> (per-day difference × reporting days)',
            "",
            f"{_num(raw.naive_savings_kwh, 0, 'kWh')} ({_pct(raw.naive_savings_fraction)})",
            "",
        )
    )
    rows.append(
        _row(
            "<strong>Model-based savings</strong> (this evaluation)",
            "",
            f"{_num(sv.savings_kwh, 0, 'kWh')} ({_pct(sv.savings_fraction)})",
            "",
        )
    )
    return _table("raw", ["", "Baseline", "Reporting", "Change"], rows)


def _coefficients(r: EvaluationResult) -> str:
    m = r.model
    rows = []
    if m.spec.time_of_week:
        c = m.constants
        rows.append(
            _row(
                f"{c.shape[0]} time-of-week constants (hour of week)",
                f"{_num(float(c.min()), 2)} … {_num(float(c.max()), 2)}",
                "see JSON",
                "",
                "kWh",
            )
        )
        coefs = m.slopes + m.balance_points
    else:
        coefs = m.coefficients
    for k in coefs:
        rows.append(_row(escape(k.name), _num(k.value, 4), _num(k.se, 4), _num(k.t, 1), escape(k.unit)))
    return _table("coefficients", ["Parameter", "Estimate", "Std. error", "t", "Unit"], rows)


def _fit(r: EvaluationResult) -> str:
    s = r.stats
    rows = [
        _row("Points n / parameters p", f"{s.n} / {s.p}"),
        _row("R² / adjusted R²", f"{s.r2:.4f} / {s.adj_r2:.4f}"),
        _row("CV(RMSE)", _pct(s.cv_rmse, 2)),
        _row("NMBE", _pct(s.nmbe, 3)),
        _row(
            "Lag-1 autocorrelation of residuals ρ",
            f"{s.rho:.3f} (effective n′ = {effective_n(s.n, s.rho):.1f})",
        ),
        _row("Mean energy per bucket", _num(s.mean, 2, "kWh")),
    ]
    return _table("fit", ["Statistic", "Value"], rows)


def _candidates(r: EvaluationResult) -> str:
    rows = []
    for c in r.selection.candidates:
        st = c.stats
        rows.append(
            _row(
                escape(c.spec.name),
                "–" if st is None else str(st.p),
                "–" if st is None else f"{st.adj_r2:.4f}",
                "–" if st is None else _pct(st.cv_rmse, 2),
                _pct(c.cv_rmse_out_of_sample, 2),
                "chosen" if c is r.selection.chosen else ("valid" if c.valid else escape(c.rejected)),
                cls="chosen" if c is r.selection.chosen else "",
            )
        )
    head = ["Candidate", "p", "adj. R²", "CV(RMSE)", "CV(RMSE), cross-validated", "Verdict"]
    return _table("candidates", head, rows)


def _indicators(r: EvaluationResult) -> str:
    if not r.indicators:
        return '<p class="note">No production data given, so no production-normalised indicators.</p>'
    rows = [
        _row(escape(i.name), _num(i.baseline, 3), _num(i.reporting, 3), escape(i.unit), _pct(i.change))
        for i in r.indicators
    ]
    return _table("indicators", ["Indicator", "Baseline", "Reporting", "Unit", "Change"], rows)


def _coverage(r: EvaluationResult) -> str:
    rows = []
    for pd in (r.baseline, r.reporting):
        for role, ch in pd.channels.items():
            ok = int((ch.coverage >= pd.threshold).sum())
            rows.append(
                _row(
                    pd.name,
                    escape(role.label),
                    escape(ch.source),
                    _pct(float(ch.observed.sum()) / float(ch.expected.sum())),
                    f"{ok} / {pd.n_buckets}",
                )
            )
        rows.append(
            _row(
                pd.name,
                "<strong>usable buckets</strong>",
                "",
                _pct(pd.data_coverage),
                f"{pd.n_kept} / {pd.n_buckets}",
            )
        )
    head = [
        "Period",
        "Channel",
        "Source",
        "Readings present",
        f"Buckets ≥ {100 * r.options.coverage_threshold:.0f} %",
    ]
    return _table("coverage", head, rows)


def _method(r: EvaluationResult) -> str:
    limits = ", ".join(f"{res.adjective} {100 * v:.0f} %" for res, v in CV_RMSE_LIMITS.items())
    return f"""
<p>IPMVP Option B/C with an ISO 50006 energy baseline. A baseline model is fitted by least squares on the
baseline period's usable buckets and applied to the reporting period's relevant variables (the
<em>adjusted baseline</em>); avoided energy = Σ adjusted baseline − Σ measured. Data between the two periods
are ignored. Buckets whose readings cover less than {100 * r.options.coverage_threshold:.0f} % of the bucket
are dropped and counted; kept buckets with small gaps are scaled up to the full bucket.</p>
<p>Candidates combine a constant (or 168 hour-of-week constants for hourly data), linear terms in production
and operating hours, an extra constant while operating, and a temperature term (2P linear, 3P heating/cooling,
4P, 5P). Balance points are found by a grid search solving every candidate's normal equations in one batched
call. A candidate is rejected when a slope has |t| &lt; 2, a physically implausible sign, or its change point
sits at the edge of the data.</p>
<p>CV(RMSE) = √(Σe²/(n−p)) / ȳ, NMBE = Σe / ((n−p)·ȳ), with p counting every fitted parameter including
balance points. Savings uncertainty (ASHRAE Guideline 14): FSU = α·t·CV·√[(n/n′)(1+2/n′)/m] / F with
α = {ASHRAE_ALPHA}, n′ = n(1−ρ)/(1+ρ) (ρ &lt; 0 treated as 0), t two-sided with n−p degrees of freedom, m
reporting buckets and F the savings fraction. Where the exact least-squares variance of the summed
prediction, (n/n′)·(m·σ² + Var[Σŷ]), gives a wider interval (reporting conditions away from the baseline's
means), that wider interval is stated. The minimum detectable savings is the savings fraction whose
FSU would be {100 * FSU_LIMIT:.0f} %.</p>
<p>Gates: data sufficiency ≥ {100 * COVERAGE_MIN:.0f} % of the baseline period; CV(RMSE) ≤ {limits};
|NMBE| ≤ {100 * NMBE_LIMIT:.1f} %; FSU ≤ {100 * FSU_LIMIT:.0f} % at {100 * FSU_CONFIDENCE:.0f} % confidence;
at least {100 * RANGE_MIN:.0f} % of reporting buckets with every model variable inside the baseline range
widened by {100 * RANGE_MARGIN:.0f} % of its span (the uncertainty formula assumes similar conditions and
understates the error of an extrapolation); a baseline of at least {r.options.min_baseline_days} days;
every day type of the reporting period (working weekday, working weekend day, idle day) at least twice in the
baseline; the reporting period ≥ {100 * r.options.reporting_coverage_min:.0f} % covered; every model term
significant (|t| ≥ 2). Temperature terms enter a model with production or hours terms only when an F-test
against the same model without them, counting n′ effective points, gives p ≤ 0.01.
When a gate fails, no savings are claimed. The uncertainty covers the baseline model's scatter only; events
absent from the baseline period (non-routine adjustments) are not covered.</p>
"""


def _adjustments(r: EvaluationResult) -> str:
    o = r.options
    rows = [_row("excluded days", escape(str(p)), escape(why)) for p, why in o.excluded]
    rows += [_row("static change", _num(a, 1, "kWh"), escape(why)) for a, why in o.static_adjustments]
    if not rows:
        return '<p id="adjustments">None: no periods excluded and no static changes applied.</p>'
    return _table("adjustments", ["Kind", "Period or amount", "Reason / justification"], rows)


def render_html(r: EvaluationResult) -> str:
    """The complete report as one HTML string."""
    figs = [
        _img(
            measured_vs_modelled_png(r),
            "measured vs modelled energy",
            "Measured energy and the baseline model: "
            "the fit over the baseline period and the adjusted baseline over the reporting period.",
        ),
        _img(
            cumulative_savings_png(r),
            "cumulative savings",
            "Cumulative avoided energy over the reporting period with its uncertainty bands (ASHRAE 14).",
        ),
    ]
    for role in MODEL_ROLES:
        if role in r.baseline.frame.variables:
            figs.append(
                _img(
                    variable_png(r, role),
                    f"energy vs {role.label}",
                    f"Energy against {role.label}; where the variable is in the model, the other terms are "
                    "held at their baseline mean (component plus residual) and the fit is drawn.",
                )
            )
    figs.append(
        _img(
            residuals_png(r),
            "baseline residuals",
            "Residuals of the baseline fit over time and against the fitted values.",
        )
    )
    notes = "".join(f"<li>{escape(n)}</li>" for n in r.notes) or "<li>None.</li>"
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    cls = "ok" if r.verdict.claimed else "fail"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{escape(r.options.title)}</title><style>{_CSS}</style></head><body>
<h1>{escape(r.options.title)}</h1>
<p class="meta">Source: {escape(r.source)} · time zone {escape(str(r.timezone))} ·
{escape(r.options.resolution.adjective)} buckets · generated {generated} by edge-agent</p>
<div class="verdict {cls}" id="verdict">{escape(r.verdict.headline)}</div>
<h2>Project and provenance</h2>{provenance_html(r.provenance)}
<h2>Summary</h2>{_summary(r)}
<h2>Gates</h2>{_gates(r)}
<h2>Raw before/after comparison — for contrast, not a savings result</h2>
<p class="note">Raw totals move with production volume, product mix and weather. They are shown only to
contrast with the model-based figure.</p>{_raw(r)}
<h2>Figures</h2>{"".join(figs)}
<h2>Baseline model</h2><p>{escape(r.selection.reason)}</p>
<p class="equation" id="equation">{escape(model_equation(r.model, r.provenance.temperature_unit))}</p>
{_coefficients(r)}{_fit(r)}
<h2>Non-routine adjustments</h2>{_adjustments(r)}
<h2>Candidate models</h2>{_candidates(r)}
<h2>Production-normalised indicators — indicators, not savings</h2>
<p class="note">These ratios move with volume alone where part of the load is fixed; they describe the
operation, they do not measure savings.</p>{_indicators(r)}
<h2>Data coverage</h2>{_coverage(r)}
<h2>Notes</h2><ul id="notes">{notes}</ul>
<h2>Method</h2>{_method(r)}
<h2>Sign-off</h2>{signoff_html(r.provenance)}
</body></html>
"""


def write_report(result: EvaluationResult, out_dir: Path, *, stem: str = "evaluation") -> ReportFiles:
    """Write ``<stem>.html``, ``<stem>.json`` and ``<stem>_series.csv`` into ``out_dir``."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EvaluationError(f"--out {out_dir}: cannot create the directory ({exc.strerror})") from None
    files = ReportFiles(out_dir / f"{stem}.html", out_dir / f"{stem}.json", out_dir / f"{stem}_series.csv")
    files.html.write_text(render_html(result), encoding="utf-8")
    write_json(result, files.json)
    write_series_csv(result, files.csv)
    return files

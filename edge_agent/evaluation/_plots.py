"""Report figures as PNG bytes (matplotlib's Agg canvas, no pyplot global state)."""

from __future__ import annotations

__all__ = ["cumulative_savings_png", "measured_vs_modelled_png", "residuals_png", "variable_png"]

import io
from datetime import tzinfo

import numpy as np
from matplotlib import rcParams
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from edge_agent.evaluation._arrays import FloatArray, IntArray
from edge_agent.evaluation._channels import Role
from edge_agent.evaluation._evaluate import EvaluationResult
from edge_agent.evaluation._timebase import local_ns

_BASE, _REP, _MODEL, _BAND = "#1f77b4", "#d62728", "#555555", "#2ca02c"


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _times(ns: IntArray, tz: tzinfo) -> FloatArray:
    """Matplotlib date numbers of local wall-clock time, so axes read in the site's own clock."""
    epoch_ns = int(np.datetime64(str(rcParams["date.epoch"]), "ns").astype(np.int64))
    return np.asarray((local_ns(ns, tz) - epoch_ns) / 86_400e9, dtype=np.float64)


def _figure(height: float = 3.6, ncols: int = 1) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(9.5, height), layout="constrained")
    return fig, [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]


def measured_vs_modelled_png(r: EvaluationResult) -> bytes:
    fig, (ax,) = _figure(3.8)
    b, p = r.baseline.frame, r.reporting.frame
    tb, tp = _times(b.start_ns, r.timezone), _times(p.start_ns, r.timezone)
    marker = "." if len(b) > 200 else "o"
    ax.plot(tb, b.energy, marker, color=_BASE, ms=3, lw=0, label="measured, baseline")
    ax.plot(tb, r.model.fitted, "-", color=_MODEL, lw=1, label="model fit (baseline)")
    ax.plot(tp, p.energy, marker, color=_REP, ms=3, lw=0, label="measured, reporting")
    ax.plot(tp, r.savings.adjusted, "--", color=_MODEL, lw=1, label="adjusted baseline (reporting)")
    gap = _times(np.array([r.baseline.edges[-1], r.reporting.edges[0]]), r.timezone)
    if gap[1] > gap[0]:
        ax.axvspan(float(gap[0]), float(gap[1]), color="#dddddd", label="ignored (installation)")
    ax.set_ylabel(f"energy per {r.options.resolution.value} [kWh]")
    ax.set_title("Measured and modelled energy")
    ax.legend(fontsize=8, ncols=3, loc="upper left")
    ax.xaxis_date()
    fig.autofmt_xdate()
    return _png(fig)


def cumulative_savings_png(r: EvaluationResult) -> bytes:
    fig, (ax,) = _figure(3.6)
    t = _times(r.reporting.frame.end_ns, r.timezone)
    cum = r.savings.cumulative
    for c, alpha in sorted(((c, 0.18 if c > 0.8 else 0.35) for c in r.confidences), reverse=True):
        band = r.savings.cumulative_band[c]
        ax.fill_between(
            t, cum - band, cum + band, color=_BAND, alpha=alpha, lw=0, label=f"{100 * c:.0f} % band"
        )
    ax.plot(t, cum, "-", color="#1b5e20", lw=1.5, label="cumulative savings")
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_ylabel("kWh")
    claimed = "" if r.verdict.claimed else " (not claimed: a gate failed)"
    ax.set_title(f"Cumulative savings with uncertainty{claimed}")
    ax.legend(fontsize=8, loc="upper left")
    ax.xaxis_date()
    fig.autofmt_xdate()
    return _png(fig)


def _partial(r: EvaluationResult, role: Role) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Energy with every other term held at its baseline mean (component-plus-residual)."""
    m = r.model
    b, p = r.baseline.frame, r.reporting.frame
    cb = m.contributions(b).get(role, np.zeros(len(b)))
    cp = m.contributions(p).get(role, np.zeros(len(p)))
    others = float(np.mean(m.fitted - cb))
    return (
        b.energy - (m.fitted - cb) + others,
        cb + others,
        p.energy - (r.savings.adjusted - cp) + others,
        cp + others,
    )


def variable_png(r: EvaluationResult, role: Role) -> bytes:
    fig, (ax,) = _figure(3.6)
    b, p = r.baseline.frame, r.reporting.frame
    xb, xp = b.variables[role], p.variables[role]
    in_model = role in r.model.spec.roles
    if in_model:
        yb, fb, yp, _ = _partial(r, role)
        order = np.argsort(xb, kind="stable")
        xs, fs = xb[order], fb[order]
        if role is Role.TEMPERATURE and r.model.spec.shape.value != "2P":
            # degree-days come from sub-bucket temperatures: not a function of the mean, so dots
            ax.plot(xs, fs, ".", color=_MODEL, ms=4, label="baseline fit")
        else:
            on = xs > 0 if r.model.spec.on_off is role else np.ones(xs.shape, dtype=np.bool_)
            ax.plot(xs[on], fs[on], "-", color=_MODEL, lw=1.5, label="baseline fit")
            if not on.all():  # the on/off step: the idle level is a point at zero, not a line
                ax.plot(
                    xs[~on][:1], fs[~on][:1], "s", color=_MODEL, ms=6, label="baseline fit, not operating"
                )
        ylabel = "energy, other terms at baseline mean [kWh]"
    else:
        yb, yp, ylabel = b.energy, p.energy, "energy [kWh]"
    ax.plot(xb, yb, "o", color=_BASE, ms=3, alpha=0.7, label="baseline")
    ax.plot(xp, yp, "o", color=_REP, ms=3, alpha=0.7, label="reporting")
    per = r.options.resolution.value
    ax.set_xlabel(
        f"{role.label} per {per} [{role.unit}]" if role.extensive else f"{role.label}, mean [{role.unit}]"
    )
    ax.set_ylabel(ylabel)
    note = "" if in_model else " (not in the chosen model)"
    ax.set_title(f"Energy vs {role.label}{note}")
    ax.legend(fontsize=8, loc="upper left")  # "best" scans every point: seconds on a year of hours
    return _png(fig)


def residuals_png(r: EvaluationResult) -> bytes:
    fig, (ax1, ax2) = _figure(3.4, 2)
    b = r.baseline.frame
    e = r.model.residuals
    ax1.plot(_times(b.start_ns, r.timezone), e, ".-", color=_BASE, ms=3, lw=0.6)
    ax1.axhline(0.0, color="black", lw=0.8)
    ax1.set_title(f"Baseline residuals over time (lag-1 ρ = {r.stats.rho:.2f})")
    ax1.set_ylabel("kWh")
    ax1.xaxis_date()
    ax1.tick_params(axis="x", labelrotation=30)
    ax2.plot(r.model.fitted, e, "o", color=_BASE, ms=3, alpha=0.7)
    ax2.axhline(0.0, color="black", lw=0.8)
    ax2.set_title(f"Residuals vs fitted (CV(RMSE) {100 * r.stats.cv_rmse:.1f} %)")
    ax2.set_xlabel("fitted [kWh]")
    return _png(fig)

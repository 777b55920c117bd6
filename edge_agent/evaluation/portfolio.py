"""The programme portfolio: the savings of many projects together, with one uncertainty.

``edge-agent evaluate portfolio DIR`` reads every finished ``evaluation.json`` below DIR, or
evaluates every M&V plan (``*.yaml``) in DIR first (on all cores), and states:

- per project: savings, ± at the chosen confidence, whether savings were claimed, CO2e avoided;
- the total of all projects and the total of claimed projects only, each with its uncertainty.

Projects are independent measurements, so their absolute uncertainties at one confidence
level add in quadrature (IPMVP): U_total = √Σ U_i². A project's ± is taken at the chosen level
when its evaluation states it; otherwise its 90 % figure is rescaled by normal quantiles.
"""

from __future__ import annotations

__all__ = ["PortfolioProject", "PortfolioTotal", "aggregate", "load_projects", "portfolio_main"]

import argparse
import contextlib
import csv
import io
import json
import math
import os
from base64 import b64encode
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from html import escape
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.stats import norm

from edge_agent.evaluation._errors import EvaluationError


@dataclass(frozen=True, slots=True)
class PortfolioProject:
    name: str
    project_id: str
    source: str
    savings_kwh: float
    uncertainty_kwh: float  # ± at the portfolio's confidence
    claimed: bool
    co2e_kg_per_kwh: float | None
    co2e_kg: float | None


@dataclass(frozen=True, slots=True)
class PortfolioTotal:
    label: str
    n: int
    savings_kwh: float
    uncertainty_kwh: float
    co2e_kg: float
    co2e_uncertainty_kg: float


def _at(doc: dict[str, Any], confidence: float, where: str) -> float:
    levels = {round(u["confidence"], 6): u["plus_minus_kwh"] for u in doc["savings"]["uncertainty"]}
    if round(confidence, 6) in levels:
        return float(levels[round(confidence, 6)])
    if 0.9 not in levels:
        raise EvaluationError(f"{where}: no uncertainty at 90 % to rescale to {100 * confidence:g} %")
    return float(levels[0.9]) * float(norm.ppf(0.5 + confidence / 2) / norm.ppf(0.95))


def project_from_json(
    doc: dict[str, Any], where: str, confidence: float, co2e: float | None
) -> PortfolioProject:
    """One project from a finished evaluation's JSON."""
    try:
        prov = doc.get("provenance", {})
        ident = prov.get("identity", {})
        factor = prov.get("co2e_kg_per_kwh")
        factor = co2e if factor is None else float(factor)
        savings = float(doc["savings"]["savings_kwh"])
        return PortfolioProject(
            name=str(ident.get("name") or doc.get("title") or where),
            project_id=str(ident.get("id", "")),
            source=where,
            savings_kwh=savings,
            uncertainty_kwh=_at(doc, confidence, where),
            claimed=bool(doc["verdict"]["savings_claimed"]),
            co2e_kg_per_kwh=factor,
            co2e_kg=None if factor is None else savings * factor,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise EvaluationError(
            f"{where}: not an edge-agent evaluation.json (missing or bad {exc}); point the portfolio at "
            "folders written by 'edge-agent evaluate'"
        ) from None


def _total(label: str, projects: Sequence[PortfolioProject]) -> PortfolioTotal:
    co2 = [(p.co2e_kg or 0.0, p.uncertainty_kwh * (p.co2e_kg_per_kwh or 0.0)) for p in projects]
    return PortfolioTotal(
        label=label,
        n=len(projects),
        savings_kwh=math.fsum(p.savings_kwh for p in projects),
        uncertainty_kwh=math.sqrt(math.fsum(p.uncertainty_kwh**2 for p in projects)),
        co2e_kg=math.fsum(c for c, _ in co2),
        co2e_uncertainty_kg=math.sqrt(math.fsum(u * u for _, u in co2)),
    )


def aggregate(projects: Sequence[PortfolioProject]) -> tuple[PortfolioTotal, PortfolioTotal]:
    """(all projects, claimed projects only)."""
    return _total("all projects", projects), _total(
        "claimed projects only", [p for p in projects if p.claimed]
    )


def _evaluate_plan(job: tuple[str, str]) -> tuple[str, str, int]:
    from edge_agent.evaluation._cli import cli_main

    plan, out = job
    with contextlib.redirect_stdout(io.StringIO()):  # one summary per project would drown the total
        code = cli_main(["--plan", plan, "--out", out])
    return plan, out, code


def load_projects(
    folder: Path, out: Path, confidence: float, co2e: float | None, workers: int | None = None
) -> list[PortfolioProject]:
    """Finished evaluations below ``folder``, or plans in it evaluated first."""
    if not folder.is_dir():
        raise EvaluationError(
            f"portfolio {folder}: not a folder; pass a folder of plans or evaluation.json files"
        )
    docs = sorted(folder.rglob("evaluation.json"))
    if not docs:
        plans = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
        if not plans:
            raise EvaluationError(
                f"portfolio {folder}: no evaluation.json below it and no *.yaml plans in it"
            )
        jobs = [(str(p), str(out / "projects" / p.stem)) for p in plans]
        n = workers or min(os.cpu_count() or 1, len(jobs))
        with ProcessPoolExecutor(max_workers=n) as pool:
            results = list(pool.map(_evaluate_plan, jobs))
        bad = [plan for plan, _, code in results if code not in (0, 3)]
        if bad:
            raise EvaluationError(f"portfolio: {len(bad)} plan(s) could not be evaluated: {', '.join(bad)}")
        docs = [Path(o) / "evaluation.json" for _, o, _ in results]
    projects = []
    for d in docs:
        try:
            doc = json.loads(d.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise EvaluationError(f"{d}: cannot read it as JSON ({exc})") from None
        projects.append(project_from_json(doc, str(d), confidence, co2e))
    return projects


def _png(fig: Figure) -> str:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return b64encode(buf.getvalue()).decode("ascii")


def _plots(
    projects: Sequence[PortfolioProject], totals: Sequence[PortfolioTotal], confidence: float
) -> list[str]:
    h = max(3.0, min(0.22 * len(projects) + 1.0, 40.0))
    fig = Figure(figsize=(9.5, h), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    y = list(range(len(projects)))
    colors = ["#2e7d32" if p.claimed else "#9e9e9e" for p in projects]
    ax.barh(y, [p.savings_kwh for p in projects], color=colors)
    ax.errorbar([p.savings_kwh for p in projects], y, xerr=[p.uncertainty_kwh for p in projects],
                fmt="none", ecolor="#333", capsize=2)  # fmt: skip
    ax.set_yticks(y, [p.name[:40] for p in projects], fontsize=7 if len(projects) > 40 else 9)
    ax.invert_yaxis()
    ax.axvline(0, color="#000", lw=0.8)
    ax.set_xlabel(f"savings [kWh] ± {100 * confidence:g} % (green: claimed, grey: not claimed)")
    fig2 = Figure(figsize=(9.5, 3.0), layout="constrained")
    a1, a2 = fig2.add_subplot(1, 2, 1), fig2.add_subplot(1, 2, 2)
    labels = [t.label for t in totals]
    a1.bar(labels, [t.savings_kwh for t in totals], yerr=[t.uncertainty_kwh for t in totals], capsize=4,
           color=["#1f77b4", "#2e7d32"])  # fmt: skip
    a1.set_ylabel("total savings [kWh]")
    a2.bar(labels, [t.co2e_kg / 1000 for t in totals], yerr=[t.co2e_uncertainty_kg / 1000 for t in totals],
           capsize=4, color=["#1f77b4", "#2e7d32"])  # fmt: skip
    a2.set_ylabel("CO2e avoided [t]")
    return [_png(fig), _png(fig2)]


def _html(
    projects: Sequence[PortfolioProject], totals: Sequence[PortfolioTotal], confidence: float, title: str
) -> str:
    pct = f"{100 * confidence:g} %"

    def kg(x: float | None) -> str:
        return "—" if x is None else f"{x:,.0f}"

    rows = "".join(
        f"<tr><td>{escape(p.name)}</td><td>{escape(p.project_id)}</td><td class=num>{p.savings_kwh:,.0f}</td>"
        f"<td class=num>± {p.uncertainty_kwh:,.0f}</td><td class={'pass' if p.claimed else 'fail'}>"
        f"{'claimed' if p.claimed else 'not claimed'}</td><td class=num>{kg(p.co2e_kg)}</td></tr>"
        for p in projects
    )
    tot = "".join(
        f"<tr><th>{escape(t.label)}</th><td class=num>{t.n}</td><td class=num>{t.savings_kwh:,.0f}</td>"
        f"<td class=num>± {t.uncertainty_kwh:,.0f}</td>"
        f"<td class=num>{t.co2e_kg:,.0f} ± {t.co2e_uncertainty_kg:,.0f}</td></tr>"
        for t in totals
    )
    imgs = "".join(
        f'<figure><img alt="portfolio plot" src="data:image/png;base64,{b}"></figure>'
        for b in _plots(projects, totals, confidence)
    )
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}}
table{{border-collapse:collapse;font-size:.92em}}
th,td{{border:1px solid #ddd;padding:.3em .6em;text-align:left}}
th{{background:#f5f5f5}}td.num{{text-align:right}}.pass{{color:#2e7d32}}.fail{{color:#c62828}}
figure img{{max-width:100%}}@media print{{table,figure{{break-inside:avoid}}}}</style></head><body>
<h1>{escape(title)}</h1>
<h2>Totals at {pct} confidence</h2>
<p>Projects are independent, so their absolute uncertainties add in quadrature: U = √Σ U<sub>i</sub>².
Only the claimed total is a programme result; the total of all projects includes projects whose gates failed
and is shown for context.</p>
<table id="totals"><tr><th></th><th>projects</th><th>savings [kWh]</th><th>± [kWh]</th>
<th>CO2e avoided [kg]</th></tr>{tot}</table>
{imgs}
<h2>Projects</h2>
<table id="projects"><tr><th>Project</th><th>ID</th><th>savings [kWh]</th><th>± {pct} [kWh]</th>
<th>status</th><th>CO2e [kg]</th></tr>{rows}</table></body></html>
"""


def write_portfolio(
    projects: Sequence[PortfolioProject], out: Path, confidence: float, title: str
) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    totals = aggregate(projects)
    files = {"html": out / "portfolio.html", "json": out / "portfolio.json", "csv": out / "portfolio.csv"}
    doc = {
        "title": title,
        "confidence": confidence,
        "combination": "absolute uncertainties in quadrature (independent projects)",
        "totals": {"all": asdict(totals[0]), "claimed": asdict(totals[1])},
        "projects": [asdict(p) for p in projects],
    }
    files["json"].write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    with files["csv"].open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "project",
                "id",
                "savings_kwh",
                f"uncertainty_{round(100 * confidence)}_kwh",
                "claimed",
                "co2e_kg",
                "source",
            ]
        )
        for p in projects:
            co2 = "" if p.co2e_kg is None else f"{p.co2e_kg:.3f}"
            w.writerow(
                [
                    p.name,
                    p.project_id,
                    f"{p.savings_kwh:.3f}",
                    f"{p.uncertainty_kwh:.3f}",
                    int(p.claimed),
                    co2,
                    p.source,
                ]
            )
        for t in totals:
            w.writerow(
                [
                    f"TOTAL {t.label}",
                    "",
                    f"{t.savings_kwh:.3f}",
                    f"{t.uncertainty_kwh:.3f}",
                    "",
                    f"{t.co2e_kg:.3f}",
                    "",
                ]
            )
    files["html"].write_text(_html(projects, totals, confidence, title), encoding="utf-8")
    return files


def portfolio_main(argv: list[str]) -> int:
    """``edge-agent evaluate portfolio DIR``: exit 0 on success, 2 on bad input."""
    from rich.console import Console
    from rich.markup import escape as rich_escape

    p = argparse.ArgumentParser(prog="edge-agent evaluate portfolio", description=__doc__.splitlines()[0])
    p.add_argument(
        "folder", type=Path, help="folder of M&V plans (*.yaml) or of finished evaluation.json files"
    )
    p.add_argument("--out", type=Path, default=Path("portfolio"), metavar="DIR")
    p.add_argument("--confidence", type=float, default=0.90)
    p.add_argument(
        "--co2e-kg-per-kwh", type=float, default=None, help="emission factor for projects without one"
    )
    p.add_argument("--title", default="Programme portfolio")
    p.add_argument(
        "--workers", type=int, default=None, help="processes for evaluating plans (default: all cores)"
    )
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else 2
    err = Console(stderr=True)
    try:
        if not 0.5 <= args.confidence < 1.0:
            raise EvaluationError(f"--confidence {args.confidence}: expected a level such as 0.9 or 0.95")
        projects = load_projects(args.folder, args.out, args.confidence, args.co2e_kg_per_kwh, args.workers)
        files = write_portfolio(projects, args.out, args.confidence, args.title)
    except EvaluationError as exc:
        err.print(f"[red]error[/red] {rich_escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    every, claimed = aggregate(projects)
    con = Console()
    for t in (claimed, every):
        con.print(f"{t.label}: {t.n} projects, {t.savings_kwh:,.0f} ± {t.uncertainty_kwh:,.0f} kWh at "
                  f"{100 * args.confidence:g} % confidence")  # fmt: skip
    con.print(f"report {files['html']}")
    return 0

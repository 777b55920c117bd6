"""``edge-agent evaluate``: argparse front end over loading, evaluation and the report.

Exit codes: 0 savings claimed (every gate passed), 3 report written but no savings claimed
(a gate failed), 2 bad input or usage. The team CLI delegates its ``evaluate`` subcommand
here, so this module owns all the options.
"""

from __future__ import annotations

__all__ = ["EXIT_CLAIMED", "EXIT_INPUT", "EXIT_NOT_CLAIMED", "cli_main"]

import argparse
import os
import shlex
from dataclasses import replace
from datetime import UTC, timedelta, tzinfo
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edge_agent.evaluation._channels import LoadedData, Role
from edge_agent.evaluation._csv_source import CsvSpec, csv_header, load_csv
from edge_agent.evaluation._errors import EvaluationError
from edge_agent.evaluation._evaluate import EvaluationOptions, EvaluationResult, evaluate
from edge_agent.evaluation._influx_source import InfluxSpec, influx_field_keys, load_influx
from edge_agent.evaluation._model_text import parse_model_spec
from edge_agent.evaluation._plan import MvPlan, load_plan, plan_cli_args
from edge_agent.evaluation._provenance import InputFile, Provenance
from edge_agent.evaluation._refs import Ref, parse_ref
from edge_agent.evaluation._report import ReportFiles, write_report
from edge_agent.evaluation._selection import SelectionMethod
from edge_agent.evaluation._timebase import (
    Period,
    Resolution,
    local_midnight_ns,
    parse_period,
    parse_timezone,
)
from edge_agent.evaluation._units import ENERGY_UNITS, energy_factor

EXIT_CLAIMED, EXIT_INPUT, EXIT_NOT_CLAIMED = 0, 2, 3

_ROLE_OPTIONS = {
    Role.ENERGY: "--energy",
    Role.PRODUCTION: "--production",
    Role.OPERATING_HOURS: "--operating-hours",
    Role.IDLE_HOURS: "--idle-hours",
    Role.TEMPERATURE: "--temperature",
    Role.GOOD_PARTS: "--good-parts",
    Role.SCRAP: "--scrap",
    Role.IDLE_ENERGY: "--idle-energy",
}
_ENERGY_ROLES = (Role.ENERGY, Role.IDLE_ENERGY)
# Column layout of the bundled simulator's history.csv, per asset.
_CSV_PRESET = {
    Role.ENERGY: ["{a}_kwh"],
    Role.PRODUCTION: ["{a}_good", "{a}_scrap"],
    Role.OPERATING_HOURS: ["{a}_operating_h"],
    Role.GOOD_PARTS: ["{a}_good"],
    Role.SCRAP: ["{a}_scrap"],
    Role.IDLE_ENERGY: ["{a}_idle_kwh"],
}
# KPI field names the agent writes to measurement ``kpi``.
_INFLUX_PRESET = {
    Role.ENERGY: "energy_kwh",
    Role.PRODUCTION: "produced_quantity",
    Role.OPERATING_HOURS: "apt_s/3600",
    Role.GOOD_PARTS: "good_quantity",
    Role.SCRAP: "scrap_quantity",
    Role.IDLE_ENERGY: "energy_idle_kwh",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-agent evaluate",
        description="Before/after savings evaluation (IPMVP Option B/C, ISO 50006 baseline, ASHRAE 14 "
        "uncertainty). Writes an HTML report, a JSON file with every figure and a CSV of the modelled "
        "series.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--plan", type=Path, metavar="FILE", help="an M&V plan (YAML) with data, periods, identity"
    )
    src.add_argument(
        "--csv", type=Path, metavar="FILE", help="CSV with a timestamp column (ISO 8601 + offset)"
    )
    src.add_argument("--influx", metavar="URL", help="InfluxDB 1.x base URL, e.g. http://127.0.0.1:8086")
    p.add_argument(
        "--baseline", metavar="START/END", help="baseline dates, inclusive (required without --plan)"
    )
    p.add_argument(
        "--reporting", metavar="START/END", help="reporting dates, inclusive (required without --plan)"
    )
    p.add_argument("--out", type=Path, default=Path("evaluation"), metavar="DIR", help="output directory")
    p.add_argument("--asset", help="preset column/field names for this asset (CSV: A or A+B sums assets)")
    g = p.add_argument_group(
        "data (SPEC = [FILE.csv: or MEASUREMENT:]NAME[+NAME...][*k or /k]; 'none' drops)"
    )
    for role, opt in _ROLE_OPTIONS.items():
        g.add_argument(opt, metavar="SPEC", help=f"{role.label} [{role.unit}]")
    g.add_argument("--temperature-unit", choices=["C", "F"], default="C")
    g.add_argument("--energy-unit", choices=list(ENERGY_UNITS), default="kWh", help="unit of --energy data")
    g.add_argument(
        "--gas-calorific-value", type=float, metavar="K", help="kWh per m³ of gas for --energy-unit m3"
    )
    g.add_argument("--weather-source", default="", metavar="TEXT", help="where the temperatures come from")
    g.add_argument("--timestamp-column", default="timestamp", metavar="NAME", help="CSV timestamp column")
    g.add_argument("--timestamp-at", choices=["end", "start"], default="end", help="what a timestamp marks")
    g.add_argument("--interval", type=float, metavar="SECONDS", help="sampling interval (default: inferred)")
    m = p.add_argument_group("model")
    m.add_argument("--resolution", choices=[r.value for r in Resolution], default="day")
    m.add_argument("--coverage-threshold", type=float, default=0.9, metavar="FRACTION", help="per bucket")
    m.add_argument("--timezone", metavar="TZ", help="UTC, +01:00 or Europe/Berlin (default: the data's)")
    m.add_argument("--select", choices=[s.value for s in SelectionMethod], default="adj-r2")
    m.add_argument("--model", metavar="TERMS", help="force a model, e.g. production+on or 3P-heating")
    m.add_argument(
        "--min-baseline-days", type=int, default=28, metavar="DAYS", help="shortest baseline claimed"
    )
    m.add_argument("--folds", type=int, default=5, help="cross-validation folds (with --select cv)")
    m.add_argument("--confidence", type=float, default=0.90, help="level the result is stated at")
    m.add_argument("--title", default="Before/after evaluation")
    i = p.add_argument_group("InfluxDB (password from the INFLUX_PASSWORD environment variable)")
    i.add_argument("--database", default="edge_agent")
    i.add_argument("--measurement", default="kpi")
    i.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="tag filter, repeatable")
    i.add_argument("--influx-user", metavar="USER")
    return p


def _given(args: argparse.Namespace) -> dict[Role, str | None]:
    return {r: getattr(args, opt[2:].replace("-", "_")) for r, opt in _ROLE_OPTIONS.items()}


def _refs(given: dict[Role, str | None], preset: dict[Role, str], suffix: str | None) -> dict[Role, Ref]:
    refs: dict[Role, Ref] = {}
    for role, opt in _ROLE_OPTIONS.items():
        text = given[role] if given[role] is not None else preset.get(role)
        if text is not None and text.lower() != "none":
            refs[role] = parse_ref(text, opt, container_suffix=suffix)
    return refs


def _csv_preset(path: Path, asset: str | None) -> dict[Role, str]:
    if not asset:
        return {}
    header = set(csv_header(path))
    assets = [a.strip() for a in asset.split("+")]
    out: dict[Role, str] = {}
    for role, patterns in _CSV_PRESET.items():
        cols = [pat.format(a=a) for a in assets for pat in patterns]
        if all(c in header for c in cols):  # a role only when every asset has the column
            out[role] = "+".join(cols)
    if Role.ENERGY not in out:
        raise EvaluationError(
            f"--asset {asset!r}: {path} has no column {assets[0]}_kwh; pass --energy COLUMN instead"
        )
    if "outdoor_temp_c" in header:
        out[Role.TEMPERATURE] = "outdoor_temp_c"
    return out


def _tags(args: argparse.Namespace) -> dict[str, str]:
    tags: dict[str, str] = {}
    for t in args.tag:
        key, sep, value = t.partition("=")
        if not sep or not key:
            raise EvaluationError(f"--tag {t!r}: expected KEY=VALUE, e.g. --tag window=15m")
        tags[key] = value
    if args.asset:
        if "+" in args.asset:
            raise EvaluationError("--asset with InfluxDB takes one asset; query a site meter for several")
        tags.setdefault("asset", args.asset)
    return tags


def _load(
    args: argparse.Namespace,
    baseline: Period,
    reporting: Period,
    tz: tzinfo | None,
    con: Console,
    energy_factor: float = 1.0,
) -> LoadedData:
    given = _given(args)
    if args.csv is not None:
        refs = _energy_scaled(_refs(given, _csv_preset(args.csv, args.asset), ".csv"), energy_factor)
        spec = CsvSpec(
            file=args.csv,
            refs=refs,
            timestamp_column=args.timestamp_column,
            timestamp_at=args.timestamp_at,
            interval_s=args.interval,
            temperature_unit=args.temperature_unit,
        )
        return load_csv(spec, console=con)
    base = InfluxSpec(
        url=args.influx,
        database=args.database,
        refs={},
        measurement=args.measurement,
        tags=_tags(args),
        timestamp_at=args.timestamp_at,
        interval_s=args.interval,
        temperature_unit=args.temperature_unit,
        username=args.influx_user,
        password=os.environ.get("INFLUX_PASSWORD"),
    )
    preset: dict[Role, str] = {}
    if args.asset:
        keys = influx_field_keys(base)
        preset = {r: f for r, f in _INFLUX_PRESET.items() if f.split("/")[0] in keys}
    elif given[Role.ENERGY] is None:
        preset = {Role.ENERGY: _INFLUX_PRESET[Role.ENERGY]}
    zone = tz or UTC
    day_ns = 86_400_000_000_000
    start = local_midnight_ns(baseline.start, zone) - day_ns
    end = local_midnight_ns(reporting.end + timedelta(days=1), zone) + day_ns
    refs = _energy_scaled(_refs(given, preset, None), energy_factor)
    return load_influx(replace(base, refs=refs), start, end, console=con)


def _energy_scaled(refs: dict[Role, Ref], factor: float) -> dict[Role, Ref]:
    if factor == 1.0:
        return refs
    return {
        r: replace(ref, scale=ref.scale * factor) if r in _ENERGY_ROLES else ref for r, ref in refs.items()
    }


def _provenance(args: argparse.Namespace, plan: MvPlan | None, units: str, argv: list[str]) -> Provenance:
    inputs = [InputFile.of("plan", args.plan)] if args.plan is not None else []
    if args.csv is not None:
        inputs.append(InputFile.of("data", args.csv))
        extra = {ref.split(":")[0] for ref in _given(args).values() if ref and ".csv:" in ref}
        inputs += [
            InputFile.of("data", args.csv.parent / e if not Path(e).is_absolute() else Path(e))
            for e in sorted(extra)
        ]
    identity = plan.project.model_dump() if plan is not None else {}
    weather = plan.data.weather_source if plan is not None else args.weather_source
    return Provenance(
        identity={k: str(v) for k, v in identity.items() if v != ""},
        inputs=tuple(inputs),
        weather_source=weather,
        units=units,
        temperature_unit=args.temperature_unit,
        co2e_kg_per_kwh=plan.co2e_kg_per_kwh if plan is not None else None,
        command="edge-agent evaluate " + " ".join(shlex.quote(a) for a in argv),
    )


def _run(
    args: argparse.Namespace, con: Console, argv: list[str], plan: MvPlan | None = None
) -> tuple[EvaluationResult, ReportFiles]:
    if args.baseline is None or args.reporting is None:
        raise EvaluationError(
            "--baseline and --reporting are required (or give an M&V plan with --plan FILE)"
        )
    baseline = parse_period(args.baseline, "baseline")
    reporting = parse_period(args.reporting, "reporting")
    factor, units = energy_factor(args.energy_unit, args.gas_calorific_value)
    tz = parse_timezone(args.timezone) if args.timezone else None
    options = EvaluationOptions(
        baseline=baseline,
        reporting=reporting,
        resolution=Resolution(args.resolution),
        timezone=tz,
        coverage_threshold=args.coverage_threshold,
        selection=SelectionMethod(args.select),
        folds=args.folds,
        confidence=args.confidence,
        title=args.title,
        min_baseline_days=args.min_baseline_days,
        model=parse_model_spec(args.model) if args.model else None,
        excluded=tuple((e.dates, e.reason) for e in plan.adjustments.excluded) if plan else (),
        static_adjustments=tuple((s.amount_kwh, s.justification) for s in plan.adjustments.static)
        if plan
        else (),
    )
    data = _load(args, baseline, reporting, tz, con, factor)
    with con.status("fitting baseline models", spinner="dots"):
        result = evaluate(data, options)
    result = replace(result, provenance=_provenance(args, plan, units, argv))
    with con.status("writing the report", spinner="dots"):
        files = write_report(result, args.out)
    return result, files


def _print_summary(result: EvaluationResult, files: ReportFiles, out: Console) -> None:
    style = "green" if result.verdict.claimed else "red"
    out.print(f"[bold {style}]{escape(result.verdict.headline)}[/]")
    t = Table(show_header=False, box=None, padding=(0, 1))
    sv = result.savings
    t.add_row("model", escape(result.model.spec.name))
    t.add_row("CV(RMSE) / NMBE", f"{100 * result.stats.cv_rmse:.2f} % / {100 * result.stats.nmbe:.3f} %")
    t.add_row("savings", f"{sv.savings_kwh:,.0f} kWh ({100 * sv.savings_fraction:.1f} %)")
    for u in sv.uncertainty:
        t.add_row(f"± at {100 * u.confidence:.0f} %", f"{u.kwh:,.0f} kWh (FSU {100 * u.fsu:.1f} %)")
    for g in result.gates:
        mark = "[green]PASS[/]" if g.passed else "[red]FAIL[/]"
        t.add_row(escape(g.title), f"{mark} {escape(g.value)} (required {escape(g.threshold)})")
    t.add_row("report", escape(str(files.html)))
    t.add_row("figures (JSON)", escape(str(files.json)))
    t.add_row("series (CSV)", escape(str(files.csv)))
    out.print(t)


def _without_plan(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--plan":
            skip = True
        elif not a.startswith("--plan="):
            out.append(a)
    return out


def cli_main(argv: list[str]) -> int:
    """Run ``edge-agent evaluate`` with ``argv`` (the arguments after ``evaluate``)."""
    if argv[:1] == ["portfolio"]:
        from edge_agent.evaluation.portfolio import portfolio_main

        return portfolio_main(argv[1:])
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed by argparse
        return int(exc.code) if isinstance(exc.code, int) else EXIT_INPUT
    err = Console(stderr=True)
    try:
        plan = None
        if args.plan is not None:
            plan = load_plan(args.plan)
            plan_path = args.plan
            args = parser.parse_args([*plan_cli_args(plan, plan_path), *_without_plan(argv)])
            args.plan = plan_path  # flags given next to --plan override the plan's values
        result, files = _run(args, err, argv, plan)
    except EvaluationError as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return EXIT_INPUT
    _print_summary(result, files, Console())
    return EXIT_CLAIMED if result.verdict.claimed else EXIT_NOT_CLAIMED

"""The M&V plan, `--model`, units, the signable report (identity, hashes) and its PDF print.

One simulated history (8 weeks, 15-minute data) written as CSV, as an evaluator would get it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import require

from edge_agent.evaluation import EXIT_CLAIMED, EXIT_INPUT, cli_main
from edge_agent_simulators.history import HistoryResult, generate_history

PERIODS = ["--baseline", "2024-01-01/2024-01-28", "--reporting", "2024-01-29/2024-02-25"]

PLAN = """\
project:
  name: Idle power retrofit
  id: P-017
  site: Plant 2, Hall B
  measure: CNC and IMM idle standby
  boundary: IPMVP Option B (cnc1 + imm1)
  evaluator: A. Auditor
data:
  csv: history.csv
  asset: cnc1+imm1
  weather_source: simulator outdoor temperature
periods:
  baseline: 2024-01-01/2024-01-28
  reporting: 2024-01-29/2024-02-25
co2e_kg_per_kwh: 0.38
adjustments:
  excluded:
    - {period: 2024-02-10/2024-02-10, reason: metering outage}
  static:
    - {amount_kwh: -40, justification: added conveyor inside the boundary}
"""


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> HistoryResult:
    return generate_history(56, 28, 900, 7, tmp_path_factory.mktemp("history"), progress=False)


def _json(out: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((out / "evaluation.json").read_text(encoding="utf-8"))
    return doc


def _plan(history: HistoryResult, text: str = PLAN) -> Path:
    path = history.csv_path.parent / "plan.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_plan_runs_and_the_report_carries_identity_hashes_and_adjustments(
    history: HistoryResult, tmp_path: Path
) -> None:
    plan = _plan(history)
    out = tmp_path / "out"
    assert cli_main(["--plan", str(plan), "--out", str(out)]) == EXIT_CLAIMED
    doc = _json(out)
    prov = doc["provenance"]
    assert prov["identity"]["evaluator"] == "A. Auditor" and prov["identity"]["id"] == "P-017"
    digests = {Path(f["path"]).name: f["sha256"] for f in prov["inputs"]}
    for name in ("plan.yaml", "history.csv"):
        assert digests[name] == hashlib.sha256((history.csv_path.parent / name).read_bytes()).hexdigest()
    assert prov["weather_source"] == "simulator outdoor temperature"
    assert prov["edge_agent_version"] and prov["co2e_kg_per_kwh"] == 0.38
    assert doc["adjustments"]["static"] == [
        {"amount_kwh": -40.0, "justification": "added conveyor inside the boundary"}
    ]
    assert doc["savings"]["adjusted_baseline_kwh"] == pytest.approx(
        sum(doc_series_adjusted(out)) - 40.0, rel=1e-6
    )
    assert doc["model_equation"].startswith("E[kWh per bucket] = ")
    html = (out / "evaluation.html").read_text(encoding="utf-8")
    for text in (
        "Plant 2, Hall B",
        "IPMVP Option B (cnc1 + imm1)",
        "metering outage",
        'id="signoff"',
        digests["history.csv"],
    ):
        assert text in html
    # the excluded day is out of the reporting sums
    assert doc["savings"]["reporting_buckets_used"] == 27


def doc_series_adjusted(out: Path) -> list[float]:
    import csv

    with (out / "evaluation_series.csv").open(encoding="utf-8", newline="") as fh:
        return [
            float(r["modelled_kwh"])
            for r in csv.DictReader(fh)
            if r["period"] == "reporting" and r["used"] == "1"
        ]


def test_plan_validation_errors_name_their_lines(
    history: HistoryResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = PLAN.replace("  evaluator: A. Auditor\n", "").replace("energy_unit", "x")
    bad = bad.replace("  asset: cnc1+imm1\n", "  asset: cnc1+imm1\n  energy_unit: joule\n")
    bad = bad.replace("reporting: 2024-01-29/2024-02-25", "reporting: 2024-01-29/2024-13-25")
    bad += "colour: blue\n"
    code = cli_main(["--plan", str(_plan(history, bad)), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == EXIT_INPUT
    lines = bad.splitlines()
    unit_line = lines.index("  energy_unit: joule") + 1
    rep_line = next(i for i, s in enumerate(lines, 1) if "2024-13-25" in s)
    assert "4 problem(s) in the M&V plan" in err
    assert f"line {unit_line}: data.energy_unit" in err
    assert f"line {rep_line}: periods.reporting" in err
    assert "line 1: project.evaluator: required key 'evaluator' is missing" in err
    assert f"line {len(lines)}: colour: unknown key 'colour'" in err


def test_model_flag_forces_the_model(history: HistoryResult, tmp_path: Path) -> None:
    args = ["--csv", str(history.csv_path), "--asset", "cnc1", *PERIODS, "--out", str(tmp_path)]
    assert cli_main([*args, "--model", "production+on+3P-heating"]) in (0, 3)
    doc = _json(tmp_path)
    assert doc["model"]["name"] == "production + production > 0 + temperature 3P heating"
    assert "forced" in doc["model"]["why_chosen"]
    assert cli_main([*args, "--model", "production+wind"]) == EXIT_INPUT


def test_therm_and_fahrenheit(history: HistoryResult, tmp_path: Path) -> None:
    """The same data in therm and °F give the same kWh result, stated as converted."""
    src = history.csv_path.read_text(encoding="utf-8").splitlines()
    head = src[0].split(",")
    e, t = head.index("main_kwh"), head.index("outdoor_temp_c")
    rows = ["timestamp,gas_therm,temp_f"]
    for line in src[1:]:
        c = line.split(",")
        rows.append(f"{c[0]},{float(c[e]) / 29.307107!r},{float(c[t]) * 9 / 5 + 32!r}")
    conv = tmp_path / "therm.csv"
    conv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    a, b = tmp_path / "kwh", tmp_path / "therm"
    cli_main(["--csv", str(history.csv_path), "--energy", "main_kwh", "--temperature", "outdoor_temp_c",
              *PERIODS, "--out", str(a), "--model", "2P"])  # fmt: skip
    cli_main(["--csv", str(conv), "--energy", "gas_therm", "--energy-unit", "therm", "--temperature",
              "temp_f", "--temperature-unit", "F", *PERIODS, "--out", str(b), "--model", "2P"])  # fmt: skip
    da, db = _json(a), _json(b)
    assert db["savings"]["savings_kwh"] == pytest.approx(da["savings"]["savings_kwh"], rel=1e-6, abs=1e-6)
    assert "converted at 29.3071 kWh/therm" in db["provenance"]["units"]
    assert db["provenance"]["temperature_unit"] == "F"
    assert db["model"]["name"] == da["model"]["name"] == "temperature 2P"
    assert cli_main(["--csv", str(conv), "--energy", "gas_therm", "--energy-unit", "m3", *PERIODS,
                     "--out", str(b)]) == EXIT_INPUT  # fmt: skip


def test_report_prints_to_pdf(history: HistoryResult, tmp_path: Path) -> None:
    require(shutil.which("chromium") is not None, "chromium (Debian package 'chromium')")
    require(shutil.which("pdftoppm") is not None, "pdftoppm (Debian package 'poppler-utils')")
    out = tmp_path / "out"
    cli_main(["--plan", str(_plan(history)), "--out", str(out)])
    pdf = tmp_path / "report.pdf"
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
         f"--print-to-pdf={pdf}", (out / "evaluation.html").as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    assert pdf.read_bytes().startswith(b"%PDF")
    subprocess.run(
        ["pdftoppm", "-r", "40", "-png", str(pdf), str(tmp_path / "page")], check=True, timeout=120
    )
    pages = sorted(tmp_path.glob("page*.png"))
    assert 3 <= len(pages) <= 20, len(pages)
    # A4 portrait at 40 dpi: 331 × 468 px; nothing wider than the page (no clipped tables)
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "Sign-off" in text and "A. Auditor" in text and "SHA-256" in text

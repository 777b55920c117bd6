"""The report files: HTML rendered in headless Chromium, strict JSON, the series CSV, the CLI."""

from __future__ import annotations

import csv
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from browser import chromium

from edge_agent.evaluation import (
    EXIT_INPUT,
    EvaluationOptions,
    EvaluationResult,
    Period,
    ReportFiles,
    cli_main,
    evaluate,
    synthetic_site,
    write_report,
)
from edge_agent.evaluation._cli import _parser


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[EvaluationResult, ReportFiles]:
    # a year of baseline so the reporting months lie inside its conditions; retrofit after it
    site = synthetic_site(days=365 + 120, interval_s=3600, seed=4, retrofit_day=372)
    s = site.start
    options = EvaluationOptions(
        baseline=Period(s, s + timedelta(days=364)),
        reporting=Period(s + timedelta(days=372), s + timedelta(days=484)),
    )
    result = evaluate(site.data, options)
    return result, write_report(result, tmp_path_factory.mktemp("report"))


def test_report_renders_in_headless_chromium(
    report: tuple[EvaluationResult, ReportFiles], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    _, files = report
    driver = chromium(tmp_path, 1100, 900)
    try:
        driver.get(files.html.as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
        )
        assert len(images) >= 5  # time series, cumulative savings, 3 variables, residuals
        assert all(done and w > 0 and h > 0 for done, w, h in images), images
        rows = driver.find_elements(By.CSS_SELECTOR, "table#summary tr")
        assert len(rows) >= 10
        assert "Avoided energy" in driver.find_element(By.ID, "summary").text
        assert driver.find_element(By.ID, "verdict").text.startswith("Savings of")
        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    finally:
        driver.quit()


def _no_nan(token: str) -> Any:
    raise AssertionError(f"JSON contains {token}")


def test_json_holds_every_figure_and_is_strict(report: tuple[EvaluationResult, ReportFiles]) -> None:
    result, files = report
    doc = json.loads(files.json.read_text(encoding="utf-8"), parse_constant=_no_nan)
    assert doc["savings"]["savings_kwh"] == pytest.approx(result.savings.savings_kwh)
    assert {u["confidence"] for u in doc["savings"]["uncertainty"]} >= {0.68, 0.9}
    keys = {"data_sufficiency", "cv_rmse", "nmbe", "baseline_range", "savings_uncertainty"}
    keys |= {"baseline_length", "reporting_coverage", "significance"}
    assert {g["key"] for g in doc["gates"]} - {"day_types"} == keys
    names = [c["name"] for c in doc["model"]["coefficients"]]
    assert "balance point" in names and doc["model"]["why_chosen"]
    assert sum(c["chosen"] for c in doc["candidates"]) == 1
    assert doc["fit"]["cv_rmse"] == pytest.approx(result.stats.cv_rmse)
    assert doc["indicators_note"].endswith("not savings")


def test_series_csv_has_every_bucket_of_both_periods(report: tuple[EvaluationResult, ReportFiles]) -> None:
    result, files = report
    with files.csv.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == result.baseline.n_buckets + result.reporting.n_buckets
    rep = [r for r in rows if r["period"] == "reporting" and r["used"] == "1"]
    assert float(rep[-1]["cumulative_savings_kwh"]) == pytest.approx(result.savings.savings_kwh, rel=1e-5)
    assert float(rep[-1]["cumulative_uncertainty_90_kwh"]) == pytest.approx(
        result.savings.at(0.9).kwh, rel=1e-5
    )


def test_cli_usage_and_input_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["--help"]) == 0
    assert "--baseline" in capsys.readouterr().out
    assert cli_main(["--csv", "x.csv"]) == EXIT_INPUT  # missing required periods
    f = tmp_path / "h.csv"
    f.write_text("timestamp,kwh\n2024-01-01T00:15:00Z,1\n2024-01-01T00:30:00Z,1\n", encoding="utf-8")
    code = cli_main(["--csv", str(f), "--energy", "main_kwh", "--baseline", "2024-01-01/2024-01-01",
                     "--reporting", "2024-01-02/2024-01-02", "--out", str(tmp_path / "o")])  # fmt: skip
    assert code == EXIT_INPUT
    err = capsys.readouterr().err
    assert "h.csv" in err and "main_kwh" in err and "header has" in err


def test_readme_documents_every_option() -> None:
    readme = (Path(__file__).parents[1] / "edge_agent" / "evaluation" / "README.md").read_text(
        encoding="utf-8"
    )
    options = {o for a in _parser()._actions for o in a.option_strings if o.startswith("--")}
    documented = set(re.findall(r"--[a-z][a-z-]+", readme))
    missing = options - {"--help"} - documented
    assert not missing, sorted(missing)

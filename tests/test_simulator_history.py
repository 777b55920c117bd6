"""Offline history: CSV format, truth.json, determinism and the true retrofit savings."""

from __future__ import annotations

import csv
import json
import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent_simulators.catalog import ASSETS, MACHINES
from edge_agent_simulators.config import RetrofitConfig
from edge_agent_simulators.history import HistoryResult, generate_history

DAYS, RETROFIT_DAY = 21, 10
NO_OP = RetrofitConfig(idle_power_factor=1.0, scrap_factor=1.0)


def read_csv(path: Path) -> tuple[list[str], list[str], dict[str, np.ndarray]]:
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    cols = {name: np.array([float(r[i]) for r in body]) for i, name in enumerate(header) if i > 0}
    return header, [r[0] for r in body], cols


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, HistoryResult]:
    base = tmp_path_factory.mktemp("history")
    return {
        "actual": generate_history(DAYS, RETROFIT_DAY, 60, 42, base / "actual", progress=False),
        # same seed with a retrofit that changes nothing = the counterfactual, computed independently
        "noop": generate_history(DAYS, RETROFIT_DAY, 60, 42, base / "noop", retrofit=NO_OP, progress=False),
    }


def test_csv_has_the_documented_columns_and_interval_end_timestamps(runs: dict[str, HistoryResult]) -> None:
    header, stamps, cols = read_csv(runs["actual"].csv_path)
    expected = ["timestamp", "outdoor_temp_c"]
    for a in ASSETS:
        expected += [f"{a}_kwh", f"{a}_kvarh"]
        if a in MACHINES:
            expected += [f"{a}_{c}" for c in ("good", "scrap", "material_kg", "operating_h", "idle_kwh")]
            expected += [f"{a}_{s}_h" for s in ("idle", "setup", "fault")]
        if a == "comp1":
            expected += ["comp1_air_m3", "comp1_loaded_h"]
    assert header == expected
    assert len(stamps) == runs["actual"].rows == DAYS * 1440
    assert stamps[0] == "2024-01-01T00:01:00+00:00"  # END of the first interval
    parsed = [datetime.fromisoformat(s) for s in (stamps[0], stamps[1], stamps[-1])]
    assert all(p.utcoffset() is not None for p in parsed)
    assert parsed[1] - parsed[0] == timedelta(seconds=60)
    assert parsed[2] == datetime.fromisoformat("2024-01-22T00:00:00+00:00")
    for m in MACHINES:
        assert np.all(cols[f"{m}_good"] == np.round(cols[f"{m}_good"]))
        assert np.all(cols[f"{m}_operating_h"] <= 60 / 3600 + 5e-7)  # printed with 6 decimals
        assert np.all(cols[f"{m}_idle_kwh"] <= cols[f"{m}_kwh"] + 1e-6)
        # hours in producing, idle, setup and fault never exceed the interval (6 decimals each)
        on_h = sum(cols[f"{m}_{s}_h"] for s in ("operating", "idle", "setup", "fault"))
        assert np.all(on_h <= 60 / 3600 + 2e-6)
        assert np.all((cols[f"{m}_idle_h"] > 0) <= (cols[f"{m}_idle_kwh"] > 0))


def test_local_time_zone_offsets_in_timestamps(tmp_path: Path) -> None:
    res = generate_history(
        2, 1, 900, 1, tmp_path, start=datetime(2024, 3, 30), tz="Europe/Berlin", progress=False
    )
    _, stamps, _ = read_csv(res.csv_path)
    assert stamps[0] == "2024-03-30T00:15:00+01:00"
    # DST begins on 31 March: that local day has 23 h, and the run ends on local midnight
    assert stamps[-1] == "2024-04-01T00:00:00+02:00"
    assert len(stamps) == 96 + 92
    assert res.truth["end"] == "2024-04-01T00:00:00+02:00"
    assert res.truth["retrofit_at"] == "2024-03-31T00:00:00+01:00"


def test_csv_sums_equal_the_truth_per_period(runs: dict[str, HistoryResult]) -> None:
    _, _, cols = read_csv(runs["actual"].csv_path)
    truth = runs["actual"].truth
    split = RETROFIT_DAY * 1440
    tol = split * 5e-7 * 2  # CSV prints 6 decimals
    for period, sl in (("baseline", slice(0, split)), ("reporting", slice(split, None))):
        for a in ASSETS:
            t = truth["assets"][a][period]
            assert math.fsum(cols[f"{a}_kwh"][sl]) == pytest.approx(t["energy_kwh"], abs=tol)
            assert math.fsum(cols[f"{a}_kvarh"][sl]) == pytest.approx(t["reactive_kvarh"], abs=tol)
            assert math.fsum(t["energy_kwh_by_state"].values()) == pytest.approx(t["energy_kwh"], rel=1e-12)
        for m in MACHINES:
            t = truth["assets"][m][period]
            assert int(cols[f"{m}_good"][sl].sum()) == t["good_parts"]
            assert int(cols[f"{m}_scrap"][sl].sum()) == t["scrap_parts"]
            assert math.fsum(cols[f"{m}_material_kg"][sl]) == pytest.approx(t["material_kg"], abs=tol)
            assert math.fsum(cols[f"{m}_idle_kwh"][sl]) == pytest.approx(t["idle_kwh"], abs=tol)
            assert math.fsum(cols[f"{m}_operating_h"][sl]) == pytest.approx(t["operating_h"], abs=tol)
            for s in ("idle", "setup", "fault"):
                hours = t["seconds_by_state"][s] / 3600.0
                assert math.fsum(cols[f"{m}_{s}_h"][sl]) == pytest.approx(hours, abs=tol)
    subs = cols["cnc1_kwh"] + cols["imm1_kwh"] + cols["comp1_kwh"]
    assert np.all(cols["main_kwh"] > subs)  # main = machines + a positive base load


def test_true_savings_are_positive_and_equal_the_counterfactual_difference(
    runs: dict[str, HistoryResult],
) -> None:
    actual, noop = runs["actual"].truth, runs["noop"].truth
    for a in ASSETS:
        cf = noop["assets"][a]["reporting"]["energy_kwh"]
        got = actual["assets"][a]["reporting"]["energy_kwh"]
        assert actual["true_savings_kwh"][a] == pytest.approx(cf - got, rel=1e-9, abs=1e-9)
        assert actual["counterfactual_reporting"][a]["energy_kwh"] == pytest.approx(cf, rel=1e-12)
        # the baseline period is untouched by the retrofit
        assert actual["assets"][a]["baseline"] == noop["assets"][a]["baseline"]
    for m in MACHINES:
        assert actual["true_savings_kwh"][m] > 0
        idle_cut = noop["assets"][m]["reporting"]["idle_kwh"] * 0.3
        assert actual["true_savings_kwh"][m] == pytest.approx(idle_cut, rel=1e-9)
        assert actual["scrap_avoided_parts"][m] > 0
    assert actual["true_savings_kwh"]["comp1"] == 0.0
    assert actual["true_savings_kwh"]["main"] == pytest.approx(
        sum(actual["true_savings_kwh"][a] for a in ASSETS if a != "main"), rel=1e-9
    )


def test_production_volume_grows_so_raw_before_after_misleads(runs: dict[str, HistoryResult]) -> None:
    t = runs["actual"].truth
    _, _, cols = read_csv(runs["actual"].csv_path)
    operating = (cols["cnc1_operating_h"] + cols["imm1_operating_h"]).reshape(DAYS, 1440).sum(axis=1)
    working = operating > 0
    n_base, n_rep = int(working[:RETROFIT_DAY].sum()), int(working[RETROFIT_DAY:].sum())
    assert n_base >= 7 and n_rep >= 7
    for m in MACHINES:  # per working day: the order book grows ~0.4 %/day
        base = t["assets"][m]["baseline"]["good_parts"] / n_base
        rep = t["assets"][m]["reporting"]["good_parts"] / n_rep
        assert rep > base * 1.03, m
    # naive per-day comparison of main shows far less than the true savings (or even a rise)
    naive = (
        t["assets"]["main"]["baseline"]["energy_kwh"] / n_base
        - t["assets"]["main"]["reporting"]["energy_kwh"] / n_rep
    ) * n_rep
    assert naive < 0.5 * t["true_savings_kwh"]["main"]


def test_truth_json_describes_periods_and_retrofit(runs: dict[str, HistoryResult]) -> None:
    on_disk: dict[str, Any] = json.loads(runs["actual"].truth_path.read_text(encoding="utf-8"))
    assert on_disk == json.loads(json.dumps(runs["actual"].truth))
    assert on_disk["retrofit_at"] == "2024-01-11T00:00:00+00:00"
    assert on_disk["periods"]["baseline"] == {
        "start": "2024-01-01T00:00:00+00:00",
        "end": "2024-01-11T00:00:00+00:00",
        "days": 10,
    }
    assert on_disk["periods"]["reporting"]["days"] == 11
    assert on_disk["retrofit"] == {"idle_power_factor": 0.7, "scrap_factor": 0.8, "assets": ["cnc1", "imm1"]}
    assert set(on_disk["true_savings_kwh"]) == set(ASSETS)


def test_same_seed_same_files_other_seed_other_files(tmp_path: Path) -> None:
    a = generate_history(3, 1, 300, 5, tmp_path / "a", progress=False)
    b = generate_history(3, 1, 300, 5, tmp_path / "b", progress=False)
    c = generate_history(3, 1, 300, 6, tmp_path / "c", progress=False)
    assert a.csv_path.read_bytes() == b.csv_path.read_bytes()
    assert a.truth_path.read_bytes() == b.truth_path.read_bytes()
    assert a.csv_path.read_bytes() != c.csv_path.read_bytes()


def test_bad_arguments_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"retrofit_day must be an integer with 0 < retrofit_day < days \(5\)"
    ):
        generate_history(5, 5, 60, 1, tmp_path, progress=False)
    with pytest.raises(ValueError, match="interval_s must be a whole number of seconds dividing a day"):
        generate_history(5, 2, 7, 1, tmp_path, progress=False)
    with pytest.raises(ValueError, match="days must be an integer >= 2"):
        generate_history(1, 0, 60, 1, tmp_path, progress=False)
    assert not (tmp_path / "history.csv").exists()


def test_public_api_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import edge_agent_simulators as simulators

    for name in simulators.__all__:
        assert getattr(simulators, name) is not None, name
    assert int(simulators.MachineState.PRODUCING) == 3
    code = simulators.main(
        [
            "history",
            "--days",
            "2",
            "--retrofit-day",
            "1",
            "--interval",
            "900",
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )
    assert code == 0
    assert f"wrote 192 rows to {tmp_path / 'history.csv'}" in capsys.readouterr().out
    assert json.loads((tmp_path / "truth.json").read_text(encoding="utf-8"))["interval_s"] == 900
    assert simulators.main(["history", "--days", "2", "--retrofit-day", "2", "--out", str(tmp_path)]) == 2
    assert "retrofit_day must be" in capsys.readouterr().out

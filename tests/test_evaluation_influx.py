"""InfluxDB 1.x input against a real influxd: the agent's KPI layout in, the same result as CSV out."""

from __future__ import annotations

import csv
import json
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from servers import InfluxServer, free_port

from edge_agent.evaluation import EXIT_INPUT, cli_main
from edge_agent_simulators.history import HistoryResult, generate_history

DB = "plant"
PERIODS = ["--baseline", "2024-01-01/2024-01-28", "--reporting", "2024-01-29/2024-02-25"]
# simulator CSV column -> agent KPI field (measurement "kpi")
FIELDS = {
    "kwh": "energy_kwh",
    "good": "good_quantity",
    "scrap": "scrap_quantity",
    "idle_kwh": "energy_idle_kwh",
}


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> HistoryResult:
    return generate_history(56, 28, 900, 7, tmp_path_factory.mktemp("history"), progress=False)


def _ns(iso: str) -> int:
    from datetime import datetime

    dt = datetime.fromisoformat(iso)
    return int(dt.timestamp()) * 10**9


def _lines(history: HistoryResult) -> list[str]:
    """The history as the agent would store it: one kpi point per asset and 15-min window."""
    out = []
    with history.csv_path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            t = _ns(row["timestamp"])  # the window end, as the agent stamps KPI windows
            for asset in ("cnc1", "imm1"):
                f = {field: row[f"{asset}_{col}"] for col, field in FIELDS.items()}
                f["produced_quantity"] = str(int(row[f"{asset}_good"]) + int(row[f"{asset}_scrap"]))
                f["apt_s"] = repr(float(row[f"{asset}_operating_h"]) * 3600.0)
                fields = ",".join(f"{k}={v}" for k, v in f.items())
                out.append(f"kpi,site=demo,asset={asset},window=15m {fields} {t}")
            out.append(f"weather,site=demo outdoor_temp_c={row['outdoor_temp_c']} {t}")
    return out


@pytest.fixture(scope="module")
def influx(influxdb_server: InfluxServer, history: HistoryResult) -> InfluxServer:
    influxdb_server.create_database(DB)
    lines = _lines(history)
    for i in range(0, len(lines), 5000):
        body = "\n".join(lines[i : i + 5000]).encode()
        req = urllib.request.Request(
            f"{influxdb_server.url}/write?db={DB}&precision=ns", data=body, method="POST"
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 204
    _wait_until_queryable(influxdb_server, lines)
    return influxdb_server


def _wait_until_queryable(server: InfluxServer, lines: list[str], within: float = 30.0) -> None:
    """Wait until influxd counts every field value written (a CI run once read a week short).

    A 204 means influxd accepted the write; the test compares whole periods, so it starts only
    once every measurement answers with all of its values.
    """
    written: Counter[str] = Counter()
    for line in lines:
        measurement, fields = line.split(",", 1)[0], line.split(" ")[1]
        written[measurement] += fields.count(",") + 1
    counts: dict[str, int] = {}
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        counts = {m: server.count(DB, m) for m in written}
        if counts == written:
            return
        time.sleep(0.2)
    raise AssertionError(f"influxd answers {counts} values after {within:g} s; written: {dict(written)}")


def _run(out: Path, *args: str) -> tuple[int, dict[str, Any]]:
    code = cli_main([*args, *PERIODS, "--out", str(out)])
    doc = json.loads((out / "evaluation.json").read_text(encoding="utf-8")) if code != EXIT_INPUT else {}
    return code, doc


def test_influx_gives_the_same_evaluation_as_the_csv(
    influx: InfluxServer, history: HistoryResult, tmp_path: Path
) -> None:
    code_i, from_influx = _run(
        tmp_path / "i",
        *("--influx", influx.url, "--database", DB, "--asset", "cnc1", "--tag", "window=15m"),
        *("--temperature", "weather:outdoor_temp_c"),
    )
    code_c, from_csv = _run(tmp_path / "c", "--csv", str(history.csv_path), "--asset", "cnc1")
    assert code_i == code_c
    assert from_influx["data"]["baseline"]["sources"]["energy"] == "influx:plant/kpi:energy_kwh"
    assert set(from_influx["data"]["baseline"]["sources"]) == set(from_csv["data"]["baseline"]["sources"])
    assert from_influx["model"]["name"] == from_csv["model"]["name"]
    for key in ("savings_kwh", "adjusted_baseline_kwh", "measured_kwh"):
        assert from_influx["savings"][key] == pytest.approx(from_csv["savings"][key], rel=1e-9)
    assert from_influx["indicators"] == from_csv["indicators"]


def test_influx_problems_are_named(
    influx: InfluxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--influx", influx.url, "--database", DB]
    # no asset filter: two series share every timestamp
    assert _run(tmp_path / "a", *base, "--energy", "energy_kwh")[0] == EXIT_INPUT
    assert "--tag" in capsys.readouterr().err
    assert _run(tmp_path / "b", *base, "--asset", "cnc1", "--energy", "energy_kw")[0] == EXIT_INPUT
    err = capsys.readouterr().err
    assert "'energy_kw'" in err and "SHOW FIELD KEYS" in err
    assert _run(tmp_path / "c", *base, "--asset", "press9")[0] == EXIT_INPUT
    assert "no points" in capsys.readouterr().err
    dead = f"http://127.0.0.1:{free_port()}"
    assert _run(tmp_path / "d", "--influx", dead, "--energy", "energy_kwh")[0] == EXIT_INPUT
    assert "cannot connect" in capsys.readouterr().err

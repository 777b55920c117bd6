"""Inputs: CSV parsing, time zones and DST, resampling with coverage, and clear errors."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from edge_agent.evaluation import (
    Channel,
    CsvSpec,
    EvaluationError,
    EvaluationOptions,
    Period,
    Resolution,
    Role,
    load_csv,
    parse_period,
    parse_ref,
    parse_timezone,
    resample_period,
)

CET = timezone(timedelta(hours=1))


def _write(path: Path, start: datetime, n: int, step_min: int, cols: dict[str, list[str]]) -> Path:
    """CSV with interval-END timestamps in ``start``'s zone, one row per step."""
    lines = ["timestamp," + ",".join(cols)]
    for i in range(n):
        ts = (start + timedelta(minutes=step_min * (i + 1))).isoformat()
        lines.append(ts + "," + ",".join(c[i] for c in cols.values()))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _spec(path: Path, **refs: str) -> CsvSpec:
    roles = {Role(k): parse_ref(v, f"--{k}", container_suffix=".csv") for k, v in refs.items()}
    return CsvSpec(file=path, refs=roles)


def test_interval_end_stamps_become_starts_and_days_are_local(tmp_path: Path) -> None:
    n = 96 * 3
    energy = [f"{(i // 96) + 1:.1f}" for i in range(n)]  # 1 kWh per 15 min on day 1, 2 on day 2, ...
    f = _write(tmp_path / "h.csv", datetime(2024, 3, 4, tzinfo=CET), n, 15, {"kwh": energy})
    data = load_csv(_spec(f, energy="kwh"))
    ch = data.channels[Role.ENERGY]
    assert ch.interval_ns == 900 * 10**9
    assert data.timezone.utcoffset(None) == timedelta(hours=1)
    first_start = datetime(2024, 3, 4, tzinfo=CET).timestamp() * 1e9
    assert ch.start_ns[0] == int(first_start)  # the row stamped 00:15 covers 00:00–00:15
    pd = resample_period(
        "baseline", Period(date(2024, 3, 4), date(2024, 3, 6)), Resolution.DAY, data.timezone, data.channels
    )
    assert pd.channels[Role.ENERGY].values.tolist() == [96.0, 192.0, 288.0]  # nothing leaks across midnight
    assert pd.data_coverage == 1.0


def test_coverage_drops_sparse_buckets_and_scales_small_gaps(tmp_path: Path) -> None:
    n = 96 * 3
    energy = ["1"] * n
    temp = ["5"] * n
    for i in range(96, 96 + 20):  # day 2 loses 20 of 96 readings (79 % coverage): dropped
        energy[i] = ""
    for i in range(192, 192 + 4):  # day 3 loses 4 (96 %): kept and scaled to a full day
        energy[i] = ""
    f = _write(tmp_path / "h.csv", datetime(2024, 1, 1, tzinfo=CET), n, 15, {"kwh": energy, "t": temp})
    data = load_csv(_spec(f, energy="kwh", temperature="t"))
    pd = resample_period(
        "baseline", Period(date(2024, 1, 1), date(2024, 1, 3)), Resolution.DAY, CET, data.channels
    )
    e = pd.channels[Role.ENERGY]
    assert pd.kept.tolist() == [True, False, True]
    assert pd.drop_counts[Role.ENERGY] == 1 and pd.drop_counts[Role.TEMPERATURE] == 0
    assert e.coverage.tolist() == pytest.approx([1.0, 76 / 96, 92 / 96])
    assert e.values[2] == pytest.approx(96.0)  # 92 kWh observed, scaled by 96/92
    assert e.raw_total == 96 + 76 + 92  # raw totals are never scaled
    assert pd.frame.energy.tolist() == pytest.approx([96.0, 96.0])
    assert pd.data_coverage == pytest.approx((96 + 92) / (3 * 96))
    assert pd.frame.variables[Role.TEMPERATURE].tolist() == [5.0, 5.0]  # means, not sums


def test_fahrenheit_temperature_from_a_second_file(tmp_path: Path) -> None:
    main = _write(tmp_path / "m.csv", datetime(2024, 1, 1, tzinfo=CET), 48, 60, {"kwh": ["2"] * 48})
    _write(
        tmp_path / "weather.csv",
        datetime(2024, 1, 1, tzinfo=CET),
        48,
        60,
        {"temp_f": ["50"] * 24 + ["32"] * 24},
    )
    spec = _spec(main, energy="kwh", temperature=f"{tmp_path / 'weather.csv'}:temp_f")
    data = load_csv(CsvSpec(file=spec.file, refs=spec.refs, temperature_unit="F"))
    pd = resample_period("b", Period(date(2024, 1, 1), date(2024, 1, 2)), Resolution.DAY, CET, data.channels)
    assert pd.frame.variables[Role.TEMPERATURE].tolist() == pytest.approx([10.0, 0.0])
    assert "weather.csv" in data.channels[Role.TEMPERATURE].source


def test_summed_columns_and_unit_scale() -> None:
    r = parse_ref("cnc1_good+cnc1_scrap", "--production", container_suffix=".csv")
    assert r.container is None and r.names == ("cnc1_good", "cnc1_scrap") and r.scale == 1.0
    r = parse_ref("kpi2:apt_s/3600", "--operating-hours")
    assert r.container == "kpi2" and r.names == ("apt_s",) and r.scale == pytest.approx(1 / 3600)
    r = parse_ref("weather.csv:t*0.1", "--temperature", container_suffix=".csv")
    assert r.container == "weather.csv" and r.scale == pytest.approx(0.1)
    with pytest.raises(EvaluationError, match="--energy"):
        parse_ref("a++b", "--energy")


def test_dst_days_are_23_and_25_hours_long() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    start = datetime(2024, 3, 30, tzinfo=berlin)
    utc_start = int(start.timestamp())
    n = (23 + 24 + 24) * 4  # 30 March (24 h), 31 March (23 h), 1 April (24 h) in 15-min steps
    ts = (utc_start + 900 * np.arange(n)) * 10**9
    ch = Channel(Role.ENERGY, "test", ts.astype(np.int64), np.ones(n), 900 * 10**9)
    pd = resample_period(
        "b", Period(date(2024, 3, 30), date(2024, 4, 1)), Resolution.DAY, berlin, {Role.ENERGY: ch}
    )
    e = pd.channels[Role.ENERGY]
    assert e.expected.tolist() == [96.0, 92.0, 96.0]
    assert e.values.tolist() == [96.0, 92.0, 96.0]
    assert pd.kept.all()
    hourly = resample_period(
        "b", Period(date(2024, 3, 31), date(2024, 3, 31)), Resolution.HOUR, berlin, {Role.ENERGY: ch}
    )
    assert hourly.n_buckets == 23


def test_bad_cell_names_file_line_and_column(tmp_path: Path) -> None:
    f = _write(tmp_path / "bad.csv", datetime(2024, 1, 1, tzinfo=CET), 3, 15, {"kwh": ["1", "abc", "1"]})
    with pytest.raises(EvaluationError, match=r"line 3, column 'kwh': 'abc' is not a number") as exc:
        load_csv(_spec(f, energy="kwh"))
    assert "bad.csv" in str(exc.value)


def test_missing_column_lists_the_header(tmp_path: Path) -> None:
    f = _write(tmp_path / "h.csv", datetime(2024, 1, 1, tzinfo=CET), 3, 15, {"main_kwh": ["1"] * 3})
    with pytest.raises(EvaluationError, match=r"no column\(s\) 'kwh'.*header has: timestamp, main_kwh"):
        load_csv(_spec(f, energy="kwh"))


def test_timestamps_need_an_offset(tmp_path: Path) -> None:
    f = tmp_path / "naive.csv"
    f.write_text("timestamp,kwh\n2024-01-01T00:15:00,1\n2024-01-01T00:30:00,1\n", encoding="utf-8")
    with pytest.raises(EvaluationError, match=r"naive.csv, line 2: .* has no UTC offset"):
        load_csv(_spec(f, energy="kwh"))


def test_duplicate_timestamps_are_refused(tmp_path: Path) -> None:
    f = tmp_path / "dup.csv"
    f.write_text(
        "timestamp,kwh\n2024-01-01T00:15:00Z,1\n2024-01-01T00:30:00Z,1\n2024-01-01T00:30:00Z,2\n",
        encoding="utf-8",
    )
    with pytest.raises(EvaluationError, match="appears more than once"):
        load_csv(_spec(f, energy="kwh"))


def test_missing_file_and_coarse_data_and_bad_periods(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match=r"nope.csv: cannot read the file"):
        load_csv(_spec(tmp_path / "nope.csv", energy="kwh"))
    f = _write(tmp_path / "daily.csv", datetime(2024, 1, 1, tzinfo=CET), 10, 24 * 60, {"kwh": ["1"] * 10})
    data = load_csv(_spec(f, energy="kwh"))
    with pytest.raises(EvaluationError, match="coarser than the 'hour' buckets"):
        resample_period("b", Period(date(2024, 1, 2), date(2024, 1, 3)), Resolution.HOUR, CET, data.channels)
    with pytest.raises(EvaluationError, match="YYYY-MM-DD"):
        parse_period("2024-13-01/2024-12-31", "baseline")
    with pytest.raises(EvaluationError, match="end date is before"):
        parse_period("2024-02-01/2024-01-01", "reporting")
    with pytest.raises(EvaluationError, match="must end before"):
        EvaluationOptions(
            baseline=parse_period("2024-01-01/2024-01-31", "b"),
            reporting=parse_period("2024-01-15/2024-02-15", "r"),
        )
    with pytest.raises(EvaluationError, match="IANA"):
        parse_timezone("Mars/Olympus")
    assert parse_timezone("+05:30").utcoffset(None) == timedelta(hours=5, minutes=30)

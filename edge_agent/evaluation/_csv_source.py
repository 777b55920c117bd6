"""CSV input: one timestamp column (ISO 8601 with offset) plus energy and variable columns.

A variable can live in the main file or in its own CSV (``weather.csv:temp_f``), and a
spec may add columns (``cnc1_good+cnc1_scrap``). Each file is read once, only the needed
columns are parsed, and every problem names the file, line and column.
"""

from __future__ import annotations

__all__ = ["CsvSpec", "csv_header", "load_csv"]

import csv
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

import numpy as np
from rich.console import Console

from edge_agent.evaluation._arrays import FloatArray, IntArray
from edge_agent.evaluation._channels import Channel, LoadedData, Role, channel_from_timestamps
from edge_agent.evaluation._errors import EvaluationError
from edge_agent.evaluation._progress import loading_progress
from edge_agent.evaluation._refs import Ref

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MISSING = frozenset({"", "nan", "NaN", "NAN", "null", "NULL", "NA", "N/A", "None"})


@dataclass(frozen=True)
class CsvSpec:
    """Which columns of which files feed which role (a ref's container is another CSV file)."""

    file: Path
    refs: Mapping[Role, Ref]
    timestamp_column: str = "timestamp"
    timestamp_at: Literal["start", "end"] = "end"
    interval_s: float | None = None
    temperature_unit: Literal["C", "F"] = "C"


def _lines(fh: Iterable[str], advance: Callable[[float], None]) -> Iterator[str]:
    """Pass lines through, reporting progress every MiB."""
    pending = 0
    for line in fh:
        pending += len(line)
        if pending > 1 << 20:
            advance(pending)
            pending = 0
        yield line
    advance(pending)


def _parse_ts(text: str, path: Path, line: int) -> tuple[int, timedelta]:
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise EvaluationError(
            f"{path}, line {line}: timestamp {text!r} is not ISO 8601; "
            "expected e.g. 2024-03-01T00:15:00+01:00"
        ) from None
    off = dt.utcoffset()
    if off is None:
        raise EvaluationError(
            f"{path}, line {line}: timestamp {text!r} has no UTC offset; write it with one, "
            "e.g. 2024-03-01T00:15:00+01:00 or ...Z"
        )
    return ((dt - _EPOCH) // timedelta(microseconds=1)) * 1000, off


def _read_file(
    path: Path, ts_col: str, wanted: set[str], console: Console | None
) -> tuple[IntArray, dict[str, FloatArray], timedelta]:
    """Timestamps (UTC ns), the wanted columns as floats, and the first row's UTC offset."""
    try:
        size = os.path.getsize(path)
        fh = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise EvaluationError(f"{path}: cannot read the file ({exc.strerror}); check the path") from None
    with fh, loading_progress(f"reading {path.name}", size, console) as advance:
        reader = csv.reader(_lines(fh, advance))
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in [ts_col, *sorted(wanted)] if c not in header]
        if missing:
            raise EvaluationError(
                f"{path}: no column(s) {', '.join(map(repr, missing))}; the header has: "
                f"{', '.join(header) or '(nothing)'}. Pass the right names (e.g. --energy, --timestamp-col)."
            )
        ti = header.index(ts_col)
        idx = {c: header.index(c) for c in wanted}
        ts: list[int] = []
        cols: dict[str, list[float]] = {c: [] for c in wanted}
        first_offset: timedelta | None = None
        for lineno, row in enumerate(reader, start=2):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) < len(header):
                raise EvaluationError(
                    f"{path}, line {lineno}: {len(row)} fields, the header has {len(header)}; "
                    "fix or remove the row"
                )
            t, off = _parse_ts(row[ti], path, lineno)
            ts.append(t)
            if first_offset is None:
                first_offset = off
            for c, i in idx.items():
                cell = row[i].strip()
                if cell in _MISSING:
                    cols[c].append(float("nan"))
                    continue
                try:
                    cols[c].append(float(cell))
                except ValueError:
                    raise EvaluationError(
                        f"{path}, line {lineno}, column {c!r}: {cell!r} is not a number; "
                        "leave the cell empty for a missing value"
                    ) from None
    if not ts:
        raise EvaluationError(f"{path}: no data rows below the header")
    assert first_offset is not None
    return (
        np.asarray(ts, dtype=np.int64),
        {c: np.asarray(v, dtype=np.float64) for c, v in cols.items()},
        first_offset,
    )


def load_csv(spec: CsvSpec, *, console: Console | None = None) -> LoadedData:
    """Read every referenced file once and build one channel per role."""
    if Role.ENERGY not in spec.refs:
        raise EvaluationError("no energy column: pass --energy COLUMN (e.g. --energy main_kwh)")
    by_file: dict[Path, set[str]] = {}
    for ref in spec.refs.values():
        by_file.setdefault(_file(spec, ref), set()).update(ref.names)
    tables = {f: _read_file(f, spec.timestamp_column, cols, console) for f, cols in by_file.items()}
    interval_ns = None if spec.interval_s is None else round(spec.interval_s * 1e9)
    channels: dict[Role, Channel] = {}
    for role, ref in spec.refs.items():
        path = _file(spec, ref)
        ts, cols, _ = tables[path]
        values = np.sum([cols[c] for c in ref.names], axis=0) * ref.scale
        if role is Role.TEMPERATURE and spec.temperature_unit == "F":
            values = (values - 32.0) * 5.0 / 9.0
        channels[role] = channel_from_timestamps(
            role,
            f"{path}:{'+'.join(ref.names)}",
            ts,
            values,
            timestamp_at=spec.timestamp_at,
            interval_ns=interval_ns,
        )
    main = _file(spec, spec.refs[Role.ENERGY])
    offset = tables[main][2]
    return LoadedData(channels=channels, timezone=timezone(offset), description=str(main))


def _file(spec: CsvSpec, ref: Ref) -> Path:
    return spec.file if ref.container is None else Path(ref.container)


def csv_header(path: Path) -> list[str]:
    """The header row, e.g. to expand an ``--asset`` preset to the columns that exist."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            return [h.strip() for h in next(csv.reader(fh), [])]
    except OSError as exc:
        raise EvaluationError(f"{path}: cannot read the file ({exc.strerror}); check the path") from None

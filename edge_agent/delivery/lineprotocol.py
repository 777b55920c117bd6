"""InfluxDB line protocol from a columnar SampleBatch, built column-wise.

Each column is formatted in one C-level pass (``map(repr, floats)``), the pieces of every
line sit in one object matrix, and a single ``str.join`` stitches them: no per-point
Python objects (influxdb-client's ``Point`` path is several times slower, see benchmarks).
Bad and Missing cells, and non-finite floats, are left out: a Bad value is never written
as a good number. A row with no usable cell produces no line.

Every name that reaches a line (measurement, tag keys and values, field keys) is escaped
where line protocol can escape it and refused with ``ValueError`` where it cannot
(newlines and other control characters, backslashes, empty keys, the reserved key
``time``), so no input can ever split a line or forge another measurement.
"""

from __future__ import annotations

__all__ = ["batch_lines", "check_name", "escape_key", "escape_tag_value", "record_lines"]

import math
import re
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from edge_agent.batch import Quality, SampleBatch
from edge_agent.delivery.record import Record

_KEY_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})


_UNCERTAIN = int(Quality.UNCERTAIN)  # a plain int: IntEnum attribute access is slow on the hot path
_UNWRITABLE = re.compile(r"[\x00-\x1f\x7f\\]")
_INT64 = (-(2**63), 2**63 - 1)


def check_name(what: str, s: str) -> str:
    """Return ``s`` if line protocol can carry it exactly, else raise ValueError saying why."""
    if not s:
        raise ValueError(f"{what} is empty; InfluxDB needs a non-empty name")
    bad = _UNWRITABLE.search(s)
    if bad is not None:
        raise ValueError(
            f"{what} {s[:80]!r} contains {bad.group()!r} at {bad.start()}: line protocol cannot carry "
            "control characters or backslashes; rename it"
        )
    if s == "time" and what != "measurement" and what != "tag value":
        raise ValueError(f"{what} 'time' is reserved by InfluxDB; rename it")
    return s


def escape_key(s: str, what: str = "key") -> str:
    return check_name(what, s).translate(_KEY_ESCAPES)


def escape_tag_value(s: str) -> str:
    return escape_key(s, "tag value")


def _column(values: np.ndarray, quality: npt.NDArray[np.uint8]) -> tuple[list[str], npt.NDArray[np.bool_]]:
    """Formatted values and the mask of cells that may be written."""
    ok = quality <= _UNCERTAIN
    kind = values.dtype.kind
    if kind == "f":
        ok &= np.isfinite(values)
        return list(map(repr, values.astype(np.float64, copy=False).tolist())), ok
    if kind in "iu":
        if len(values) and (int(values.min()) < _INT64[0] or int(values.max()) > _INT64[1]):
            raise ValueError("integer value outside the int64 range InfluxDB stores")
        return list(map("{}i".format, values.tolist())), ok
    if kind == "b":
        return ["true" if v else "false" for v in values.tolist()], ok
    raise ValueError(f"column of dtype {values.dtype} cannot be written as an InfluxDB field")


def _column_few(values: np.ndarray, quality: npt.NDArray[np.uint8]) -> tuple[list[str], list[bool]]:
    """:func:`_column` for a handful of rows in plain Python (numpy calls cost more than they save)."""
    vals, ok = values.tolist(), [q <= _UNCERTAIN for q in quality.tolist()]
    kind = values.dtype.kind
    if kind == "f":
        return [repr(v) for v in vals], [o and math.isfinite(v) for o, v in zip(ok, vals, strict=True)]
    if kind in "iu":
        if any(v < _INT64[0] or v > _INT64[1] for v in vals):
            raise ValueError("integer value outside the int64 range InfluxDB stores")
        return [f"{v}i" for v in vals], ok
    if kind == "b":
        return ["true" if v else "false" for v in vals], ok
    raise ValueError(f"column of dtype {values.dtype} cannot be written as an InfluxDB field")


def batch_lines(measurement: str, tags: Mapping[str, str], batch: SampleBatch) -> tuple[str, int]:
    """Line protocol for a batch (newline-terminated lines) and the number of fields written."""
    n, names = len(batch), list(batch.values)
    if n == 0 or not names:
        return "", 0
    if measurement.startswith("#"):
        raise ValueError(
            f"measurement {measurement!r} starts with '#', which line protocol reads as a comment"
        )
    prefix = check_name("measurement", measurement).translate(_MEASUREMENT_ESCAPES) + "".join(
        f",{escape_key(k, 'tag key')}={escape_tag_value(v)}" for k, v in sorted(tags.items()) if v
    )
    keys = [escape_key(t, "field key") + "=" for t in names]
    if n <= _FEW_ROWS:
        few = [_column_few(batch.values[tag], batch.quality[tag]) for tag in names]
        return _rows_lines(prefix, keys, few, batch.ts)
    return _matrix_lines(
        prefix, keys, [_column(batch.values[tag], batch.quality[tag]) for tag in names], batch.ts
    )


#: Below this many rows a plain loop beats building numpy object matrices (small MQTT messages).
_FEW_ROWS = 8


def _rows_lines(
    prefix: str, keys: list[str], columns: list[tuple[list[str], list[bool]]], ts: np.ndarray
) -> tuple[str, int]:
    out: list[str] = []
    written = 0
    for i, t in enumerate(ts.tolist()):
        fields = [key + strs[i] for key, (strs, ok) in zip(keys, columns, strict=True) if ok[i]]
        if fields:
            written += len(fields)
            out.append(f"{prefix} {','.join(fields)} {t}\n")
    return "".join(out), written


def _matrix_lines(
    prefix: str, keys: list[str], columns: list[tuple[list[str], npt.NDArray[np.bool_]]], ts: np.ndarray
) -> tuple[str, int]:
    """Column-wise: every piece of every line in one object matrix, stitched by one join."""
    n, k = len(ts), len(keys)
    pieces = np.empty((n, 2 * k + 3), dtype=object)
    pieces[:, 0] = prefix
    good = np.empty((n, k), dtype=np.bool_)
    for j, (strs, ok) in enumerate(columns):
        pieces[:, 2 * j + 1] = ("," if j else " ") + keys[j]
        pieces[:, 2 * j + 2] = strs
        good[:, j] = ok
    pieces[:, 2 * k + 1] = [" " + s for s in map(str, ts.tolist())]
    pieces[:, 2 * k + 2] = "\n"
    written = int(np.count_nonzero(good))
    if written != n * k:
        rows, cols = np.nonzero(~good)
        pieces[rows, 2 * cols + 1] = ""
        pieces[rows, 2 * cols + 2] = ""
        keep = good.any(axis=1)
        first = good.argmax(axis=1)
        moved = np.flatnonzero(keep & (first > 0))  # first usable field needs ' ' not ','
        pieces[moved, 2 * first[moved] + 1] = np.asarray([" " + key for key in keys], dtype=object)[
            first[moved]
        ]
        pieces = pieces[keep]
    return "".join(pieces.ravel().tolist()), written


def record_lines(record: Record) -> tuple[str, int]:
    """Measurement ``raw`` (tags site/area/line/asset/device) or ``kpi`` (…/asset/window)."""
    p = record.placement
    tags = {"site": p.site, "area": p.area, "line": p.line, "asset": p.asset}
    if record.kind == "raw":
        tags["device"] = record.batch.device
    else:
        tags["window"] = p.window or ""
    return batch_lines(record.kind, tags, record.batch)

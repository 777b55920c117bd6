"""InfluxDB 1.x input over the v1 HTTP API (``/query``, InfluxQL), no client library needed.

InfluxDB 1.6 has no Flux and no v2 API, so plain HTTP GETs with ``epoch=ns`` and chunked
responses are the portable way in. One query per measurement fetches every needed field;
tag filters (``asset='cnc1'``, ``window='15m'``) select one series.
"""

from __future__ import annotations

__all__ = ["InfluxSpec", "influx_field_keys", "load_influx"]

import base64
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, Literal

import numpy as np
from rich.console import Console

from edge_agent.evaluation._channels import Channel, LoadedData, Role, channel_from_timestamps
from edge_agent.evaluation._errors import EvaluationError
from edge_agent.evaluation._progress import loading_progress
from edge_agent.evaluation._refs import Ref


@dataclass(frozen=True)
class InfluxSpec:
    """Server, database, the main measurement with its tag filters, and a ref per role."""

    url: str
    database: str
    refs: Mapping[Role, Ref]
    measurement: str = "kpi"
    tags: Mapping[str, str] = field(default_factory=dict)
    timestamp_at: Literal["start", "end"] = "end"  # the agent stamps KPI windows at their end
    interval_s: float | None = None
    temperature_unit: Literal["C", "F"] = "C"
    username: str | None = None
    password: str | None = None
    timeout_s: float = 30.0
    chunk_size: int = 10_000


def _ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _where(tags: Mapping[str, str], start_ns: int, end_ns: int) -> str:
    conds = [f"{_ident(k)} = {_literal(v)}" for k, v in tags.items()]
    conds += [f"time >= {start_ns}", f"time <= {end_ns}"]
    return " AND ".join(conds)


def _request(spec: InfluxSpec, query: str, *, chunked: bool) -> Iterator[dict[str, Any]]:
    """Yield each JSON document of the answer (one per chunk)."""
    params = {"db": spec.database, "q": query, "epoch": "ns"}
    if chunked:
        params |= {"chunked": "true", "chunk_size": str(spec.chunk_size)}
    req = urllib.request.Request(f"{spec.url.rstrip('/')}/query?{urllib.parse.urlencode(params)}")
    if spec.username is not None:
        token = base64.b64encode(f"{spec.username}:{spec.password or ''}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    where = f"InfluxDB {spec.url} (database {spec.database!r})"
    try:
        with urllib.request.urlopen(req, timeout=spec.timeout_s) as resp:
            for line in resp:
                if line.strip():
                    doc = json.loads(line)
                    _raise_on_error(doc, where)
                    yield doc
    except urllib.error.HTTPError as exc:
        body = exc.read().decode("utf-8", "replace")
        try:
            msg = json.loads(body).get("error", body)
        except ValueError:
            msg = body
        hint = " Check --influx-user and the INFLUX_PASSWORD variable." if exc.code in (401, 403) else ""
        raise EvaluationError(f"{where}: HTTP {exc.code}: {msg.strip()}.{hint}") from None
    except urllib.error.URLError as exc:
        raise EvaluationError(
            f"{where}: cannot connect ({exc.reason}); is influxd running, and is --influx the right URL?"
        ) from None
    except TimeoutError:
        raise EvaluationError(f"{where}: no answer within {spec.timeout_s:g} s") from None


def _raise_on_error(doc: dict[str, Any], where: str) -> None:
    if "error" in doc:
        raise EvaluationError(f"{where}: {doc['error']}")
    for res in doc.get("results", []):
        if "error" in res:
            raise EvaluationError(f"{where}: {res['error']}")


def influx_field_keys(spec: InfluxSpec) -> set[str]:
    """Field names of the main measurement (to expand an ``--asset`` preset)."""
    keys: set[str] = set()
    for doc in _request(spec, f"SHOW FIELD KEYS FROM {_ident(spec.measurement)}", chunked=False):
        for res in doc.get("results", []):
            for series in res.get("series", []):
                keys.update(str(row[0]) for row in series.get("values", []))
    return keys


def _query_measurement(
    spec: InfluxSpec, measurement: str, fields: list[str], start_ns: int, end_ns: int, console: Console | None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    tags = spec.tags if measurement == spec.measurement else {}
    q = (
        f"SELECT {', '.join(_ident(f) for f in fields)} FROM {_ident(measurement)} "
        f"WHERE {_where(tags, start_ns, end_ns)}"
    )
    times: list[int] = []
    cols: dict[str, list[float]] = {f: [] for f in fields}
    with loading_progress(f"reading {measurement} from InfluxDB", None, console, unit="rows") as advance:
        for doc in _request(spec, q, chunked=True):
            for res in doc.get("results", []):
                for series in res.get("series", []):
                    names = series["columns"]
                    idx = {f: names.index(f) for f in fields if f in names}
                    for row in series.get("values", []):
                        times.append(int(row[0]))
                        for f in fields:
                            v = row[idx[f]] if f in idx else None
                            cols[f].append(_number(v, measurement, f))
                    advance(len(series.get("values", [])))
    where = f"InfluxDB {spec.url} database {spec.database!r} measurement {measurement!r}"
    if not times:
        filt = " AND ".join(f"{k}={v}" for k, v in tags.items()) or "no tag filter"
        raise EvaluationError(
            f"{where}: no points between {np.datetime64(start_ns, 'ns')}Z and {np.datetime64(end_ns, 'ns')}Z "
            f"({filt}); check --measurement, --tag and the period dates"
        )
    arrays = {f: np.asarray(v, dtype=np.float64) for f, v in cols.items()}
    for f, arr in arrays.items():
        if not np.isfinite(arr).any():
            raise EvaluationError(
                f"{where}: field {f!r} has no values in the time range; check the name "
                f"(SHOW FIELD KEYS FROM {_ident(measurement)} lists them)"
            )
    return np.asarray(times, dtype=np.int64), arrays


def _number(v: object, measurement: str, f: str) -> float:
    if v is None:
        return math.nan
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise EvaluationError(f"InfluxDB measurement {measurement!r} field {f!r}: {v!r} is not a number")
    return float(v)


def load_influx(
    spec: InfluxSpec, start_ns: int, end_ns: int, *, console: Console | None = None
) -> LoadedData:
    """Query every needed field between ``start_ns`` and ``end_ns`` (UTC) and build channels."""
    if Role.ENERGY not in spec.refs:
        raise EvaluationError("no energy field: pass --energy FIELD (e.g. --energy energy_kwh)")
    by_meas: dict[str, list[str]] = {}
    for ref in spec.refs.values():
        fields = by_meas.setdefault(ref.container or spec.measurement, [])
        fields.extend(n for n in ref.names if n not in fields)
    data = {m: _query_measurement(spec, m, f, start_ns, end_ns, console) for m, f in by_meas.items()}
    interval_ns = None if spec.interval_s is None else round(spec.interval_s * 1e9)
    channels: dict[Role, Channel] = {}
    for role, ref in spec.refs.items():
        meas = ref.container or spec.measurement
        ts, cols = data[meas]
        values = np.sum([cols[n] for n in ref.names], axis=0) * ref.scale
        if role is Role.TEMPERATURE and spec.temperature_unit == "F":
            values = (values - 32.0) * 5.0 / 9.0
        source = f"influx:{spec.database}/{meas}:{'+'.join(ref.names)}"
        channels[role] = channel_from_timestamps(
            role, source, ts, values, timestamp_at=spec.timestamp_at, interval_ns=interval_ns
        )
    tags = ",".join(f"{k}={v}" for k, v in spec.tags.items())
    desc = f"InfluxDB {spec.url} {spec.database}/{spec.measurement}" + (f" [{tags}]" if tags else "")
    return LoadedData(channels=channels, timezone=UTC, description=desc)

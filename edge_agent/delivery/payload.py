"""The UNS message format: compact columnar JSON, one message = many samples of one asset.

The pydantic model is the single source of truth: ingest validates with it and the JSON
Schema in ``edge_agent/schemas/`` is generated from it (a test keeps the file in sync).
"""

from __future__ import annotations

__all__ = [
    "STATUS_SCHEMA_FILE",
    "UNS_SCHEMA_FILE",
    "Decoded",
    "PayloadError",
    "StatusPayload",
    "UnsPayload",
    "decode_payload",
    "encode_payload",
    "encode_status",
    "schema_documents",
]

import json
import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge_agent.batch import Quality, SampleBatch
from edge_agent.delivery.record import Kind, Placement
from edge_agent.errors import EdgeAgentError

UNS_SCHEMA_FILE = "uns-payload.schema.json"
STATUS_SCHEMA_FILE = "uns-status.schema.json"

_Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=200)]
_Q = Annotated[int, Field(ge=Quality.GOOD, le=Quality.MISSING)]


class PayloadError(EdgeAgentError):
    """An MQTT payload is not a valid edge-agent UNS message; ingest rejects and counts it."""


class UnsPayload(BaseModel):
    """A raw or kpi message. ``quality`` lists only tags with a non-Good sample (absent = all Good)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, allow_inf_nan=False, title="edge-agent UNS data message"
    )

    v: Literal[1] = Field(description="format version")
    kind: Literal["raw", "kpi"]
    site: _Id
    area: _Id
    line: _Id
    asset: _Id
    device: _Id | None = Field(None, description="raw: the device that read the samples")
    window: str | None = Field(None, max_length=64, description="kpi: the aggregation window, e.g. '60s'")
    ts: list[int] = Field(description="timestamps, ns since the Unix epoch (exceed 2^53: parse as int64)")
    values: dict[_Id, list[float | int | None]] = Field(
        description="one column per tag/KPI, same length as ts; null where quality is Bad or Missing. "
        "Raw samples are in engineering units (scale and offset applied); a counter tag also has "
        "'<tag>_raw' with its exact integer count"
    )
    quality: dict[_Id, list[_Q]] = Field(
        default_factory=dict, description="0 Good, 1 Uncertain, 2 Bad, 3 Missing; omitted tags are all Good"
    )
    status: dict[_Id, list[Annotated[int, Field(ge=0, lt=2**32)]]] = Field(
        default_factory=dict,
        description="why a sample is not Good, beside its quality: 0 nothing to say; 1..0xFF a Modbus "
        "exception code; 0x101 link_lost, 0x102 timeout, 0x103 nonfinite (NaN/Inf from the device), "
        "0x104 unresolved; >= 0x10000 the OPC UA StatusCode as sent. Omitted tags have none",
    )


class StatusPayload(BaseModel):
    """Retained agent birth/will or per-asset status."""

    model_config = ConfigDict(extra="allow", frozen=True, title="edge-agent UNS status message")

    v: Literal[1] = 1
    state: str = Field(description="'online'/'offline' for the agent; free text per asset")
    agent: str
    ts: int = Field(description="ns since the Unix epoch")


@dataclass(frozen=True, slots=True)
class Decoded:
    kind: Kind
    placement: Placement
    batch: SampleBatch


def encode_payload(kind: Kind, place: Placement, batch: SampleBatch) -> bytes:
    """Serialise with C-level ``tolist`` + ``json.dumps``; Bad cells and non-finite floats become null.

    The common message (a few rows, all Good, all finite) is built from plain lists: for small
    columns a numpy call per tag costs more than the list it inspects. A non-finite float in a
    usable cell makes a column's sum non-finite, and only then are the columns checked with
    numpy (such a cell is marked Bad). orjson writes the JSON; numbers too large for it (a
    counter beyond 64 bits) fall back to ``json``.
    """
    values: dict[str, list[Any]] = {}
    quality: dict[str, list[int]] = {}
    codes = batch.quality
    seen_codes: Any = None  # a driver shares one read-only all-Good row among its healthy tags:
    q: list[int] = []  # its list is made once per message, not once per tag
    flagged = False
    for tag, arr in batch.values.items():
        col = arr.tolist()
        code_arr = codes[tag]
        if code_arr is not seen_codes:
            seen_codes, q = code_arr, code_arr.tolist()
            flagged = any(q)
        if flagged:
            for i, code in enumerate(q):
                if code >= Quality.BAD:
                    col[i] = None
            quality[tag] = q
            if arr.dtype.kind == "f" and not math.isfinite(sum(v for v in col if v is not None)):
                return _dump(kind, place, batch, *_checked_columns(batch))
        elif arr.dtype.kind == "f" and not math.isfinite(sum(col)):  # NaN/±Inf somewhere (or a huge sum)
            return _dump(kind, place, batch, *_checked_columns(batch))
        values[tag] = col
    return _dump(kind, place, batch, values, quality)


def _checked_columns(batch: SampleBatch) -> tuple[dict[str, list[Any]], dict[str, list[int]]]:
    values: dict[str, list[Any]] = {}
    quality: dict[str, list[int]] = {}
    for tag, arr in batch.values.items():
        q = batch.quality[tag]
        bad = q >= Quality.BAD
        if arr.dtype.kind == "f":
            nonfinite = ~np.isfinite(arr)
            if nonfinite.any():
                q = np.where(nonfinite & ~bad, np.uint8(Quality.BAD), q)
                bad = bad | nonfinite
        col = arr.tolist()
        for i in np.flatnonzero(bad).tolist():
            col[i] = None
        values[tag] = col
        if q.any():
            quality[tag] = q.tolist()
    return values, quality


def _dump(
    kind: Kind,
    place: Placement,
    batch: SampleBatch,
    values: dict[str, list[Any]],
    quality: dict[str, list[int]],
) -> bytes:
    doc: dict[str, Any] = {
        "v": 1,
        "kind": kind,
        "site": place.site,
        "area": place.area,
        "line": place.line,
        "asset": place.asset,
    }
    if kind == "raw":
        doc["device"] = batch.device
    else:
        doc["window"] = place.window
    doc["ts"] = batch.ts.tolist()
    doc["values"] = values
    if quality:
        doc["quality"] = quality
        status = {t: c.tolist() for t, c in batch.status.items() if t in quality and c.any()}
        if status:  # only where something is not Good: nothing to do on the common path
            doc["status"] = status
    try:
        return orjson.dumps(doc)
    except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits
        return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()


def encode_status(state: str, agent: str, ts_ns: int, **details: Any) -> bytes:
    return json.dumps({"v": 1, "state": state, "agent": agent, "ts": ts_ns, **details}).encode()


def _column(tag: str, raw: list[float | int | None], bad: np.ndarray) -> np.ndarray:
    nulls = [i for i, v in enumerate(raw) if v is None] if None in raw else []
    if nulls:
        if not bad[nulls].all():
            raise PayloadError(f"tag {tag!r}: null value with Good/Uncertain quality")
        filled = [0 if v is None else v for v in raw]
        arr = np.asarray(filled)
    else:
        arr = np.asarray(raw)
    if arr.dtype == object or arr.dtype.kind not in "fiu":
        raise PayloadError(f"tag {tag!r}: values must be numbers or null")
    if arr.dtype.kind == "f" and nulls:
        arr[nulls] = np.nan
    return arr


def decode_payload(data: bytes, *, max_bytes: int = 16 * 2**20) -> Decoded:
    """Validate and convert one message; every failure is a PayloadError saying what is wrong."""
    if len(data) > max_bytes:
        raise PayloadError(f"payload of {len(data)} bytes exceeds max_message_bytes={max_bytes}")
    try:
        msg = UnsPayload.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "<root>"
        raise PayloadError(f"{exc.error_count()} schema error(s), first at {where}: {first['msg']}") from None
    n = len(msg.ts)
    if msg.kind == "raw" and msg.device is None:
        raise PayloadError("raw message without 'device'")
    if msg.kind == "kpi" and not msg.window:
        raise PayloadError("kpi message without 'window'")
    unknown = (msg.quality.keys() | msg.status.keys()) - msg.values.keys()
    if unknown:
        raise PayloadError(f"quality or status given for tags without values: {sorted(unknown)}")
    ts = np.asarray(msg.ts, dtype=np.int64) if n else np.empty(0, np.int64)
    values: dict[str, np.ndarray] = {}
    quality: dict[str, np.ndarray] = {}
    status: dict[str, np.ndarray] = {}
    for tag, col in msg.values.items():
        if len(col) != n:
            raise PayloadError(f"tag {tag!r} has {len(col)} values for {n} timestamps")
        qlist = msg.quality.get(tag)
        if qlist is not None and len(qlist) != n:
            raise PayloadError(f"tag {tag!r} has {len(qlist)} quality codes for {n} timestamps")
        q = np.asarray(qlist, dtype=np.uint8) if qlist is not None else np.zeros(n, np.uint8)
        values[tag] = _column(tag, col, q >= Quality.BAD) if n else np.empty(0)
        quality[tag] = q
        codes = msg.status.get(tag)
        if codes is not None:
            if len(codes) != n:
                raise PayloadError(f"tag {tag!r} has {len(codes)} status codes for {n} timestamps")
            status[tag] = np.asarray(codes, dtype=np.uint32)
    place = Placement(site=msg.site, area=msg.area, line=msg.line, asset=msg.asset, window=msg.window)
    device = msg.device if msg.kind == "raw" and msg.device else msg.asset
    batch = SampleBatch(device=device, ts=ts, values=values, quality=quality, status=status)
    return Decoded(msg.kind, place, batch)


def schema_documents() -> dict[str, dict[str, Any]]:
    """The JSON Schema files shipped in ``edge_agent/schemas/``, by file name."""
    out = {}
    for name, model in ((UNS_SCHEMA_FILE, UnsPayload), (STATUS_SCHEMA_FILE, StatusPayload)):
        doc = model.model_json_schema()
        doc["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        doc["$id"] = f"https://edge-agent.invalid/schemas/{name}"
        out[name] = doc
    return out

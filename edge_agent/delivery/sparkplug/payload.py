"""Protobuf payloads (the specification's sparkplug_b.proto): births, data and deaths.

Values go in the field the datatype names; signed integers are stored two's complement
in the unsigned ``int_value``/``long_value`` as the specification requires. Bad and
non-finite samples are sent as ``is_null`` with quality 0; Missing samples are omitted.
"""

from __future__ import annotations

__all__ = [
    "BDSEQ",
    "REBIRTH",
    "birth_metric",
    "data_payload",
    "death_payload",
    "is_rebirth_request",
    "new_payload",
]

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from edge_agent.batch import Quality
from edge_agent.delivery.record import Record
from edge_agent.delivery.sparkplug import sparkplug_b_pb2 as pb
from edge_agent.delivery.sparkplug.metrics import (
    QUALITY_CODES,
    QUALITY_PROPERTY,
    UNIT_PROPERTY,
    MetricDef,
    metric_name,
)

BDSEQ = "bdSeq"
REBIRTH = "Node Control/Rebirth"

_NARROW_INTS = {pb.Int8, pb.Int16, pb.Int32, pb.UInt8, pb.UInt16, pb.UInt32}
_WIDE_INTS = {pb.Int64, pb.UInt64}


def new_payload(seq: int | None, ts_ms: int | None = None) -> pb.Payload:
    p = pb.Payload(timestamp=ts_ms if ts_ms is not None else time.time_ns() // 1_000_000)
    if seq is not None:
        p.seq = seq
    return p


def _field(datatype: int) -> tuple[str, Callable[[Any], Any]]:
    """The value field a datatype uses and the conversion into it (signed ints: two's complement)."""
    if datatype in _NARROW_INTS:
        return "int_value", lambda v: int(v) & 0xFFFFFFFF
    if datatype in _WIDE_INTS:
        return "long_value", lambda v: int(v) & 0xFFFFFFFFFFFFFFFF
    if datatype == pb.Float:
        return "float_value", float
    if datatype == pb.Double:
        return "double_value", float
    if datatype == pb.Boolean:
        return "boolean_value", bool
    if datatype == pb.String:
        return "string_value", str
    raise ValueError(f"datatype {datatype} is not supported")


def _set_value(m: pb.Payload.Metric, datatype: int, value: float | int | bool | str) -> None:
    field, conv = _field(datatype)
    setattr(m, field, conv(value))


def _quality_set(quality: int) -> pb.Payload.PropertySet:
    ps = pb.Payload.PropertySet(keys=[QUALITY_PROPERTY])
    ps.values.add(type=pb.Int32, int_value=QUALITY_CODES[Quality(quality)])
    return ps


#: One prebuilt property set per quality, copied into each metric (1.7x faster than building it).
_QUALITY_SETS = {int(q): _quality_set(q) for q in QUALITY_CODES}


def _quality(m: pb.Payload.Metric, quality: int) -> None:
    m.properties.CopyFrom(_QUALITY_SETS[quality])


def birth_metric(p: pb.Payload, d: MetricDef, last: tuple[int, float | int, int] | None, ts_ms: int) -> None:
    """Full definition: name, alias, datatype, unit and the last known value (null if none yet)."""
    m = p.metrics.add(name=d.name, alias=d.alias, datatype=d.datatype)
    ts, value, quality = last if last is not None else (ts_ms, 0, int(Quality.BAD))
    m.timestamp = ts
    if quality >= Quality.BAD:
        m.is_null = True
    else:
        _set_value(m, d.datatype, value)
    _quality(m, quality)
    m.properties.keys.append(UNIT_PROPERTY)
    m.properties.values.add(type=pb.String, string_value=d.unit)


def data_payload(
    rec: Record, defs: Mapping[str, MetricDef], seq: int, last: dict[int, tuple[int, float | int, int]]
) -> pb.Payload:
    """One DDATA for a whole buffered batch: every row of every tag by alias, with its timestamp."""
    p = new_payload(seq)
    b = rec.batch
    ts_ms = (b.ts // 1_000_000).tolist()
    for tag, arr in b.values.items():
        d = defs[metric_name(rec.kind, b.device, rec.placement.window, tag)]
        q = b.quality[tag]
        if arr.dtype.kind == "f":
            q = np.where(~np.isfinite(arr) & (q < Quality.BAD), np.uint8(Quality.BAD), q)
        field, conv = _field(d.datatype)
        add, alias = p.metrics.add, d.alias
        for t, v, qi in zip(ts_ms, arr.tolist(), q.tolist(), strict=True):
            if qi == Quality.MISSING:
                continue
            if qi >= Quality.BAD:
                m = add(alias=alias, timestamp=t, is_null=True)
            else:
                m = add(alias=alias, timestamp=t)
                setattr(m, field, conv(v))
            m.properties.CopyFrom(_QUALITY_SETS[qi])
            last[alias] = (t, v, qi)
    return p


def death_payload(seq: int | None, bd_seq: int | None = None) -> pb.Payload:
    """NDEATH (``bd_seq``, no seq) or DDEATH (seq, no metrics)."""
    p = new_payload(seq)
    if bd_seq is not None:
        p.metrics.add(name=BDSEQ, datatype=pb.Int64, long_value=bd_seq)
    return p


def is_rebirth_request(data: bytes) -> bool:
    """True if an NCMD payload sets ``Node Control/Rebirth`` to true; garbage is not a request."""
    try:
        p = pb.Payload.FromString(data)
    except Exception:  # protobuf raises DecodeError, or RuntimeWarning-derived errors on junk
        return False
    return any(m.name == REBIRTH and m.boolean_value for m in p.metrics)

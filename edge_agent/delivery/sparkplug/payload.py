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
from collections.abc import Mapping

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


def _set_value(m: pb.Payload.Metric, datatype: int, value: float | int | bool | str) -> None:
    if datatype in _NARROW_INTS:
        m.int_value = int(value) & 0xFFFFFFFF
    elif datatype in _WIDE_INTS:
        m.long_value = int(value) & 0xFFFFFFFFFFFFFFFF
    elif datatype == pb.Float:
        m.float_value = float(value)
    elif datatype == pb.Double:
        m.double_value = float(value)
    elif datatype == pb.Boolean:
        m.boolean_value = bool(value)
    elif datatype == pb.String:
        m.string_value = str(value)
    else:
        raise ValueError(f"metric {m.name or m.alias!r}: datatype {datatype} is not supported")


def _quality(m: pb.Payload.Metric, quality: int) -> None:
    m.properties.keys.append(QUALITY_PROPERTY)
    m.properties.values.add(type=pb.Int32, int_value=QUALITY_CODES[Quality(quality)])


def birth_metric(p: pb.Payload, d: MetricDef, last: tuple[int, float | int, int] | None, ts_ms: int) -> None:
    """Full definition: name, alias, datatype, unit and the last known value (null if none yet)."""
    m = p.metrics.add(name=d.name, alias=d.alias, datatype=d.datatype)
    m.properties.keys.append(UNIT_PROPERTY)
    m.properties.values.add(type=pb.String, string_value=d.unit)
    if last is None:
        m.timestamp = ts_ms
        m.is_null = True
        _quality(m, Quality.BAD)
        return
    m.timestamp, value, quality = last
    if quality >= Quality.BAD:
        m.is_null = True
    else:
        _set_value(m, d.datatype, value)
    _quality(m, quality)


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
        quality = q.tolist()
        values = arr.tolist()
        for i, t in enumerate(ts_ms):
            qi = quality[i]
            if qi == Quality.MISSING:
                continue
            m = p.metrics.add(alias=d.alias, timestamp=t)
            if qi >= Quality.BAD:
                m.is_null = True
            else:
                _set_value(m, d.datatype, values[i])
            _quality(m, qi)
            last[d.alias] = (t, values[i], qi)
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

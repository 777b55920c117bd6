"""How edge-agent samples become Sparkplug metrics: names, datatypes, units and quality codes.

Raw tags are ``raw/<device>/<tag>`` and KPIs ``kpi/<window>/<kpi>`` (``/`` makes folders in
SCADA tag browsers and keeps two devices' equally named tags apart on one asset). Quality
travels as the ``Quality`` property with OPC DA codes (192 Good, 64 Uncertain, 0 Bad) and
units as ``engUnit``: the property names Sparkplug hosts such as Ignition already understand.
"""

from __future__ import annotations

__all__ = [
    "QUALITY_CODES",
    "QUALITY_PROPERTY",
    "UNIT_PROPERTY",
    "MetricDef",
    "MetricTable",
    "datatype_of",
    "kpi_unit",
    "metric_name",
]

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from edge_agent.batch import Quality
from edge_agent.delivery.record import Kind, Record
from edge_agent.delivery.sparkplug import sparkplug_b_pb2 as pb

QUALITY_PROPERTY = "Quality"
UNIT_PROPERTY = "engUnit"
#: edge-agent quality → OPC DA quality code (Missing samples are not published at all).
QUALITY_CODES = {Quality.GOOD: 192, Quality.UNCERTAIN: 64, Quality.BAD: 0}

_INT_TYPES = {
    ("i", 1): pb.Int8,
    ("i", 2): pb.Int16,
    ("i", 4): pb.Int32,
    ("i", 8): pb.Int64,
    ("u", 1): pb.UInt8,
    ("u", 2): pb.UInt16,
    ("u", 4): pb.UInt32,
    ("u", 8): pb.UInt64,
}

#: KPI name suffix → engineering unit (the names analytics/kpis.py gives its outputs).
_KPI_SUFFIX_UNITS = (
    ("_kwh_per_good_part", "kWh"),
    ("_kwh_per_part", "kWh"),
    ("_kw_per_m3min", "kW/(m3/min)"),
    ("_kwh", "kWh"),
    ("_kw", "kW"),
    ("_kg", "kg"),
    ("_s", "s"),
    ("_m3", "m3"),
    ("_m3min", "m3/min"),
)


def datatype_of(arr: np.ndarray) -> int:
    """Sparkplug datatype for a column: floats stay Double/Float, integer counters stay exact."""
    kind, size = arr.dtype.kind, arr.dtype.itemsize
    if kind == "f":
        return int(pb.Float if size == 4 else pb.Double)
    if kind == "b":
        return int(pb.Boolean)
    try:
        return int(_INT_TYPES[(kind, size)])
    except KeyError:
        raise ValueError(f"column of dtype {arr.dtype} has no Sparkplug datatype; expected numbers") from None


def kpi_unit(name: str) -> str:
    """Engineering unit of a KPI from its name's suffix; '1' for ratios and counts."""
    for suffix, unit in _KPI_SUFFIX_UNITS:
        if name.endswith(suffix):
            return unit
    return "1"


def metric_name(kind: Kind, device: str, window: str | None, tag: str) -> str:
    return f"raw/{device}/{tag}" if kind == "raw" else f"kpi/{window}/{tag}"


@dataclass(frozen=True, slots=True)
class MetricDef:
    name: str
    alias: int
    datatype: int
    unit: str


class MetricTable:
    """Aliases unique across the edge node, stable for the process's life (so across rebirths)."""

    def __init__(self, units: Mapping[tuple[str, str], str]) -> None:
        self._units = units  # (device, tag) → unit of raw tags, from the config
        self._by_device: dict[str, dict[str, MetricDef]] = {}
        self._next_alias = 1

    def device_metrics(self, device: str) -> dict[str, MetricDef]:
        return self._by_device.setdefault(device, {})

    def learn(self, device: str, rec: Record) -> bool:
        """Register the record's columns under ``device``; True if any metric is new (needs a DBIRTH)."""
        known = self.device_metrics(device)
        new = False
        for tag, arr in rec.batch.values.items():
            name = metric_name(rec.kind, rec.batch.device, rec.placement.window, tag)
            dtype = datatype_of(arr)
            old = known.get(name)
            if old is not None and old.datatype == dtype:
                continue
            unit = self._units.get((rec.batch.device, tag), "1") if rec.kind == "raw" else kpi_unit(tag)
            alias = old.alias if old is not None else self._next_alias
            if old is None:
                self._next_alias += 1
            known[name] = MetricDef(name, alias, dtype, unit)
            new = True
        return new

    def devices(self) -> list[str]:
        return [d for d, m in self._by_device.items() if m]

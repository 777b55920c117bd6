"""Channels: one measured quantity (energy, production, temperature, ...) as a time series.

Sources (CSV, InfluxDB) all produce channels, so resampling and modelling never care where
the data came from. Timestamps are normalised to interval *starts* in UTC nanoseconds.
"""

from __future__ import annotations

__all__ = [
    "ACTIVITY_ROLES",
    "INDICATOR_ROLES",
    "LINEAR_ROLES",
    "MODEL_ROLES",
    "Channel",
    "LoadedData",
    "Role",
    "channel_from_timestamps",
    "infer_interval_ns",
]

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import tzinfo
from enum import StrEnum

import numpy as np

from edge_agent.evaluation._arrays import FloatArray, IntArray
from edge_agent.evaluation._errors import EvaluationError


class Role(StrEnum):
    """What a channel means to the evaluation."""

    ENERGY = "energy"
    PRODUCTION = "production"
    OPERATING_HOURS = "operating_hours"
    TEMPERATURE = "temperature"
    GOOD_PARTS = "good_parts"
    SCRAP = "scrap"
    IDLE_ENERGY = "idle_energy"
    #: Hours switched on without producing (idle + setup + fault; the agent's ``time_*_s``): an
    #: optional driver for a machine left idling overnight, which no production figure explains.
    #: Only valid when the measure leaves that time alone (auto-standby would hide its savings).
    IDLE_HOURS = "idle_hours"

    @property
    def extensive(self) -> bool:
        """Extensive quantities add up over time (kWh, parts, hours); temperature averages."""
        return self is not Role.TEMPERATURE

    @property
    def unit(self) -> str:
        return _UNITS[self]

    @property
    def label(self) -> str:
        return _LABELS[self]


_UNITS = {
    Role.ENERGY: "kWh",
    Role.PRODUCTION: "units",
    Role.OPERATING_HOURS: "h",
    Role.TEMPERATURE: "°C",
    Role.GOOD_PARTS: "parts",
    Role.SCRAP: "parts",
    Role.IDLE_ENERGY: "kWh",
    Role.IDLE_HOURS: "h",
}
_LABELS = {
    Role.ENERGY: "energy",
    Role.PRODUCTION: "production",
    Role.OPERATING_HOURS: "operating hours",
    Role.TEMPERATURE: "outdoor temperature",
    Role.GOOD_PARTS: "good parts",
    Role.SCRAP: "scrap",
    Role.IDLE_ENERGY: "idle energy",
    Role.IDLE_HOURS: "idle hours",
}

#: Relevant variables a baseline model may use (ISO 50006).
MODEL_ROLES: tuple[Role, ...] = (Role.PRODUCTION, Role.OPERATING_HOURS, Role.IDLE_HOURS, Role.TEMPERATURE)
#: Linear drivers, in the order a model lists them.
LINEAR_ROLES: tuple[Role, ...] = (Role.PRODUCTION, Role.OPERATING_HOURS, Role.IDLE_HOURS)
#: Drivers that say whether a bucket is a working one (idle hours do not: a machine left idling
#: on Friday night idles into an idle Saturday).
ACTIVITY_ROLES: tuple[Role, ...] = (Role.PRODUCTION, Role.OPERATING_HOURS)
#: Quantities only used for production-normalised indicators, never for savings.
INDICATOR_ROLES: tuple[Role, ...] = (Role.GOOD_PARTS, Role.SCRAP, Role.IDLE_ENERGY)


@dataclass(frozen=True, slots=True)
class Channel:
    """Samples of one quantity: ``values[i]`` covers ``[start_ns[i], start_ns[i] + interval_ns)``.

    For extensive roles a value is the amount within the interval (kWh in 15 min); for
    temperature it is the interval's mean. NaN marks a missing value.
    """

    role: Role
    source: str
    start_ns: IntArray
    values: FloatArray
    interval_ns: int

    def __post_init__(self) -> None:
        if self.start_ns.shape != self.values.shape or self.start_ns.ndim != 1:
            raise ValueError(f"{self.source}: timestamps and values differ in length")
        if self.interval_ns <= 0:
            raise ValueError(f"{self.source}: interval must be positive")
        if self.start_ns.size > 1 and not bool(np.all(np.diff(self.start_ns) > 0)):
            raise ValueError(f"{self.source}: timestamps must be strictly increasing")


@dataclass(frozen=True, slots=True)
class LoadedData:
    """Everything a source delivered, plus the time zone its timestamps were written in."""

    channels: Mapping[Role, Channel]
    timezone: tzinfo
    description: str


def infer_interval_ns(ts_ns: IntArray, source: str) -> int:
    """The sampling interval: the median spacing, robust to gaps (missing rows)."""
    if ts_ns.size < 2:
        raise EvaluationError(
            f"{source}: only {ts_ns.size} timestamp(s); at least two are needed to tell the "
            "sampling interval. Provide more data or pass --interval SECONDS."
        )
    return int(np.median(np.diff(ts_ns)))


def channel_from_timestamps(
    role: Role,
    source: str,
    ts_ns: IntArray,
    values: FloatArray,
    *,
    timestamp_at: str,
    interval_ns: int | None,
) -> Channel:
    """Sort, reject duplicate timestamps, infer the interval and shift to interval starts."""
    order = np.argsort(ts_ns, kind="stable")
    ts = ts_ns[order]
    vals = values[order]
    dup = np.flatnonzero(np.diff(ts) == 0)
    if dup.size:
        when = np.datetime64(int(ts[dup[0]]), "ns")
        raise EvaluationError(
            f"{source}: timestamp {when}Z appears more than once ({dup.size} duplicate(s)). "
            "Each interval must appear once; for InfluxDB add --tag filters so only one series "
            "matches, for CSV remove the repeated rows."
        )
    step = interval_ns if interval_ns is not None else infer_interval_ns(ts, source)
    if timestamp_at == "end":
        ts = ts - step
    elif timestamp_at != "start":
        raise ValueError(f"timestamp_at must be 'start' or 'end', not {timestamp_at!r}")
    return Channel(role=role, source=source, start_ns=ts, values=vals, interval_ns=step)

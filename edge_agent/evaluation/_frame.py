"""Frame: the usable buckets of one period, i.e. what a baseline model sees."""

from __future__ import annotations

__all__ = ["Frame"]

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from edge_agent.evaluation._arrays import BoolArray, FloatArray, IntArray
from edge_agent.evaluation._channels import Role
from edge_agent.evaluation._degree_days import DegreeDayBasis

_DAY_NS = 86_400 * 1_000_000_000


@dataclass(frozen=True)
class Frame:
    """Per-bucket energy and relevant variables, in time order.

    ``variables`` holds production / operating hours as bucket totals and temperature as
    the bucket mean; ``degree_days`` keeps the temperature samples behind that mean so
    change-point terms can be computed exactly for any balance point.
    """

    start_ns: IntArray
    end_ns: IntArray
    energy: FloatArray
    variables: Mapping[Role, FloatArray] = field(default_factory=dict)
    hour_of_week: IntArray | None = None
    degree_days: DegreeDayBasis | None = None
    #: Local weekday of each bucket's start (0 = Monday) for hourly and daily buckets: the
    #: day type a plant's fixed load follows (a Saturday shift is shorter than a weekday's).
    weekday: IntArray | None = None

    def __post_init__(self) -> None:
        n = self.energy.shape[0]
        if self.start_ns.shape != (n,) or self.end_ns.shape != (n,):
            raise ValueError("frame: start/end and energy differ in length")
        for role, v in self.variables.items():
            if v.shape != (n,):
                raise ValueError(f"frame: variable {role} has {v.shape[0]} values for {n} buckets")
        if self.degree_days is not None and len(self.degree_days) != n:
            raise ValueError("frame: degree-day basis and energy differ in length")

    def __len__(self) -> int:
        return int(self.energy.shape[0])

    @property
    def adjacent(self) -> BoolArray:
        """True where a bucket directly follows the previous one (no dropped bucket between)."""
        adj = np.zeros(len(self), dtype=np.bool_)
        adj[1:] = self.start_ns[1:] == self.end_ns[:-1]
        return adj

    def take(self, rows: IntArray) -> Frame:
        """A frame of the given buckets (e.g. a cross-validation fold)."""
        return Frame(
            start_ns=self.start_ns[rows],
            end_ns=self.end_ns[rows],
            energy=self.energy[rows],
            variables={r: v[rows] for r, v in self.variables.items()},
            hour_of_week=None if self.hour_of_week is None else self.hour_of_week[rows],
            degree_days=None if self.degree_days is None else self.degree_days.take(rows),
            weekday=None if self.weekday is None else self.weekday[rows],
        )

    @property
    def weekend(self) -> BoolArray | None:
        """True for buckets starting on a Saturday or Sunday (local), when weekdays are known."""
        return None if self.weekday is None else np.asarray(self.weekday >= 5, dtype=np.bool_)

    @classmethod
    def from_arrays(
        cls,
        energy: FloatArray,
        *,
        production: FloatArray | None = None,
        operating_hours: FloatArray | None = None,
        idle_hours: FloatArray | None = None,
        temperature: FloatArray | None = None,
        start_ns: IntArray | None = None,
        bucket_ns: int = _DAY_NS,
        hour_of_week: IntArray | None = None,
        weekday: IntArray | None = None,
    ) -> Frame:
        """A frame from plain per-bucket arrays (one mean temperature per bucket)."""
        n = energy.shape[0]
        start = np.arange(n, dtype=np.int64) * bucket_ns if start_ns is None else start_ns
        variables: dict[Role, FloatArray] = {}
        if production is not None:
            variables[Role.PRODUCTION] = np.asarray(production, dtype=np.float64)
        if operating_hours is not None:
            variables[Role.OPERATING_HOURS] = np.asarray(operating_hours, dtype=np.float64)
        if idle_hours is not None:
            variables[Role.IDLE_HOURS] = np.asarray(idle_hours, dtype=np.float64)
        basis = None
        if temperature is not None:
            t = np.asarray(temperature, dtype=np.float64)
            variables[Role.TEMPERATURE] = t
            basis = DegreeDayBasis.one_per_bucket(t, bucket_ns / _DAY_NS)
        return cls(
            start_ns=start,
            end_ns=start + bucket_ns,
            energy=np.asarray(energy, dtype=np.float64),
            variables=variables,
            hour_of_week=hour_of_week,
            degree_days=basis,
            weekday=weekday,
        )

"""Resampling channels into a period's buckets, with explicit missing-data accounting.

Each bucket's coverage is observed samples / expected samples. Buckets whose energy or any
model variable falls below the coverage threshold are dropped (and counted per reason).
Kept buckets with small gaps are scaled up to the full bucket (extensive quantities) so
energy and production stay comparable; temperature is averaged over what was observed.
"""

from __future__ import annotations

__all__ = ["BucketedChannel", "PeriodData", "resample_period"]

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import tzinfo

import numpy as np

from edge_agent.evaluation._arrays import BoolArray, FloatArray, IntArray
from edge_agent.evaluation._channels import MODEL_ROLES, Channel, Role
from edge_agent.evaluation._degree_days import DegreeDayBasis
from edge_agent.evaluation._errors import EvaluationError
from edge_agent.evaluation._frame import Frame
from edge_agent.evaluation._timebase import Period, Resolution, bucket_edges, hour_of_week

_DAY_NS = 86_400 * 1_000_000_000


@dataclass(frozen=True, slots=True)
class BucketedChannel:
    """One channel over a period's buckets."""

    role: Role
    source: str
    values: FloatArray  # full-bucket totals (extensive) or means (temperature); NaN if empty
    coverage: FloatArray  # observed / expected samples, capped at 1
    observed: IntArray
    expected: FloatArray
    raw_total: float  # plain sum of the valid samples in the period, no scaling


@dataclass(frozen=True)
class PeriodData:
    """A period cut into buckets: per-channel values and coverage, and which buckets are usable."""

    name: str
    period: Period
    resolution: Resolution
    edges: IntArray
    channels: Mapping[Role, BucketedChannel]
    kept: BoolArray
    drop_counts: Mapping[Role, int]  # buckets whose coverage of that role was too low
    threshold: float
    frame: Frame  # the kept buckets, ready for modelling

    @property
    def n_buckets(self) -> int:
        return int(self.kept.shape[0])

    @property
    def n_kept(self) -> int:
        return int(self.kept.sum())

    @property
    def data_coverage(self) -> float:
        """Share of the period's expected energy samples that sit in usable buckets."""
        e = self.channels[Role.ENERGY]
        expected = float(e.expected.sum())
        return float(e.observed[self.kept].sum()) / expected if expected > 0 else 0.0

    @property
    def raw_coverage(self) -> float:
        """Share of the period's expected energy samples present at all."""
        e = self.channels[Role.ENERGY]
        return min(float(e.observed.sum()) / float(e.expected.sum()), 1.0)


def _bucket_channel(ch: Channel, edges: IntArray) -> tuple[BucketedChannel, IntArray, FloatArray]:
    nb = edges.shape[0] - 1
    inside = (ch.start_ns >= edges[0]) & (ch.start_ns < edges[-1])
    vals = ch.values[inside]
    bucket = np.searchsorted(edges, ch.start_ns[inside], side="right") - 1
    valid = np.isfinite(vals)
    bucket, vals = bucket[valid], vals[valid]
    observed = np.bincount(bucket, minlength=nb).astype(np.int64)
    sums = np.bincount(bucket, weights=vals, minlength=nb)
    expected = np.diff(edges) / ch.interval_ns
    with np.errstate(divide="ignore", invalid="ignore"):
        if ch.role.extensive:
            values = np.where(observed > 0, sums * np.maximum(expected / observed, 1.0), np.nan)
        else:
            values = np.where(observed > 0, sums / observed, np.nan)
    coverage = np.minimum(observed / expected, 1.0)
    out = BucketedChannel(
        role=ch.role,
        source=ch.source,
        values=values.astype(np.float64),
        coverage=coverage.astype(np.float64),
        observed=observed,
        expected=expected.astype(np.float64),
        raw_total=float(vals.sum()),
    )
    return out, bucket.astype(np.int64), vals.astype(np.float64)


def resample_period(
    name: str,
    period: Period,
    resolution: Resolution,
    tz: tzinfo,
    channels: Mapping[Role, Channel],
    *,
    threshold: float = 0.9,
) -> PeriodData:
    """Bucket every channel over ``period``; keep buckets where energy and model variables are covered."""
    if Role.ENERGY not in channels:
        raise EvaluationError("no energy channel: pass --energy with the energy column or field")
    if not 0.0 < threshold <= 1.0:
        raise EvaluationError(f"--coverage-threshold {threshold}: expected a fraction in (0, 1]")
    edges = bucket_edges(period, resolution, tz)
    shortest = int(np.diff(edges).min())
    bucketed: dict[Role, BucketedChannel] = {}
    temp_samples: tuple[IntArray, FloatArray] | None = None
    for role, ch in channels.items():
        if ch.interval_ns > shortest:
            raise EvaluationError(
                f"{ch.source}: one sample every {ch.interval_ns / 3.6e12:g} h is coarser than the "
                f"'{resolution}' buckets; use a coarser --resolution or provide finer data"
            )
        bucketed[role], bucket, vals = _bucket_channel(ch, edges)
        if role is Role.TEMPERATURE:
            temp_samples = (bucket, vals)
    gating = [Role.ENERGY, *(r for r in MODEL_ROLES if r in bucketed)]
    kept = np.ones(edges.shape[0] - 1, dtype=np.bool_)
    drop_counts: dict[Role, int] = {}
    for role in gating:
        ok = bucketed[role].coverage >= threshold
        drop_counts[role] = int((~ok).sum())
        kept &= ok
    frame = _frame(edges, kept, bucketed, temp_samples, tz, resolution)
    return PeriodData(
        name=name,
        period=period,
        resolution=resolution,
        edges=edges,
        channels=bucketed,
        kept=kept,
        drop_counts=drop_counts,
        threshold=threshold,
        frame=frame,
    )


def _frame(
    edges: IntArray,
    kept: BoolArray,
    bucketed: Mapping[Role, BucketedChannel],
    temp_samples: tuple[IntArray, FloatArray] | None,
    tz: tzinfo,
    resolution: Resolution,
) -> Frame:
    rows = np.flatnonzero(kept)
    start, end = edges[:-1][rows], edges[1:][rows]
    basis = None
    if temp_samples is not None:
        bucket, vals = temp_samples
        new_index = np.full(kept.shape[0], -1, dtype=np.int64)
        new_index[rows] = np.arange(rows.shape[0])
        sel = new_index[bucket] >= 0
        basis = DegreeDayBasis.from_samples(
            vals[sel], new_index[bucket[sel]], ((end - start) / _DAY_NS).astype(np.float64)
        )
    return Frame(
        start_ns=start,
        end_ns=end,
        energy=bucketed[Role.ENERGY].values[rows],
        variables={r: bucketed[r].values[rows] for r in MODEL_ROLES if r in bucketed},
        hour_of_week=hour_of_week(start, tz) if resolution is Resolution.HOUR else None,
        degree_days=basis,
        weekday=hour_of_week(start, tz) // 24 if resolution is not Resolution.WEEK else None,
    )

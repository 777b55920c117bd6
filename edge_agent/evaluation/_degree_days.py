"""Degree-days per bucket for many balance-point candidates at once.

Heating degree-days HDD(Tb) = duration × mean over the bucket's temperature samples of
max(Tb - T, 0), so a weekly bucket built from 15-minute temperatures gets the true sum of
degree-days rather than one computed from the weekly mean. All candidates are evaluated in
one (samples × candidates) array operation.
"""

from __future__ import annotations

__all__ = ["DegreeDayBasis"]

from dataclasses import dataclass

import numpy as np

from edge_agent.evaluation._arrays import FloatArray, IntArray


@dataclass(frozen=True, slots=True)
class DegreeDayBasis:
    """Temperature samples grouped by bucket (sorted, every bucket non-empty)."""

    temps: FloatArray  # (N,) °C, sorted by bucket
    starts: IntArray  # (n_buckets,) offset of each bucket's first sample in ``temps``
    counts: IntArray  # (n_buckets,) samples per bucket, all > 0
    duration_days: FloatArray  # (n_buckets,)

    @classmethod
    def from_samples(cls, temps: FloatArray, bucket: IntArray, duration_days: FloatArray) -> DegreeDayBasis:
        """``bucket[i]`` is the bucket of ``temps[i]``; every bucket needs one sample at least."""
        n = duration_days.shape[0]
        order = np.argsort(bucket, kind="stable")
        counts = np.bincount(bucket, minlength=n).astype(np.int64)
        if n and int(counts.min()) == 0:
            raise ValueError("every bucket needs at least one temperature sample")
        starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
        return cls(temps[order], starts, counts, duration_days.astype(np.float64))

    @classmethod
    def one_per_bucket(cls, temps: FloatArray, duration_days: float | FloatArray = 1.0) -> DegreeDayBasis:
        """One mean temperature per bucket, e.g. daily means for a daily model."""
        n = temps.shape[0]
        dur = np.broadcast_to(np.asarray(duration_days, dtype=np.float64), (n,)).copy()
        return cls(temps.astype(np.float64), np.arange(n, dtype=np.int64), np.ones(n, np.int64), dur)

    def __len__(self) -> int:
        return int(self.counts.shape[0])

    def _bucket_mean(self, per_sample: FloatArray) -> FloatArray:
        """Mean over each bucket's samples, along axis 0; (N, K) -> (n_buckets, K)."""
        sums = np.add.reduceat(per_sample, self.starts, axis=0)
        shape = (-1,) + (1,) * (per_sample.ndim - 1)
        return np.asarray(sums / self.counts.reshape(shape), dtype=np.float64)

    def _scaled(self, per_sample: FloatArray) -> FloatArray:
        m = self._bucket_mean(per_sample)
        return m * self.duration_days.reshape((-1,) + (1,) * (m.ndim - 1))

    def hdd(self, balance: FloatArray) -> FloatArray:
        """Heating degree-days, shape (n_buckets, n_candidates)."""
        return self._scaled(np.maximum(balance[None, :] - self.temps[:, None], 0.0))

    def cdd(self, balance: FloatArray) -> FloatArray:
        """Cooling degree-days, shape (n_buckets, n_candidates)."""
        return self._scaled(np.maximum(self.temps[:, None] - balance[None, :], 0.0))

    def dhdd(self, balance: float) -> FloatArray:
        """d HDD / d Tb: the share of time below the balance point, times the duration."""
        return self._scaled((self.temps < balance).astype(np.float64))

    def dcdd(self, balance: float) -> FloatArray:
        """d CDD / d Tc (negative: raising the balance point removes cooling degree-days)."""
        return -self._scaled((self.temps > balance).astype(np.float64))

    def take(self, rows: IntArray) -> DegreeDayBasis:
        """The basis of a subset of buckets, in the given order."""
        counts = self.counts[rows]
        starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
        idx = np.repeat(self.starts[rows] - starts, counts) + np.arange(int(counts.sum()))
        return DegreeDayBasis(self.temps[idx], starts, counts, self.duration_days[rows])

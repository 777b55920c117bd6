"""Group constants (intercept or time-of-week bins) absorbed by demeaning.

By Frisch–Waugh–Lovell, regressing group-demeaned y on group-demeaned X gives the same
slopes as a regression with one dummy column per group, without ever building the dense
n × 168 dummy matrix for hourly time-of-week models.
"""

from __future__ import annotations

__all__ = ["GroupAbsorber"]

from dataclasses import dataclass

import numpy as np

from edge_agent.evaluation._arrays import BoolArray, FloatArray, IntArray


@dataclass(frozen=True, slots=True)
class GroupAbsorber:
    """Maps rows to groups and computes per-group means with one sorted reduction."""

    labels: IntArray  # (G,) group label of each group, ascending
    index: IntArray  # (n,) group number of each row
    counts: FloatArray  # (G,)
    order: IntArray  # rows sorted by group
    starts: IntArray  # first position of each group in ``order``

    @classmethod
    def of(cls, groups: IntArray | None, n: int) -> GroupAbsorber:
        """One group per distinct label; ``None`` means a single intercept."""
        g = np.zeros(n, dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
        labels, index = np.unique(g, return_inverse=True)
        index = index.astype(np.int64)
        counts = np.bincount(index, minlength=labels.shape[0]).astype(np.float64)
        order = np.argsort(index, kind="stable").astype(np.int64)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
        return cls(labels.astype(np.int64), index, counts, order, starts)

    @property
    def n_groups(self) -> int:
        return int(self.labels.shape[0])

    def means(self, a: FloatArray) -> FloatArray:
        """Per-group means along axis 0: (n, ...) -> (G, ...)."""
        sums = np.add.reduceat(a[self.order], self.starts, axis=0)
        return np.asarray(sums / self.counts.reshape((-1,) + (1,) * (a.ndim - 1)), dtype=np.float64)

    def demean(self, a: FloatArray) -> FloatArray:
        """Subtract each row's group mean: the projection off the group dummies."""
        return np.asarray(a - self.means(a)[self.index], dtype=np.float64)

    def lookup(self, groups: IntArray | None, n: int) -> tuple[IntArray, BoolArray]:
        """Group numbers for new rows, and a mask of rows whose label was never seen."""
        if groups is None:
            return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.bool_)
        pos = np.clip(np.searchsorted(self.labels, groups), 0, self.n_groups - 1).astype(np.int64)
        return pos, np.asarray(self.labels[pos] != groups, dtype=np.bool_)

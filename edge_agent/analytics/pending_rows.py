"""Rows of one asset held back until its linger slot ends, stored column by column.

An update of :class:`~edge_agent.analytics.streaming.StreamingAnalytics` costs about a
millisecond whatever its row count (a few hundred small numpy calls), so feeding it one
poll at a time makes per-call overhead the whole cost. Holding an asset's rows for a linger
and booking them in one update removes it; KPIs of a window then appear up to one linger
after it closes.

Each asset's slot boundaries are shifted by its own offset, so the assets of a plant flush
spread evenly over the linger instead of all at once (a burst would stall the event loop
for the whole plant's analytics at every boundary).

Storage is one preallocated array per role for values and one for quality, grown by
doubling: no Python object per row or per poll.
"""

from __future__ import annotations

__all__ = ["PendingRows"]

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from edge_agent.batch import Quality

_INITIAL_ROWS = 8


class PendingRows:
    """Rows of one asset with fixed roles; :meth:`append` says when the slot is complete."""

    __slots__ = (
        "_dtypes",
        "_n",
        "_offset_ns",
        "_slot",
        "asset",
        "linger_ns",
        "quality",
        "roles",
        "ts",
        "values",
    )

    def __init__(
        self, asset: str, dtypes: Mapping[str, np.dtype[np.generic]], linger_ns: int, offset_ns: int = 0
    ) -> None:
        self.asset = asset
        self.roles = tuple(dtypes)
        self._dtypes = dict(dtypes)
        self.linger_ns = linger_ns
        self._offset_ns = offset_ns % linger_ns if linger_ns > 0 else 0
        self._n = 0
        self._slot = 0
        self.ts = np.empty(0, np.int64)
        self.values: dict[str, np.ndarray] = {r: np.empty(0, dt) for r, dt in self._dtypes.items()}
        self.quality: dict[str, npt.NDArray[np.uint8]] = {r: np.empty(0, np.uint8) for r in self.roles}

    def __len__(self) -> int:
        return self._n

    def append(
        self,
        ts: npt.NDArray[np.int64],
        signals: Mapping[str, np.ndarray],
        quality: Mapping[str, npt.NDArray[np.uint8]],
    ) -> bool:
        """Store rows (roles absent from ``signals`` are MISSING there).

        Returns True once the rows held reach past the end of the slot the oldest of them
        started, i.e. when it is time to :meth:`take` them. With no linger, always True.
        """
        k = ts.size
        if k == 0:
            return False
        self._check(signals, quality)
        n = self._n
        if n + k > self.ts.size:
            self._grow(n + k)
        self.ts[n : n + k] = ts
        for r in self.roles:
            v = signals.get(r)
            dst = self.values[r]
            if v is None:
                dst[n : n + k] = 0 if dst.dtype.kind in "iu" else np.nan  # never read: MISSING
                self.quality[r][n : n + k] = Quality.MISSING
                continue
            if dst.dtype.kind in "iu" and v.dtype.kind == "f":
                dst[n : n + k] = 0  # a Bad row of a counter (checked above): its value is never read
            else:
                dst[n : n + k] = v
            self.quality[r][n : n + k] = quality[r]
        if self.linger_ns <= 0:
            self._n = n + k
            return True
        if n == 0:
            self._slot = self._slot_of(int(ts.min()))
        self._n = n + k
        return self._slot_of(int(ts.max())) != self._slot

    def take(
        self,
    ) -> tuple[npt.NDArray[np.int64], dict[str, np.ndarray], dict[str, npt.NDArray[np.uint8]]] | None:
        """The rows held (copies, in arrival order), and empty the buffer; None if empty."""
        n = self._n
        if n == 0:
            return None
        self._n = 0
        return (
            self.ts[:n].copy(),
            {r: v[:n].copy() for r, v in self.values.items()},
            {r: q[:n].copy() for r, q in self.quality.items()},
        )

    def _slot_of(self, t_ns: int) -> int:
        return (t_ns - self._offset_ns) // self.linger_ns

    def _grow(self, need: int) -> None:
        cap = max(_INITIAL_ROWS, 2 * self.ts.size)
        while cap < need:
            cap *= 2
        n = self._n

        def grown(a: np.ndarray, dtype: np.dtype[np.generic]) -> np.ndarray:
            out = np.empty(cap, dtype)
            out[:n] = a[:n]
            return out

        self.ts = grown(self.ts, np.dtype(np.int64))
        self.values = {r: grown(v, self._dtypes[r]) for r, v in self.values.items()}
        self.quality = {r: grown(q, np.dtype(np.uint8)) for r, q in self.quality.items()}

    def _check(self, signals: Mapping[str, np.ndarray], quality: Mapping[str, npt.NDArray[np.uint8]]) -> None:
        """Refuse what would be lost silently, before anything is stored."""
        for r, v in signals.items():
            dst = self._dtypes.get(r)
            if dst is None:
                raise ValueError(
                    f"asset {self.asset!r}: role {r!r} is not configured for this asset "
                    f"(configured: {', '.join(self.roles) or 'none'}); add the tag's role to the asset"
                )
            if dst.kind in "iu" and v.dtype.kind == "f":
                usable = quality[r] <= Quality.UNCERTAIN
                if usable.any():
                    raise ValueError(
                        f"asset {self.asset!r}: counter role {r!r} arrived as {v.dtype} with usable "
                        "samples; counters must arrive as raw integers so totals stay exact — decode "
                        "the register as an integer type (the scale is applied by analytics)"
                    )

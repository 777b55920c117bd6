"""Rows of one asset held back until its linger slot ends, booked in one update.

An update of :class:`~edge_agent.analytics.streaming.StreamingAnalytics` costs about a
millisecond whatever its row count (a few hundred small numpy calls), so feeding it one
poll at a time makes per-call overhead the whole cost. Holding an asset's rows for a linger
and booking them in one update removes it; KPIs of a window then appear up to one linger
after it closes.

Each asset's slot boundaries are shifted by its own offset, so the assets of a plant flush
spread evenly over the linger instead of all at once (a burst would stall the event loop
for the whole plant's analytics at every boundary).

Appending only keeps references to the poll's columns (a device round appends to hundreds
of assets, so per-append numpy work would be the cost); :meth:`take` concatenates them once
per slot. Columns are stored as they came: a PLC's state values (numbers or text) are
mapped to state codes by the caller on the concatenated column, once per slot.
"""

from __future__ import annotations

__all__ = ["PendingRows"]

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from edge_agent.batch import Quality

_Chunk = tuple[npt.NDArray[np.int64], Mapping[str, np.ndarray], Mapping[str, npt.NDArray[np.uint8]]]


class PendingRows:
    """Rows of one asset with fixed roles; :meth:`append` says when the slot is complete."""

    __slots__ = ("_chunks", "_dtypes", "_n", "_offset_ns", "_slot", "asset", "linger_ns", "roles")

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
        self._chunks: list[_Chunk] = []

    def __len__(self) -> int:
        return self._n

    def append(
        self,
        ts: npt.NDArray[np.int64],
        signals: Mapping[str, np.ndarray],
        quality: Mapping[str, npt.NDArray[np.uint8]],
    ) -> bool:
        """Store rows (roles absent from ``signals`` are MISSING there); the arrays are kept,
        not copied, so they must not change afterwards (a SampleBatch's never do).

        Returns True once the rows held reach past the end of the slot the oldest of them
        started, i.e. when it is time to :meth:`take` them. With no linger, always True.
        """
        k = ts.size
        if k == 0:
            return False
        self._check(signals, quality)
        n = self._n
        self._chunks.append((ts, signals, quality))
        self._n = n + k
        if self.linger_ns <= 0:
            return True
        if n == 0:
            self._slot = self._slot_of(int(ts.min()) if k > 1 else int(ts[0]))
        return self._slot_of(int(ts.max()) if k > 1 else int(ts[0])) != self._slot

    def take(
        self,
    ) -> tuple[npt.NDArray[np.int64], dict[str, np.ndarray], dict[str, npt.NDArray[np.uint8]]] | None:
        """The rows held (in arrival order), and empty the buffer; None if empty.

        Counter roles come back as their integer dtype (a Bad row's value as 0: never read),
        other roles as they came (the state column may be text), MISSING where a poll
        lacked the role.
        """
        if not self._chunks:
            return None
        rows = self._joined()
        self._chunks, self._n = [], 0
        return rows

    def __getstate__(self) -> tuple[None, dict[str, object]]:
        """Saved as one chunk: the analytics state is saved every few seconds, and a list of
        small per-poll arrays pickles many times slower than one array per role."""
        if len(self._chunks) > 1:
            self._chunks = [self._joined()]
        return None, {name: getattr(self, name) for name in self.__slots__}

    def _joined(
        self,
    ) -> tuple[npt.NDArray[np.int64], dict[str, np.ndarray], dict[str, npt.NDArray[np.uint8]]]:
        chunks = self._chunks
        ts = chunks[0][0] if len(chunks) == 1 else np.concatenate([c[0] for c in chunks])
        values: dict[str, np.ndarray] = {}
        quality: dict[str, npt.NDArray[np.uint8]] = {}
        for r in self.roles:
            dtype = self._dtypes[r]
            vs, qs = [], []
            for t, sig, q in chunks:
                v = sig.get(r)
                if v is None:
                    vs.append(np.zeros(t.size, dtype) if dtype.kind in "iu" else np.full(t.size, np.nan))
                    qs.append(np.full(t.size, Quality.MISSING, np.uint8))
                    continue
                if dtype.kind in "iu" and v.dtype.kind == "f":
                    v = np.zeros(t.size, dtype)  # a Bad row of a counter (checked on append): never read
                vs.append(v)
                qs.append(q[r])
            if len(vs) == 1:
                col = vs[0]
            elif len({v.dtype.kind in "OUS" for v in vs}) > 1:  # numbers and text: keep each cell
                col = np.concatenate([v.astype(object) for v in vs])
            else:
                col = np.concatenate(vs)
            if col.dtype.kind not in "OUS" and col.dtype != dtype:
                col = col.astype(dtype)  # counters exact integers, signals float64
            values[r] = col
            quality[r] = qs[0] if len(qs) == 1 else np.concatenate(qs)
        return ts, values, quality

    def _slot_of(self, t_ns: int) -> int:
        return (t_ns - self._offset_ns) // self.linger_ns

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

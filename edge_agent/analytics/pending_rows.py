"""Rows of one asset held back until its linger slot ends, booked in one update.

An update of :class:`~edge_agent.analytics.streaming.StreamingAnalytics` costs about a
millisecond whatever its row count (a few hundred small numpy calls), so feeding it one
poll at a time makes per-call overhead the whole cost. Holding an asset's rows for a linger
and booking them in one update removes it; KPIs of a window then appear up to one linger
after it closes.

Each asset's slot boundaries are shifted by its own offset, so the assets of a plant flush
spread evenly over the linger instead of all at once (a burst would stall the event loop
for the whole plant's analytics at every boundary).

Rows are written straight into one preallocated column per role and one quality matrix.
A one-row poll with every role (the usual case) is a handful of scalar stores: keeping each
poll's arrays and joining them later cost ~35 µs a join (a few numpy calls per role), and a
periodic state save forced one per asset. The columns are saved as one byte string. A
PLC's state values (numbers or text) are stored as they came and mapped to state codes by
the caller, once per slot.
"""

from __future__ import annotations

__all__ = ["PendingRows"]

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_agent.batch import Quality

_Rows = tuple[npt.NDArray[np.int64], dict[str, np.ndarray], dict[str, npt.NDArray[np.uint8]]]
_FIRST_CAPACITY = 8  # rows; doubled as needed, and sized to the last slot's rows after a take
_NUMBERS = [np.dtype(c) for c in "?bhilqBHILQefd"]
#: Value dtypes a column takes by a scalar store with the same result as an array copy
#: (which casts unsafely: a scalar store of a uint64 above 2**63 into int64 would raise).
_SCALAR_OK = {
    "f": frozenset(_NUMBERS),
    "i": frozenset(d for d in _NUMBERS if d.kind in "bi" or (d.kind == "u" and d.itemsize < 8)),
    "u": frozenset(d for d in _NUMBERS if d.kind in "bu"),
}


class PendingRows:
    """Rows of one asset with fixed roles; :meth:`append` says when the slot is complete."""

    __slots__ = (
        "_cap",
        "_cols",
        "_counters",
        "_dtypes",
        "_index",
        "_n",
        "_offset_ns",
        "_q",
        "_scalar_ok",
        "_slot",
        "_ts",
        "asset",
        "linger_ns",
        "roles",
    )

    def __init__(
        self, asset: str, dtypes: Mapping[str, np.dtype[np.generic]], linger_ns: int, offset_ns: int = 0
    ) -> None:
        self.asset = asset
        self.roles = tuple(dtypes)
        self._dtypes = tuple(dtypes.values())
        self._index = {r: j for j, r in enumerate(self.roles)}
        self._counters = tuple(r for r, d in dtypes.items() if d.kind in "iu")
        self.linger_ns = linger_ns
        self._offset_ns = offset_ns % linger_ns if linger_ns > 0 else 0
        self._n = 0  # rows held
        self._slot = 0
        self._cap = _FIRST_CAPACITY
        self._ts: npt.NDArray[np.int64] | None = None  # allocated on the first append of a slot
        self._cols: list[np.ndarray] = []
        self._q: npt.NDArray[np.uint8] = np.zeros((0, len(self.roles)), np.uint8)
        # per role: the value dtypes a scalar store takes (none while the column holds text)
        self._scalar_ok: list[frozenset[np.dtype[Any]]] = [frozenset() for _ in self.roles]

    def __len__(self) -> int:
        return self._n

    def append(
        self,
        ts: npt.NDArray[np.int64],
        signals: Mapping[str, np.ndarray],
        quality: Mapping[str, npt.NDArray[np.uint8]],
    ) -> bool:
        """Store rows (roles absent from ``signals`` are MISSING there); the arrays are copied.

        Returns True once the rows held reach past the end of the slot the oldest of them
        started, i.e. when it is time to :meth:`take` them. With no linger, always True.
        """
        k = ts.size
        if k == 0:
            return False
        self._check(signals, quality)
        n = self._n
        self._store(ts, signals, quality)
        if self.linger_ns <= 0:
            return True
        if n == 0:
            self._slot = self._slot_of(int(ts.min()) if k > 1 else int(ts[0]))
        return self._slot_of(int(ts.max()) if k > 1 else int(ts[0])) != self._slot

    def _store(
        self,
        ts: npt.NDArray[np.int64],
        signals: Mapping[str, np.ndarray],
        quality: Mapping[str, npt.NDArray[np.uint8]],
    ) -> None:
        """Write rows after the ones held, growing the columns as needed (no checks)."""
        n, k = self._n, ts.size
        if self._ts is None or n + k > self._ts.size:
            self._grow(n + k)
        assert self._ts is not None
        if k == 1 and len(signals) == len(self.roles):
            self._put_row(n, ts, signals, quality)
        else:
            self._ts[n : n + k] = ts
            for role, v in signals.items():
                j = self._index[role]
                self._put(j, n, v)
                self._q[n : n + k, j] = quality[role]
        self._n = n + k

    def _put_row(
        self,
        n: int,
        ts: npt.NDArray[np.int64],
        signals: Mapping[str, np.ndarray],
        quality: Mapping[str, npt.NDArray[np.uint8]],
    ) -> None:
        """One row with every role into row ``n``: scalar stores where they cast as an array
        copy would (the usual case), else :meth:`_put`."""
        assert self._ts is not None
        self._ts[n] = ts.item()
        q = self._q[n]
        cols, ok = self._cols, self._scalar_ok
        for j, role in enumerate(self.roles):
            v = signals[role]
            if v.dtype in ok[j]:
                cols[j][n] = v.item()  # a Python number stores faster than a numpy scalar
            else:
                self._put(j, n, v)
            q[j] = quality[role].item()

    def _put(self, j: int, at: int, v: np.ndarray) -> None:
        """Values of role ``j`` into its column from row ``at``, by array copy."""
        dtype = self._dtypes[j]
        kind = v.dtype.kind
        if kind == "f" and dtype.kind in "iu":  # a Bad row of a counter may come as NaN: never read
            v = np.zeros(v.size, dtype)
        elif kind in "OUS" or self._cols[j].dtype.kind == "O":  # text states: keep each cell
            if self._cols[j].dtype.kind != "O":
                self._cols[j] = self._cols[j].astype(object)
                self._scalar_ok[j] = frozenset()
            v = v.astype(object)
        self._cols[j][at : at + v.size] = v

    def take(self) -> _Rows | None:
        """The rows held (in arrival order), and empty the buffer; None if empty.

        Counter roles come back as their integer dtype (a Bad row's value as 0: never read),
        other roles as float64, or as objects where the state arrived as text; MISSING where
        a poll lacked the role.
        """
        n = self._n
        if n == 0:
            return None
        rows = self._rows()
        # the returned arrays are views of these: the next slot writes into new ones
        self._ts, self._cols, self._n = None, [], 0
        # the next slot holds about as many: a few rows of slack (a quarter was 1.2 kB an asset
        # of memory never used; a slot that outgrows it doubles once)
        self._cap = max(_FIRST_CAPACITY, n + max(2, n // 16))
        return rows

    def _rows(self) -> _Rows:
        n = self._n
        assert self._ts is not None
        values = {r: col[:n] for r, col in zip(self.roles, self._cols, strict=True)}
        quality = {r: self._q[:n, j] for j, r in enumerate(self.roles)}
        return self._ts[:n], values, quality

    def _grow(self, need: int) -> None:
        cap = max(self._cap, 1)
        while cap < need:
            cap *= 2
        n = self._n
        ts = np.empty(cap, np.int64)
        q = np.full((cap, len(self.roles)), Quality.MISSING, np.uint8)
        cols = [np.zeros(cap, d) if d.kind in "iu" else np.full(cap, np.nan, d) for d in self._dtypes]
        if self._ts is not None and n:
            ts[:n] = self._ts[:n]
            q[:n] = self._q[:n]
            for j, old in enumerate(self._cols):
                if old.dtype.kind == "O":
                    cols[j] = cols[j].astype(object)
                cols[j][:n] = old[:n]
        self._ts, self._q, self._cols, self._cap = ts, q, cols, cap
        self._scalar_ok = [
            frozenset() if c.dtype.kind == "O" else _SCALAR_OK[c.dtype.kind if c.dtype.kind in "iu" else "f"]
            for c in cols
        ]

    def __getstate__(self) -> tuple[Any, ...]:
        """Only the rows held, as one byte string (columns, then the quality matrix): saved
        with the analytics state every few seconds, where pickling a few arrays per asset was
        most of the cost. Text states (object columns) are saved as arrays."""
        head = (self.asset, self.roles, tuple(d.str for d in self._dtypes), self.linger_ns, self._offset_ns)
        n = self._n
        if not n:
            return (*head, self._slot, 0, b"")
        ts, values, _ = self._rows()
        cols = list(values.values())
        q = self._q[:n]
        if any(c.dtype.kind == "O" for c in cols):
            return (*head, self._slot, n, (ts, cols, q))
        return (*head, self._slot, n, b"".join([ts.tobytes(), *(c.tobytes() for c in cols), q.tobytes()]))

    def __setstate__(self, state: Any) -> None:
        if state[0] is None:  # saved by an earlier version: (None, slots), rows as chunks
            self._from_chunks(state[1])
            return
        asset, roles, dtypes, linger_ns, offset_ns, slot, n, rows = state
        PendingRows.__init__(
            self, asset, dict(zip(roles, map(np.dtype, dtypes), strict=True)), linger_ns, offset_ns
        )
        if n:
            ts, cols, q = self._unpacked(rows, n) if isinstance(rows, bytes) else rows
            q = q.reshape(n, len(self.roles))
            values = dict(zip(self.roles, cols, strict=True))
            # copied, like any poll: the views of the pickle are not kept
            self._store(ts, values, {r: q[:, j] for j, r in enumerate(self.roles)})
        self._slot = slot

    def _unpacked(self, blob: bytes, n: int) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
        """The arrays :meth:`__getstate__` joined into ``blob`` (views of it)."""
        arrays, at = [], 0
        for dtype in (np.dtype(np.int64), *self._dtypes, np.dtype((np.uint8, len(self.roles)))):
            arrays.append(np.frombuffer(blob, dtype, n, at))
            at += n * dtype.itemsize
        if at != len(blob):
            raise ValueError(f"asset {self.asset!r}: saved held rows are {len(blob)} bytes, expected {at}")
        return arrays[0], arrays[1:-1], arrays[-1]

    def _from_chunks(self, slots: dict[str, Any]) -> None:
        """Rows saved by an earlier version, as held then (no checks: they passed them once)."""
        PendingRows.__init__(self, slots["asset"], slots["_dtypes"], slots["linger_ns"], slots["_offset_ns"])
        for ts, signals, quality in slots["_chunks"]:
            self._store(ts, signals, quality)
        self._slot = slots["_slot"]

    def _slot_of(self, t_ns: int) -> int:
        return (t_ns - self._offset_ns) // self.linger_ns

    def _check(self, signals: Mapping[str, np.ndarray], quality: Mapping[str, npt.NDArray[np.uint8]]) -> None:
        """Refuse what would be lost silently, before anything is stored."""
        if not self._index.keys() >= signals.keys():
            r = next(r for r in signals if r not in self._index)
            raise ValueError(
                f"asset {self.asset!r}: role {r!r} is not configured for this asset "
                f"(configured: {', '.join(self.roles) or 'none'}); add the tag's role to the asset"
            )
        for r in self._counters:
            v = signals.get(r)
            if v is not None and v.dtype.kind == "f" and (quality[r] <= Quality.UNCERTAIN).any():
                raise ValueError(
                    f"asset {self.asset!r}: counter role {r!r} arrived as {v.dtype} with usable "
                    "samples; counters must arrive as raw integers so totals stay exact — decode "
                    "the register as an integer type (the scale is applied by analytics)"
                )

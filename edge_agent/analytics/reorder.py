"""Hold rows back for a short allowance so slightly late rows are put in order, not dropped.

An asset whose signals come from several devices, polled independently, sees rows a little
out of order across batches; the streaming core drops rows older than what it has already
booked. Holding the newest ``allowance`` of rows back and releasing them in time order
trades that much latency for not losing them.
"""

from __future__ import annotations

__all__ = ["ReorderBuffer", "Rows"]

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge_agent.batch import Quality


@dataclass(frozen=True, slots=True)
class Rows:
    """Rows in the shape :meth:`StreamingAnalytics.update` takes."""

    ts: npt.NDArray[np.int64]
    signals: Mapping[str, np.ndarray]
    quality: Mapping[str, npt.NDArray[np.uint8]]

    def take(self, sel: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> Rows:
        return Rows(
            self.ts[sel],
            {r: v[sel] for r, v in self.signals.items()},
            {r: q[sel] for r, q in self.quality.items()},
        )


def _concat(a: Rows, b: Rows) -> Rows:
    """Rows of a then b; a role missing from one part is MISSING there."""
    roles = dict.fromkeys([*a.signals, *b.signals])
    sig: dict[str, np.ndarray] = {}
    qual: dict[str, npt.NDArray[np.uint8]] = {}
    for r in roles:
        parts = [p for p in (a, b) if r in p.signals]
        dtype = np.result_type(*(p.signals[r].dtype for p in parts))
        fill = np.nan if np.issubdtype(dtype, np.floating) else 0
        sig[r] = np.concatenate(
            [p.signals[r] if r in p.signals else np.full(p.ts.size, fill, dtype) for p in (a, b)]
        ).astype(dtype, copy=False)
        qual[r] = np.concatenate(
            [
                p.quality[r] if r in p.signals else np.full(p.ts.size, Quality.MISSING, np.uint8)
                for p in (a, b)
            ]
        )
    return Rows(np.concatenate((a.ts, b.ts)), sig, qual)


class ReorderBuffer:
    """Releases rows once the newest row seen is ``allowance_ns`` past them, in time order.

    Rows sharing a timestamp keep their delivery order, so "first delivered wins" still
    holds downstream.
    """

    def __init__(self, allowance_ns: int) -> None:
        self.allowance_ns = allowance_ns
        self._pending: Rows | None = None

    def push(self, rows: Rows) -> Rows | None:
        """Add rows; return those now old enough, sorted by time (None if none)."""
        merged = rows if self._pending is None else _concat(self._pending, rows)
        if merged.ts.size == 0:
            return None
        merged = merged.take(np.argsort(merged.ts, kind="stable"))
        cut = int(np.searchsorted(merged.ts, int(merged.ts[-1]) - self.allowance_ns, side="right"))
        self._pending = merged.take(np.arange(cut, merged.ts.size))
        return merged.take(np.arange(cut)) if cut else None

    def drain(self) -> Rows | None:
        """Everything still held, in time order."""
        rows, self._pending = self._pending, None
        return rows if rows is not None and rows.ts.size else None

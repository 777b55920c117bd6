"""Put rows in time order: sort stably, drop re-deliveries and rows older than the stream.

Rows sharing a timestamp are re-deliveries of one poll; the first delivered wins, which
makes the result independent of how the stream was cut into batches.
"""

from __future__ import annotations

__all__ = ["Ordered", "order_rows"]

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class Ordered:
    """Row selection that puts a batch in order. ``index`` is None when it already is."""

    index: npt.NDArray[np.intp] | None
    duplicates: int
    late: int


def order_rows(ts: npt.NDArray[np.int64], after_ns: int | None) -> Ordered:
    """Rows to keep, in time order, strictly after ``after_ns`` (the stream's last row).

    A row at ``after_ns`` itself counts as a duplicate, an earlier one as late: the stream
    has already moved past it and cannot book it without changing closed windows.
    """
    n = ts.shape[0]
    if n == 0:
        return Ordered(None, 0, 0)
    floor = np.iinfo(np.int64).min if after_ns is None else after_ns
    if ts[0] > floor and (n == 1 or bool(np.all(ts[1:] > ts[:-1]))):
        return Ordered(None, 0, 0)
    order = np.argsort(ts, kind="stable")
    s = ts[order]
    first = np.ones(n, dtype=bool)
    first[1:] = s[1:] != s[:-1]
    duplicates = int(n - np.count_nonzero(first))
    late_mask = s < floor
    equal_mask = first & (s == floor)
    keep = first & (s > floor)
    return Ordered(
        order[keep],
        duplicates + int(np.count_nonzero(equal_mask)),
        int(np.count_nonzero(first & late_mask)),
    )

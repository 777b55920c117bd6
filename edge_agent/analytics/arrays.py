"""Small array helpers shared by the vectorised paths."""

from __future__ import annotations

__all__ = ["bin_index", "sorted_unique"]

import numpy as np
import numpy.typing as npt


def sorted_unique(x: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Sorted distinct values. Sort-based: far faster than ``np.unique``'s hashing on the
    large int64 arrays used here."""
    x = np.sort(x)
    if x.size < 2:
        return x
    keep = np.empty(x.size, np.bool_)
    keep[0] = True
    np.not_equal(x[1:], x[:-1], out=keep[1:])
    return x[keep]


def bin_index(
    b: npt.NDArray[np.int64], x: npt.NDArray[np.int64], side: str = "right"
) -> npt.NDArray[np.intp]:
    """``np.searchsorted(b, x, side)`` for few boundaries ``b`` and many queries ``x``.

    When ``x`` is sorted (the usual case: samples in time order) the boundaries are
    located in ``x`` instead and the answer is spread with ``np.repeat`` — linear, no
    binary search per sample.
    """
    if x.size < 64 or not bool(np.all(x[1:] >= x[:-1])):
        return b.searchsorted(x, side=side)  # type: ignore[call-overload, no-any-return]
    inner = x.searchsorted(b, side="left" if side == "right" else "right")
    counts = np.diff(np.concatenate(([0], inner, [x.size])))
    return np.repeat(np.arange(b.size + 1, dtype=np.intp), counts)

"""Small array helpers shared by the vectorised paths."""

from __future__ import annotations

__all__ = ["sorted_unique"]

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

"""Array type aliases shared by the evaluator's numeric modules."""

from __future__ import annotations

__all__ = ["BoolArray", "FloatArray", "IntArray"]

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

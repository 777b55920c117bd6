"""PLC state values to :class:`MachineState` codes, per asset's own convention.

PLCs do not agree on state codes: one uses 3 for producing, another 2, a third the string
``"RUN"``. The config maps each value to off/idle/setup/producing/fault; this turns a column
of values into the analytics' codes in one vectorised lookup. A value outside the map is
not guessed: it becomes "no state" (code −1), its quality Uncertain, and it is logged once
per asset and value so a missing map entry is noticed without flooding the log.
"""

from __future__ import annotations

__all__ = ["StateCodeMap"]

import logging
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from edge_agent.batch import Quality

from .spec import MachineState

log = logging.getLogger("edge_agent.analytics")

_BY_NAME = {s.name.lower(): int(s) for s in MachineState}
#: Up to this many values, numeric codes are looked up one by one (NaN is never a key).
_SMALL = 16


def _number(v: object) -> float:
    """A cell of a mixed column as a number (NaN for text, None or anything else)."""
    if isinstance(v, int | float | np.integer | np.floating):  # bool too: a flag is 0 or 1
        return float(v)
    return float("nan")


class StateCodeMap:
    """One asset's PLC value → MachineState lookup (numbers vectorised; strings by dict)."""

    def __init__(self, asset: str, codes: Mapping[str, str]) -> None:
        self.asset = asset
        numeric: dict[float, int] = {}
        self._text: dict[str, int] = {}
        for key, name in codes.items():
            code = _BY_NAME[name]
            self._text[key] = code
            try:
                numeric[float(key)] = code
            except ValueError:
                continue
        self.identity = numeric == {float(i): i for i in range(5)} and len(self._text) == 5
        self._by_value = numeric
        keys = sorted(numeric)
        self._keys = np.array(keys, np.float64)
        self._codes = np.array([numeric[k] for k in keys], np.int64)
        self._warned: set[str] = set()

    def _numeric(self, v: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        """Codes of numeric PLC values (−1 where a value is not in the map, or NaN)."""
        if v.size <= _SMALL:  # a poll or two: a dict lookup per value beats five numpy calls
            get = self._by_value.get
            return np.array([get(x, -1) for x in v.tolist()], np.int64)
        if not self._keys.size:
            return np.full(v.shape, -1, np.int64)
        i = np.clip(np.searchsorted(self._keys, v), 0, self._keys.size - 1)
        out: npt.NDArray[np.int64] = np.where(self._keys[i] == v, self._codes[i], -1).astype(np.int64)
        return out

    def translate(
        self, values: np.ndarray, quality: npt.NDArray[np.uint8]
    ) -> tuple[np.ndarray, npt.NDArray[np.uint8]]:
        """(codes, quality): mapped codes, −1 and Uncertain where a usable value is unmapped."""
        if self.identity and values.dtype.kind in "iu":
            return values, quality  # the default convention with integer codes: nothing to do
        if values.dtype.kind in "OUS":  # text (e.g. an OPC UA String node), maybe mixed with numbers
            cells = [v.decode(errors="replace") if isinstance(v, bytes) else v for v in values.tolist()]
            numbers = np.array([_number(v) for v in cells], np.float64)
            codes = self._numeric(numbers)
            for i, v in enumerate(cells):
                if isinstance(v, str):
                    codes[i] = self._text.get(v.strip(), -1)
        else:
            codes = self._numeric(values.astype(np.float64, copy=False))
            if self.identity and bool((codes >= 0).all()):
                return codes, quality
        unknown = (codes < 0) & (quality <= Quality.UNCERTAIN)
        if unknown.any():
            quality = quality.copy()
            quality[unknown] = Quality.UNCERTAIN
            for value in {str(x) for x in values[unknown].tolist()}:
                if value not in self._warned:
                    self._warned.add(value)
                    log.warning(
                        "asset %r: PLC state value %s is not in its state_codes map (%s); "
                        "treated as no state (Uncertain). Add it to the asset's state_codes.",
                        self.asset,
                        value,
                        ", ".join(f"{k}: {MachineState(c).name.lower()}" for k, c in self._text.items()),
                    )
        return codes, quality

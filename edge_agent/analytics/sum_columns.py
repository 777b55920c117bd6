"""Which column of a window's sums holds which quantity (seconds per state, kWh, counts…).

A window's raw material is three small vectors: float sums (``F``: seconds, kWh, …),
exact counter sums (``U``: uint64 raw counts) and maxima (``M``: demand peaks). The
streaming path and the test oracle fill the same columns, and the KPI formulas read only
these, so the two can only differ in how they sum, never in what.
"""

from __future__ import annotations

__all__ = [
    "CO2_KG",
    "COUNTS_IN_STATE",
    "GOOD_S",
    "INTEGRAL",
    "N_COUNT_SUMS",
    "N_FLOAT_SUMS",
    "N_MAXIMA",
    "N_STATES",
    "PEAK_BLOCK_KWH",
    "PEAK_ROLLING_KWH",
    "POWER_KWH_IN_STATE",
    "RAW_COUNTS",
    "ROW_COUNT",
    "SECONDS_IN_STATE",
    "UNATTRIBUTED_COUNTS",
    "USABLE_S",
    "empty_sums",
]

import numpy as np
import numpy.typing as npt

from .spec import ANALOG_ROLES, COUNTER_ROLES

N_STATES = 6  # MachineState OFF..UNKNOWN

SECONDS_IN_STATE = 0  # + state: seconds spent in each state
POWER_KWH_IN_STATE = SECONDS_IN_STATE + N_STATES  # + state: power-integrated kWh by state
COUNTS_IN_STATE = POWER_KWH_IN_STATE + N_STATES
"""+ state: energy-counter increments by state, in raw counts. Float, not exact: the interval
that straddles a state change is split between its two states (:mod:`state_change`); the exact
total stays in ``RAW_COUNTS["energy_counter"]``."""
_ROLES = (*ANALOG_ROLES, *COUNTER_ROLES)
INTEGRAL = {r: COUNTS_IN_STATE + N_STATES + i for i, r in enumerate(ANALOG_ROLES)}
"""Integral of an analog role: kWh for power, unit·s for the others."""
USABLE_S = {r: COUNTS_IN_STATE + N_STATES + len(ANALOG_ROLES) + i for i, r in enumerate(_ROLES)}
"""Seconds covered by usable (Good or Uncertain) data of a role, within the max gap."""
GOOD_S = {r: USABLE_S[r] + len(_ROLES) for r in _ROLES}
"""Seconds covered by Good data of a role (both ends of the interval Good)."""
CO2_KG = max(GOOD_S.values()) + 1  # kg CO2e
ROW_COUNT = CO2_KG + 1  # rows (timestamps) that fell in the window
N_FLOAT_SUMS = ROW_COUNT + 1

RAW_COUNTS = {r: i for i, r in enumerate(COUNTER_ROLES)}
"""Exact raw counter increments of a role."""
PART_ROLES = ("part_counter", "good_part_counter", "scrap_counter")
UNATTRIBUTED_COUNTS = {r: len(COUNTER_ROLES) + i for i, r in enumerate(PART_ROLES)}
"""Of ``RAW_COUNTS[r]``, the parts counted over an interval whose state is unknown (the agent
was down, a gap): they are real parts, but no time is booked for them, so the KPIs that
relate parts to time (effectiveness, quality ratio, OEE) leave them out."""
N_COUNT_SUMS = len(COUNTER_ROLES) + len(PART_ROLES)

PEAK_BLOCK_KWH = 0  # largest kWh in a fixed demand block inside the window
PEAK_ROLLING_KWH = 1  # largest kWh in a trailing demand window ending inside the window
N_MAXIMA = 2


def empty_sums(
    n: int,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.uint64], npt.NDArray[np.float64]]:
    """Zeroed sums for n windows (maxima start at −inf: no candidate yet)."""
    return (
        np.zeros((n, N_FLOAT_SUMS), np.float64),
        np.zeros((n, N_COUNT_SUMS), np.uint64),
        np.full((n, N_MAXIMA), -np.inf, np.float64),
    )

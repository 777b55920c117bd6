"""Where each window sum lives: one fixed column layout shared by every code path.

A window's raw material is three small vectors: float sums (``F``: seconds, kWh, …),
exact counter sums (``U``: uint64 raw counts) and maxima (``M``: demand peaks). The
streaming path, the fleet path and the reference all fill the same columns, and the KPI
formulas read only these, so the paths can only differ in how they sum, never in what.
"""

from __future__ import annotations

__all__ = [
    "CE_STATE",
    "CO2",
    "COV",
    "GOOD",
    "INT",
    "M_BLOCK",
    "M_ROLL",
    "NF",
    "NM",
    "NSTATES",
    "NU",
    "PE_STATE",
    "RAW",
    "ROWS",
    "T_STATE",
    "empty_acc",
]

import numpy as np
import numpy.typing as npt

from .spec import ANALOG_ROLES, COUNTER_ROLES

NSTATES = 6  # MachineState OFF..UNKNOWN

T_STATE = 0  # + state: seconds spent in each state
PE_STATE = T_STATE + NSTATES  # + state: power-integrated kWh by state
CE_STATE = PE_STATE + NSTATES
"""+ state: energy-counter increments by state, in raw counts. Float, not exact: the interval
that straddles a state change is split between its two states (:mod:`switch`); the exact
total stays in ``RAW["energy_counter"]``."""
_ROLES = (*ANALOG_ROLES, *COUNTER_ROLES)
INT = {r: CE_STATE + NSTATES + i for i, r in enumerate(ANALOG_ROLES)}
"""Integral of an analog role: kWh for power, unit·s for the others."""
COV = {r: CE_STATE + NSTATES + len(ANALOG_ROLES) + i for i, r in enumerate(_ROLES)}
"""Seconds covered by usable (Good or Uncertain) data of a role, within the max gap."""
GOOD = {r: COV[r] + len(_ROLES) for r in _ROLES}
"""Seconds covered by Good data of a role (both ends of the interval Good)."""
CO2 = max(GOOD.values()) + 1  # kg CO2e
ROWS = CO2 + 1  # rows (timestamps) that fell in the window
NF = ROWS + 1

RAW = {r: i for i, r in enumerate(COUNTER_ROLES)}
"""Exact raw counter increments of a role."""
NU = len(COUNTER_ROLES)

M_BLOCK = 0  # largest kWh in a fixed demand block inside the window
M_ROLL = 1  # largest kWh in a trailing demand window ending inside the window
NM = 2


def empty_acc(
    n: int,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.uint64], npt.NDArray[np.float64]]:
    """Zeroed sums for n windows (maxima start at −inf: no candidate yet)."""
    return (
        np.zeros((n, NF), np.float64),
        np.zeros((n, NU), np.uint64),
        np.full((n, NM), -np.inf, np.float64),
    )

"""Machine state codes shared by the model, both servers, the register map and the truth."""

from __future__ import annotations

__all__ = ["MachineState"]

from enum import IntEnum


class MachineState(IntEnum):
    """State codes exactly as written to the ``state`` register / node (uint16)."""

    OFF = 0
    IDLE = 1
    SETUP = 2
    PRODUCING = 3
    FAULT = 4

    @property
    def label(self) -> str:
        """Lower-case name, the key used in truth reports and CSV/JSON output."""
        return self.name.lower()

"""Modbus exception codes in words, and which of them mean "this address range is not there"."""

from __future__ import annotations

__all__ = ["GATEWAY_CODES", "MALFORMED", "SPLIT_CODES", "describe_code"]

_NAMES = {
    0x01: "ILLEGAL FUNCTION",
    0x02: "ILLEGAL DATA ADDRESS",
    0x03: "ILLEGAL DATA VALUE",
    0x04: "SERVER DEVICE FAILURE",
    0x05: "ACKNOWLEDGE",
    0x06: "SERVER DEVICE BUSY",
    0x07: "NEGATIVE ACKNOWLEDGE",
    0x08: "MEMORY PARITY ERROR",
    0x0A: "GATEWAY PATH UNAVAILABLE",
    0x0B: "GATEWAY TARGET DEVICE FAILED TO RESPOND",
}

#: Pseudo status for a reply with the wrong length (device truncated the block).
MALFORMED = 0xFFFF

#: Replies that mean part of the requested range is unreadable (or too long for this device):
#: the planner bisects the request so only the tags at the bad registers go Bad.
SPLIT_CODES = frozenset({0x02, 0x03, MALFORMED})

#: Replies from a gateway that say the unit behind it is unreachable: the whole poll fails.
GATEWAY_CODES = frozenset({0x0A, 0x0B})


def describe_code(code: int) -> str:
    """'0x02 ILLEGAL DATA ADDRESS' - the form integrators find in device manuals."""
    if code == MALFORMED:
        return "reply of the wrong length"
    return f"0x{code:02X} {_NAMES.get(code, 'UNKNOWN EXCEPTION')}"

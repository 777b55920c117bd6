"""The device image: one buffer of register words and one of bits, filled by each poll.

Each poll first forgets which positions are valid, then every answered request marks its
slice valid. A value left over from an earlier poll is therefore never decoded as Good.
"""

from __future__ import annotations

__all__ = ["RegisterImage"]

import numpy as np
import numpy.typing as npt

from edge_agent.drivers.modbus.planner import Plan, Request


class RegisterImage:
    """Buffers in wire layout: words are big-endian uint16, so ``words.view(uint8)`` is the wire."""

    __slots__ = ("bit_ok", "bit_status", "bits", "word_ok", "word_status", "words")

    def __init__(self, plan: Plan) -> None:
        self.words: npt.NDArray[np.uint16] = np.zeros(plan.word_count, dtype=">u2")
        self.word_ok = np.zeros(plan.word_count, dtype=np.bool_)
        self.word_status = np.zeros(plan.word_count, dtype=np.uint32)
        self.bits = np.zeros(plan.bit_count, dtype=np.uint8)
        self.bit_ok = np.zeros(plan.bit_count, dtype=np.bool_)
        self.bit_status = np.zeros(plan.bit_count, dtype=np.uint32)

    def begin_poll(self) -> None:
        self.word_ok[:] = False
        self.word_status[:] = 0
        self.bit_ok[:] = False
        self.bit_status[:] = 0

    def store(self, request: Request, payload: npt.NDArray[np.uint16] | npt.NDArray[np.uint8]) -> None:
        """Copy an answer into the request's slice: big-endian words, or 0/1 bits (may be longer)."""
        lo, hi = request.offset, request.offset + request.count
        if request.is_bits:
            self.bits[lo:hi] = payload[: request.count]
            self.bit_ok[lo:hi] = True
        else:
            self.words[lo:hi] = payload
            self.word_ok[lo:hi] = True

    def fail(self, request: Request, code: int) -> None:
        """Record why a slice is missing (a Modbus exception code) for the batch's status."""
        lo, hi = request.offset, request.offset + request.count
        (self.bit_status if request.is_bits else self.word_status)[lo:hi] = code

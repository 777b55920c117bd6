"""Read responses that keep their payload bytes, so the driver decodes them with numpy.

pymodbus turns every register of a read response into a Python int (one ``struct.unpack``
per register) and every coil into a bool; the driver would then turn them back into an
array. These subclasses, registered on the driver's own client through pymodbus's public
``client.register()`` hook, keep the bytes instead; the image copies them in with
``np.frombuffer``. Other clients in the process are unaffected.
"""

from __future__ import annotations

__all__ = ["RAW_RESPONSES", "RawBits", "RawRegisters", "payload_bits", "payload_words"]

import numpy as np
import numpy.typing as npt
from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu import ModbusPDU
from pymodbus.pdu.bit_message import ReadCoilsResponse, ReadDiscreteInputsResponse
from pymodbus.pdu.register_message import ReadHoldingRegistersResponse, ReadInputRegistersResponse


def _payload(pdu: ModbusPDU, data: bytes) -> bytes:
    size = int(data[0]) if data else 0
    if not data or size > len(data) - 1:
        raise ModbusIOException(
            f"byte count {size} > payload of {len(data) - 1} bytes", function_code=pdu.function_code
        )
    return data[1 : 1 + size]


class RawRegisters(ReadHoldingRegistersResponse):
    """FC 3 answer with ``payload`` = the registers' bytes as sent (big-endian words)."""

    payload: bytes = b""

    def decode(self, data: bytes) -> None:
        self.payload = _payload(self, data)
        self.count = len(self.payload) // 2


class RawInputRegisters(RawRegisters, ReadInputRegistersResponse):
    """FC 4 answer, same layout as FC 3."""

    function_code = 4


class RawBits(ReadCoilsResponse):
    """FC 1 answer with ``payload`` = the packed bits (first coil in bit 0 of byte 0)."""

    payload: bytes = b""

    def decode(self, data: bytes) -> None:
        self.payload = _payload(self, data)
        self.count = 8 * len(self.payload)


class RawDiscreteInputs(RawBits, ReadDiscreteInputsResponse):
    """FC 2 answer, same layout as FC 1."""

    function_code = 2


RAW_RESPONSES: tuple[type[ModbusPDU], ...] = (RawRegisters, RawInputRegisters, RawBits, RawDiscreteInputs)


def payload_words(response: ModbusPDU) -> npt.NDArray[np.uint16]:
    """The registers of a raw response, big-endian, without copying."""
    return np.frombuffer(getattr(response, "payload", b""), dtype=">u2")


def payload_bits(response: ModbusPDU) -> npt.NDArray[np.uint8]:
    """The coils/inputs of a raw response as 0/1 bytes (LSB of each byte first)."""
    return np.unpackbits(np.frombuffer(getattr(response, "payload", b""), dtype=np.uint8), bitorder="little")

"""Modbus TCP face of the plant: one pymodbus 3.16 server, one unit id per asset.

Uses pymodbus' current ``SimDevice``/``SimData`` API in shared-block mode, so holding and
input registers are the same memory (the input mirror is exact by construction). Values
are copied in by the device ``action`` hook on each read, which is also where exception
faults answer; timeouts drop the response in the ``trace_packet`` hook. Both are public
pymodbus hooks, so the faults are what a real client sees on the wire.
"""

from __future__ import annotations

__all__ = ["ExceptionRule", "ModbusSimServer", "encode_registers"]

import asyncio
import struct
from dataclasses import dataclass
from functools import partial
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from .catalog import ASSETS, SIGNALS, UNIT_IDS, RegisterType
from .plant import Snapshot

_READ_FC: dict[int, RegisterType] = {3: "holding", 4: "input"}
_MBAP_UNIT = 6  # byte offset of the unit id in a Modbus TCP frame
_BLOCK_WORDS = {a: sum(s.words for s in SIGNALS if s.asset == a) for a in ASSETS}


def encode_registers(snapshot: Snapshot) -> dict[int, list[int]]:
    """Register words per unit id, big-endian, high word first (ABCD)."""
    out: dict[int, list[int]] = {UNIT_IDS[a]: [] for a in ASSETS}
    for s in SIGNALS:
        v = snapshot.values[s.key]
        if s.data_type == "float32":
            raw = struct.pack(">f", float(v))
        elif s.data_type == "uint32":
            raw = struct.pack(">I", int(v))
        else:
            raw = struct.pack(">H", int(v))
        out[UNIT_IDS[s.asset]].extend(struct.unpack(f">{len(raw) // 2}H", raw))
    return out


@dataclass(frozen=True, slots=True)
class ExceptionRule:
    """Answer reads touching ``[address, address + count)`` of a unit with ``code``."""

    unit_id: int
    address: int
    count: int
    code: int
    register_type: RegisterType | None  # None: both holding and input reads

    def matches(self, unit_id: int, rtype: RegisterType, address: int, count: int) -> bool:
        if unit_id != self.unit_id or (self.register_type not in (None, rtype)):
            return False
        return address < self.address + self.count and self.address < address + count


class ModbusSimServer:
    """Start/stop/restart a pymodbus TCP server and feed it snapshots."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port  # the bound port once started (0 asks the OS for a free one)
        self._server: ModbusTcpServer | None = None
        self._registers: dict[int, list[int]] = {u: [0] * n for u, n in self._unit_words().items()}
        self.timeouts: list[int] = []  # a list, so overlapping faults undo one at a time
        self.exception_rules: list[ExceptionRule] = []

    @staticmethod
    def _unit_words() -> dict[int, int]:
        return {UNIT_IDS[a]: _BLOCK_WORDS[a] for a in ASSETS}

    @property
    def running(self) -> bool:
        return self._server is not None

    def update(self, snapshot: Snapshot) -> None:
        """Make the next reads answer from ``snapshot`` (atomic: one dict swap)."""
        self._registers = encode_registers(snapshot)

    # ---- pymodbus hooks ----------------------------------------------------------------------
    async def _action(
        self,
        unit_id: int,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current_registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        rtype = _READ_FC.get(function_code)
        if rtype is None:
            return ExcCodes.ILLEGAL_FUNCTION  # the meters only serve register reads
        for rule in self.exception_rules:
            if rule.matches(unit_id, rtype, address, count):
                return ExcCodes(rule.code)
        words = self._registers[unit_id]
        current_registers[start_address : start_address + len(words)] = words
        return None

    async def _unknown_unit(self, *_: Any) -> ExcCodes:
        return ExcCodes.GATEWAY_NO_RESPONSE  # 0x0B, what a gateway says for a missing unit

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if sending and len(data) > _MBAP_UNIT and data[_MBAP_UNIT] in self.timeouts:
            return b""  # swallow the response: the client sees a timeout
        return data

    def _devices(self) -> list[SimDevice]:
        devices = [
            SimDevice(
                id=unit,
                simdata=[SimData(0, count=words, values=0, datatype=DataType.REGISTERS, readonly=True)],
                action=partial(self._action, unit),
            )
            for unit, words in self._unit_words().items()
        ]
        devices.append(
            SimDevice(
                id=0,  # pymodbus: id 0 answers every unit id not listed above
                simdata=[SimData(0, count=65535, values=0, datatype=DataType.REGISTERS, readonly=True)],
                action=self._unknown_unit,
            )
        )
        return devices

    # ---- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._server is not None:
            return
        server = ModbusTcpServer(
            self._devices(), address=(self.host, self.port), trace_packet=self._trace_packet
        )
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:
            raise OSError(
                f"Modbus simulator could not listen on {self.host}:{self.port} ({exc}); "
                "pick another port or pass 0 for a free one"
            ) from exc
        sockets = getattr(server.transport, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        self._server = server

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]  # pymodbus lacks a hint

    async def restart(self, down_s: float = 0.0) -> None:
        """Stop, stay down ``down_s`` seconds, start again on the same port."""
        await self.stop()
        await asyncio.sleep(down_s)
        await self.start()

    def drop_connections(self) -> int:
        """Close every client TCP connection (the listener stays up). Returns how many."""
        if self._server is None:
            return 0
        conns = list(self._server.active_connections.values())
        for conn in conns:
            conn.close()
        return len(conns)

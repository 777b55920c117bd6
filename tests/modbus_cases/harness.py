"""Test harness for the Modbus driver: a real pymodbus server with fault injection, and the case loader.

The server is pymodbus's own (SimDevice/SimData, the non-deprecated API). Faults are injected
through SimDevice's documented ``action`` hook, which runs inside the server for every
request: it can delay the answer (timeouts), refuse an address range with an exception code,
abort the TCP connection mid-request, or count reads (a sequence register whose value
changes on every read, so a stale value stamped Good would be visible).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

CASES = Path(__file__).parent
TABLES = ("coil", "discrete_input", "holding", "input")
_FC_TABLE = {1: "coil", 5: "coil", 15: "coil", 2: "discrete_input", 3: "holding", 6: "holding",
             16: "holding", 22: "holding", 23: "holding", 4: "input"}  # fmt: skip

Registers = Mapping[str, Mapping[int, list[int]]]  # table -> start address -> words (or 0/1 bits)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Faults:
    """Per-unit fault switches, flipped by tests while the server runs."""

    delay: float = 0.0  # seconds before answering any request (> device timeout = timeout)
    refuse: dict[tuple[str, int], int] = field(default_factory=dict)  # (table, address) -> exc code
    abort_connection: bool = False  # drop the TCP connection when the next request arrives
    silent: bool = False  # never answer (a dead unit on a line): the response is dropped
    corrupt: bool = False  # answer with a broken CRC (noise, or a baud rate/parity mismatch)
    max_count: int | None = None  # refuse larger reads with 0x03, like picky devices
    reads: int = 0  # requests served
    counter_address: int | None = None  # holding register incremented on every read covering it
    counter_value: int = 0  # survives a server restart, like a device's own counter
    counter_set: list[tuple[int, int]] = field(default_factory=list)  # (time_ns, value) per change


class PlantServer:
    """A pymodbus server with several unit ids and faults: TCP, RTU over TCP, or a serial port."""

    def __init__(
        self,
        units: Mapping[int, Registers],
        *,
        port: int | None = None,
        framer: FramerType = FramerType.SOCKET,
        serial_port: str | None = None,
    ) -> None:
        self.units = dict(units)
        self.faults = {unit: Faults() for unit in units}
        self.port = port or free_port()
        self.framer = FramerType.RTU if serial_port is not None else framer
        self.serial_port = serial_port
        self.server: Any = None
        self.requests: list[tuple[float, int, str, int, int]] = []  # (time, unit, table, address, count)

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if sending and data:
            unit = data[6] if self.framer == FramerType.SOCKET else data[0]
            if unit in self.faults and self.faults[unit].silent:
                return b""
            if unit in self.faults and self.faults[unit].corrupt:
                return data[:-1] + bytes([data[-1] ^ 0xFF])
        return data

    def devices(self) -> list[SimDevice]:
        return [
            SimDevice(unit, simdata=_simdata(regs), action=partial(self._action, unit))
            for unit, regs in self.units.items()
        ]

    async def _action(
        self,
        unit: int,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        f = self.faults[unit]
        table = _FC_TABLE.get(function_code, "?")
        self.requests.append((asyncio.get_running_loop().time(), unit, table, address, count))
        f.reads += 1
        if f.abort_connection:
            f.abort_connection = False
            for handler in list(getattr(self.server, "active_connections", {}).values()):
                if handler.transport is not None:
                    handler.transport.abort()
            return None
        if f.delay:
            await asyncio.sleep(f.delay)
        if f.max_count is not None and count > f.max_count:
            return ExcCodes.ILLEGAL_VALUE
        for (t, a), code in f.refuse.items():
            if t == table and address <= a < address + count:
                return ExcCodes(code)
        if (
            set_values is None
            and table == "holding"
            and f.counter_address is not None
            and address <= f.counter_address < address + count
        ):
            i = f.counter_address - start_address
            registers[i] = f.counter_value = (max(registers[i], f.counter_value) + 1) & 0xFFFF
            f.counter_set.append((time.time_ns(), f.counter_value))
        return None

    async def start(self) -> PlantServer:
        if self.serial_port is not None:
            self.server = ModbusSerialServer(
                self.devices(), port=self.serial_port, framer=FramerType.RTU, trace_packet=self._trace_packet
            )
        else:
            self.server = ModbusTcpServer(
                self.devices(),
                address=("127.0.0.1", self.port),
                framer=self.framer,
                trace_packet=self._trace_packet,
            )
        await self.server.serve_forever(background=True)
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
            self.server = None
            await asyncio.sleep(0)

    async def restart(self, down_s: float) -> None:
        """Stop, stay down, start again on the same port (connections die, registers persist)."""
        await self.stop()
        await asyncio.sleep(down_s)
        await self.start()


@contextlib.asynccontextmanager
async def serve(units: Mapping[int, Registers], **kw: Any) -> AsyncIterator[PlantServer]:
    srv = await PlantServer(units, **kw).start()
    try:
        yield srv
    finally:
        await srv.stop()


def _simdata(regs: Registers) -> tuple[list[SimData], list[SimData], list[SimData], list[SimData]]:
    out: dict[str, list[SimData]] = {t: [] for t in TABLES}
    for table, runs in regs.items():
        for start, values in sorted(runs.items()):
            if table in ("coil", "discrete_input"):
                out[table].append(SimData(start, values=[bool(v) for v in values], datatype=DataType.BITS))
            else:
                out[table].append(SimData(start, values=list(values), datatype=DataType.REGISTERS))
    for table in TABLES:  # pymodbus needs every table; an unused one gets a far-away register
        if not out[table]:
            bits = table in ("coil", "discrete_input")
            out[table].append(SimData(65535, values=[False] if bits else [0],
                                      datatype=DataType.BITS if bits else DataType.REGISTERS))  # fmt: skip
    return (out["coil"], out["discrete_input"], out["holding"], out["input"])


# -- data-driven cases ------------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    device: dict[str, Any]  # the device mapping from config.yaml (host/port filled in by the test)
    registers: dict[str, dict[int, list[int]]]
    expected: dict[str, Any]


def _words(entry: dict[str, Any]) -> list[int]:
    if "hex" in entry:
        raw = bytes.fromhex(str(entry["hex"]).replace(" ", ""))
        if len(raw) % 2:
            raise ValueError(f"hex {entry['hex']!r} is not a whole number of registers")
        return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    if "ascii" in entry:  # text as the wire carries it, padded with NUL to whole registers
        raw = str(entry["ascii"]).encode("latin-1")
        return _words({"hex": (raw + b"\x00" * (len(raw) % 2)).hex()})
    if "words" in entry:
        return [int(w) for w in entry["words"]]
    return [int(bool(b)) for b in entry["bits"]]


def load_case(path: Path) -> Case:
    device = yaml.safe_load((path / "config.yaml").read_text())
    expected = yaml.safe_load((path / "expected.yaml").read_text())
    registers: dict[str, dict[int, list[int]]] = {}
    reg_file = path / "registers.yaml"
    if reg_file.exists():
        for table, entries in (yaml.safe_load(reg_file.read_text()) or {}).items():
            if table not in TABLES:
                raise ValueError(f"{reg_file}: unknown table {table!r}, expected one of {TABLES}")
            registers[table] = {}
            for entry in entries:
                words = _words(entry)
                start = int(entry["address"])
                for i, w in enumerate(words):  # merge touching runs: SimData entries must not touch twice
                    registers[table].setdefault(start + i, [w])
                registers[table] = _runs(registers[table])
    return Case(path.name, device, registers, expected)


def _runs(cells: dict[int, list[int]]) -> dict[int, list[int]]:
    """Normalise {address: [words]} into maximal contiguous runs."""
    flat: dict[int, int] = {}
    for start, words in cells.items():
        for i, w in enumerate(words):
            flat[start + i] = w
    runs: dict[int, list[int]] = {}
    prev = None
    for addr in sorted(flat):
        if prev is not None and addr == prev + 1:
            runs[max(runs)].append(flat[addr])
        else:
            runs[addr] = [flat[addr]]
        prev = addr
    return runs


def all_cases() -> list[Path]:
    return sorted(p for p in CASES.iterdir() if p.is_dir() and (p / "config.yaml").exists())


def expected_value(raw: Any) -> Any:
    """YAML can't spell NaN/Inf portably in every loader; accept 'nan', 'inf', '-inf'."""
    if isinstance(raw, str) and raw.lower() in ("nan", "inf", "+inf", "-inf"):
        return float(raw)
    return raw


def same_value(got: Any, want: Any) -> bool:
    if isinstance(want, float):
        g = float(got)
        if math.isnan(want):
            return math.isnan(g)
        if want == 0.0:  # -0.0 must stay negative zero
            return g == 0.0 and math.copysign(1.0, g) == math.copysign(1.0, want)
        return g == want or (math.isfinite(want) and math.isclose(g, want, rel_tol=1e-12, abs_tol=0.0))
    if isinstance(want, bool):
        return bool(got) == want and float(got) in (0.0, 1.0)
    if isinstance(want, int):
        return int(got) == want and float(got) == float(want)
    return bool(got == want)

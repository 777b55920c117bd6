"""Config models of a Modbus device and its tags, validated once so the driver never guesses.

Addresses are written the way the device manual numbers them (``address_base`` 0 or 1);
everything downstream works in 0-based protocol addresses.
"""

from __future__ import annotations

__all__ = [
    "BIT_TABLES",
    "BYTE_ORDERS",
    "INTEGER_TYPES",
    "REGISTER_WIDTH",
    "ByteOrder",
    "DataType",
    "ModbusDeviceConfig",
    "ModbusTagConfig",
    "RegisterTable",
    "Transport",
]

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from edge_agent.config.model import DeviceConfig, TagConfig
from edge_agent.config.types import Seconds

RegisterTable = Literal["coil", "discrete_input", "holding", "input"]
DataType = Literal[
    "bool", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string"
]
ByteOrder = Literal[
    "AB", "BA", "ABCD", "DCBA", "BADC", "CDAB", "ABCDEFGH", "HGFEDCBA", "BADCFEHG", "GHEFCDAB"
]
Transport = Literal["tcp", "rtu_over_tcp", "serial"]

BIT_TABLES: frozenset[str] = frozenset({"coil", "discrete_input"})
INTEGER_TYPES: frozenset[str] = frozenset({"int16", "uint16", "int32", "uint32", "int64", "uint64"})
#: Registers occupied by each fixed-width type (strings use ``length``).
REGISTER_WIDTH: dict[str, int] = {
    "bool": 1, "int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2,
    "int64": 4, "uint64": 4, "float64": 4,
}  # fmt: skip

#: Every accepted byte order as (swap bytes within each register, reverse register order).
BYTE_ORDERS: dict[str, tuple[bool, bool]] = {
    "AB": (False, False), "BA": (True, False),
    "ABCD": (False, False), "BADC": (True, False), "CDAB": (False, True), "DCBA": (True, True),
    "ABCDEFGH": (False, False), "BADCFEHG": (True, False),
    "GHEFCDAB": (False, True), "HGFEDCBA": (True, True),
}  # fmt: skip

_SERIAL_KEYS = ("serial_port", "baudrate", "parity", "stopbits", "bytesize")


class ModbusTagConfig(TagConfig):
    """One value on a Modbus device: where it lives and how its bytes are laid out."""

    # YAML key ``register``; the attribute is ``table`` because ``register`` would shadow
    # ABCMeta.register on the model class.
    model_config = ConfigDict(serialize_by_alias=True)
    table: RegisterTable = Field("holding", alias="register")
    address: int = Field(ge=0, description="as numbered in the device manual (see address_base)")
    data_type: DataType = "uint16"
    bit: int | None = Field(None, ge=0, le=15, description="bit of a register, 0 = least significant")
    length: int | None = Field(None, ge=1, le=125, description="string length in registers")
    byte_order: ByteOrder = "ABCD"

    @model_validator(mode="before")
    @classmethod
    def _defaults_from_table(cls, data: Any) -> Any:
        """Coils default to bool; a counter's rollover width defaults to its data type's."""
        if not isinstance(data, dict):
            return data
        if data.get("register") in BIT_TABLES and "data_type" not in data:
            data = {**data, "data_type": "bool"}
        dtype = data.get("data_type", "uint16")
        role = data.get("role", "")
        if isinstance(role, str) and role.endswith("_counter") and "counter_bits" not in data:
            width = REGISTER_WIDTH.get(dtype) if isinstance(dtype, str) else None
            if width is not None and dtype in INTEGER_TYPES:
                data = {**data, "counter_bits": 16 * width}
        return data  # the caller's mapping, copied only when a default is added

    @model_validator(mode="after")
    def _consistent(self) -> ModbusTagConfig:
        where = f"tag {self.name!r}"
        if self.table in BIT_TABLES:
            if self.data_type != "bool":
                raise ValueError(
                    f"{where}: data_type {self.data_type} cannot be read from a {self.table} "
                    "(coils and discrete inputs hold single bits); use data_type: bool, "
                    "or register: holding/input for numeric values"
                )
            if self.bit is not None:
                raise ValueError(f"{where}: 'bit' selects a bit of a register; a {self.table} is one bit")
            if self.byte_order != "ABCD":
                raise ValueError(f"{where}: byte_order does not apply to a {self.table}; remove it")
        elif self.data_type == "bool" and self.bit is None:
            raise ValueError(
                f"{where}: a bool in a {self.table} register needs 'bit' (0-15, 0 = least significant)"
            )
        elif self.data_type != "bool" and self.bit is not None:
            raise ValueError(f"{where}: 'bit' is only valid with data_type: bool")
        if (self.data_type == "string") != (self.length is not None):
            raise ValueError(
                f"{where}: data_type string needs 'length' (in registers)"
                if self.data_type == "string"
                else f"{where}: 'length' is only valid with data_type: string"
            )
        self._check_byte_order(where)
        if self.is_counter:
            self._check_counter(where)
        if self.data_type == "string" and (self.scale != 1.0 or self.offset != 0.0):
            raise ValueError(f"{where}: scale/offset cannot apply to a string")
        if self.writable and self.table in ("discrete_input", "input"):
            raise ValueError(
                f"{where}: {self.table} registers are read-only in Modbus; "
                "use register: holding or coil for a writable tag"
            )
        return self

    def _check_byte_order(self, where: str) -> None:
        n = len(self.byte_order)
        width = self.register_count
        if self.data_type == "string":
            if BYTE_ORDERS[self.byte_order][1]:
                raise ValueError(
                    f"{where}: a string can only swap bytes within registers; use byte_order AB "
                    f"(or ABCD) for normal order, BA (or BADC) for swapped, not {self.byte_order}"
                )
        elif n == 2 and width != 1:
            raise ValueError(
                f"{where}: byte_order {self.byte_order} is for 16-bit values; "
                f"{self.data_type} needs ABCD, DCBA, BADC or CDAB"
                + (" (or ABCDEFGH, HGFEDCBA, BADCFEHG, GHEFCDAB)" if width == 4 else "")
            )
        elif n == 8 and width != 4:
            raise ValueError(
                f"{where}: byte_order {self.byte_order} is for 64-bit values; "
                f"{self.data_type} needs ABCD, DCBA, BADC or CDAB"
            )

    def _check_counter(self, where: str) -> None:
        if self.data_type not in INTEGER_TYPES:
            raise ValueError(
                f"{where}: role {self.role} is delivered as an exact integer, so data_type must be "
                f"an integer type (uint16, uint32, uint64, int16, int32, int64), not {self.data_type}; "
                "use role generic for a float counter"
            )
        bits = 16 * REGISTER_WIDTH[self.data_type]
        if self.counter_bits != bits:
            raise ValueError(
                f"{where}: counter_bits {self.counter_bits} does not match data_type "
                f"{self.data_type} ({bits} bits); remove counter_bits or set it to {bits}"
            )

    @property
    def register_count(self) -> int:
        """Registers (or bits, for coils/discrete inputs) this tag occupies."""
        if self.table in BIT_TABLES:
            return 1
        return self.length if self.length is not None else REGISTER_WIDTH[self.data_type]

    @property
    def swaps(self) -> tuple[bool, bool]:
        """(swap bytes within each register, reverse register order)."""
        return BYTE_ORDERS[self.byte_order]


class ModbusDeviceConfig(DeviceConfig):
    """A Modbus slave reached over TCP, RTU over TCP, or an RS-485/RS-232 serial port."""

    driver: Literal["modbus"]
    transport: Transport = "tcp"
    host: str | None = Field(None, min_length=1)
    port: int = Field(502, ge=1, le=65535)
    serial_port: str | None = Field(None, min_length=1, description="e.g. /dev/ttyUSB0")
    baudrate: int = Field(19200, gt=0)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    unit_id: int = Field(1, ge=0, le=255)
    address_base: Literal[0, 1] = 0
    max_registers_per_request: int = Field(125, ge=1, le=125)
    max_bits_per_request: int = Field(2000, ge=1, le=2000)
    max_gap: int = Field(10, ge=0, le=123, description="unused registers worth reading to save a request")
    shared_connection: bool = Field(
        True,
        description="tcp: share one connection and lock with other devices on the same host and port "
        "(a Modbus TCP gateway); false where the gateway serves parallel connections",
    )
    inter_frame_delay: Seconds | None = Field(
        None, ge=0, description="silence between frames on a shared line; default 3.5 characters"
    )
    tags: list[ModbusTagConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> ModbusDeviceConfig:
        where = f"device {self.name!r}"
        if self.transport == "serial":
            if self.serial_port is None:
                raise ValueError(f"{where}: transport serial needs 'serial_port' (e.g. /dev/ttyUSB0)")
            if self._given("host") or self._given("port"):
                raise ValueError(f"{where}: host/port apply to tcp transports; use serial_port for serial")
        else:
            if self.host is None:
                raise ValueError(
                    f"{where}: transport {self.transport} needs 'host' (and 'port', default 502)"
                )
            extra = [k for k in _SERIAL_KEYS if self._given(k)]
            if extra:
                raise ValueError(
                    f"{where}: {', '.join(extra)} apply to transport serial only, not {self.transport}"
                )
        if self.transport != "tcp" and not self.shared_connection:
            raise ValueError(
                f"{where}: shared_connection: false applies to tcp only; every unit on a serial line "
                "or RTU-over-TCP converter must share its one connection"
            )
        if self.transport != "tcp" and self.unit_id == 0:
            raise ValueError(f"{where}: unit_id 0 is the broadcast address on a serial line; use 1-247")
        seen: set[str] = set()
        for tag in self.tags:
            if tag.name in seen:
                raise ValueError(f"{where}: tag name {tag.name!r} is used twice")
            seen.add(tag.name)
            self._check_address(tag)
        return self

    def _given(self, key: str) -> bool:
        """Set to something other than its default (a full dump of the config still loads)."""
        default = type(self).model_fields[key].default
        return key in self.model_fields_set and getattr(self, key) != default

    def _check_address(self, tag: ModbusTagConfig) -> None:
        if tag.table not in BIT_TABLES and tag.register_count > self.max_registers_per_request:
            raise ValueError(
                f"device {self.name!r} tag {tag.name!r}: {tag.data_type} spans {tag.register_count} "
                f"registers but max_registers_per_request is {self.max_registers_per_request}; "
                "raise the limit or shorten the tag"
            )
        proto = tag.address - self.address_base
        last = proto + tag.register_count - 1
        if proto < 0 or last > 65535:
            lo, hi = self.address_base, 65535 + self.address_base
            hint = (
                " Modicon-style numbers like 40001 are not addresses: use register: holding and "
                "the offset (40001 -> address 1 with address_base: 1)."
                if tag.address > 65535
                else ""
            )
            raise ValueError(
                f"device {self.name!r} tag {tag.name!r}: {tag.table} address {tag.address} "
                f"({tag.register_count} register(s)) is outside {lo}..{hi} for address_base "
                f"{self.address_base}.{hint}"
            )

    @property
    def endpoint(self) -> str:
        """Where the device is, for messages: 'tcp 10.0.0.5:502 unit 3'."""
        where = self.serial_port if self.transport == "serial" else f"{self.host}:{self.port}"
        return f"{self.transport} {where} unit {self.unit_id}"

    @property
    def frame_gap(self) -> float:
        """Silence kept between frames: configured, else 3.5 characters (RTU spec), 0 for TCP."""
        if self.inter_frame_delay is not None:
            return self.inter_frame_delay
        if self.transport == "tcp":
            return 0.0
        if self.transport == "serial" and self.baudrate <= 19200:
            return 3.5 * 11 / self.baudrate
        return 0.00175

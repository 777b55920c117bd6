"""The signal catalogue: one table from which the Modbus map and the OPC UA nodes derive.

Keeping a single table is what makes ``register_map()`` and ``opcua_nodes()`` complete and
exact by construction (the agent's demo config is generated from them), and what lets the
two servers expose the same snapshot without a second hand-written mapping.
"""

from __future__ import annotations

__all__ = [
    "ASSETS",
    "MACHINES",
    "NAMESPACE_URI",
    "SIGNALS",
    "UNIT_IDS",
    "DataType",
    "OpcUaNode",
    "RegisterEntry",
    "RegisterType",
    "Role",
    "SignalSpec",
    "Unit",
    "opcua_nodes",
    "register_map",
    "signal",
    "unece",
]

from dataclasses import dataclass
from typing import Literal

from edge_agent.config.types import Role, Unit

NAMESPACE_URI = "urn:edge-agent:simulator"

# The agent's own role and unit vocabulary, so the generated configs always validate.
DataType = Literal["float32", "uint32", "uint16"]
RegisterType = Literal["holding", "input"]

ASSETS: tuple[str, ...] = ("cnc1", "imm1", "comp1", "main")
MACHINES: tuple[str, ...] = ("cnc1", "imm1")
UNIT_IDS: dict[str, int] = {"cnc1": 1, "imm1": 2, "comp1": 3, "main": 4}

_WORDS: dict[DataType, int] = {"float32": 2, "uint32": 2, "uint16": 1}
# UNECE Rec. 20 common codes for EUInformation (OPC UA Part 8); None = not an analog value.
_UNECE: dict[Unit, tuple[str, str] | None] = {
    "kW": ("KWT", "kilowatt"),
    "kWh": ("KWH", "kilowatt hour"),
    "kvarh": ("K3", "kilovolt ampere (reactive) hour"),
    "m3/min": ("G53", "cubic metre per minute"),
    "degC": ("CEL", "degree Celsius"),
    "bar": ("BAR", "bar [unit of pressure]"),
    "kg": ("KGM", "kilogram"),
    "parts": ("C62", "one"),
    "1": ("C62", "one"),
    "state": None,
}


@dataclass(frozen=True, slots=True)
class SignalSpec:
    """One signal of one asset. ``scale``: engineering value = raw value × scale."""

    asset: str
    name: str
    role: Role
    unit: Unit
    data_type: DataType
    scale: float
    address: int  # 0-based, identical in holding and input registers
    description: str

    @property
    def words(self) -> int:
        return _WORDS[self.data_type]

    @property
    def is_analog(self) -> bool:
        """Float signals carry an EngineeringUnits property in OPC UA; counters do not."""
        return self.data_type == "float32"

    @property
    def key(self) -> str:
        return f"{self.asset}.{self.name}"


def _layout(asset: str, rows: list[tuple[str, Role, Unit, DataType, float, str]]) -> list[SignalSpec]:
    out: list[SignalSpec] = []
    address = 0
    for name, role, unit, dtype, scale, desc in rows:
        out.append(SignalSpec(asset, name, role, unit, dtype, scale, address, desc))
        address += _WORDS[dtype]
    return out


_COUNTER_SCALE = 0.0001  # 0.1 Wh / 0.1 varh per count

_METER: list[tuple[str, Role, Unit, DataType, float, str]] = [
    ("power_kw", "power", "kW", "float32", 1.0, "active power at the end of the last model tick"),
    (
        "energy_kwh",
        "energy_counter",
        "kWh",
        "uint32",
        _COUNTER_SCALE,
        "active energy import counter, 1 count = 0.1 Wh, wraps at 2^32",
    ),
    (
        "reactive_energy_kvarh",
        "reactive_energy_counter",
        "kvarh",
        "uint32",
        _COUNTER_SCALE,
        "reactive energy counter, 1 count = 0.1 varh, wraps at 2^32",
    ),
]
_MACHINE: list[tuple[str, Role, Unit, DataType, float, str]] = [
    *_METER,
    ("good_parts", "good_part_counter", "parts", "uint32", 1.0, "good parts produced, wraps at 2^32"),
    ("scrap_parts", "scrap_counter", "parts", "uint32", 1.0, "scrap parts produced, wraps at 2^32"),
    (
        "material_kg",
        "material_counter",
        "kg",
        "uint32",
        0.001,
        "material consumed, 1 count = 1 g, wraps at 2^32",
    ),
    ("state", "state", "state", "uint16", 1.0, "0 off, 1 idle, 2 setup, 3 producing, 4 fault"),
]
_COMPRESSOR: list[tuple[str, Role, Unit, DataType, float, str]] = [
    *_METER,
    (
        "air_flow_m3min",
        "air_flow",
        "m3/min",
        "float32",
        1.0,
        "free-air flow to the plant (after the receiver)",
    ),
    ("pressure_bar", "generic", "bar", "float32", 1.0, "receiver pressure, gauge"),
    # the load signal is the compressor's state (0 unload, 1 load: state_codes in the config);
    # its PLC "state" says what the plant demands, not what the compressor does
    ("loaded", "state", "state", "uint16", 1.0, "1 while the compressor is loaded, else 0"),
    ("state", "generic", "1", "uint16", 1.0, "demand: 0 off, 1 leaks only, 3 machines need air"),
]
_MAIN: list[tuple[str, Role, Unit, DataType, float, str]] = [
    *_METER,
    ("outdoor_temp_c", "temperature", "degC", "float32", 1.0, "outdoor air temperature"),
]

SIGNALS: tuple[SignalSpec, ...] = (
    *_layout("cnc1", _MACHINE),
    *_layout("imm1", _MACHINE),
    *_layout("comp1", _COMPRESSOR),
    *_layout("main", _MAIN),
)
_BY_KEY = {s.key: s for s in SIGNALS}


def signal(asset: str, name: str) -> SignalSpec:
    """Look one signal up, with an error that lists what exists."""
    try:
        return _BY_KEY[f"{asset}.{name}"]
    except KeyError:
        known = ", ".join(s.name for s in SIGNALS if s.asset == asset)
        if not known:
            raise KeyError(f"unknown asset {asset!r}; expected one of {', '.join(ASSETS)}") from None
        raise KeyError(f"asset {asset!r} has no signal {name!r}; it has: {known}") from None


@dataclass(frozen=True, slots=True)
class RegisterEntry:
    """One Modbus register (block) of the simulator, exactly as a client must read it.

    Multi-word values are big-endian with the high word first (ABCD).
    """

    asset: str
    signal: str
    role: Role
    unit: Unit
    unit_id: int
    register_type: RegisterType
    address: int  # 0-based protocol address
    data_type: DataType
    scale: float
    count: int  # number of 16-bit registers
    word_order: Literal["ABCD"] = "ABCD"


def register_map() -> list[RegisterEntry]:
    """Every register the Modbus server exposes: holding registers, then the input mirror."""
    return [
        RegisterEntry(
            asset=s.asset,
            signal=s.name,
            role=s.role,
            unit=s.unit,
            unit_id=UNIT_IDS[s.asset],
            register_type=rtype,
            address=s.address,
            data_type=s.data_type,
            scale=s.scale,
            count=s.words,
        )
        for rtype in ("holding", "input")
        for s in SIGNALS
    ]


@dataclass(frozen=True, slots=True)
class OpcUaNode:
    """One OPC UA variable of the simulator.

    ``node_id`` uses the namespace URI (``nsu=``) form because the namespace index is only
    known once a client has read the server's namespace array. Counters are UInt32 raw
    counts (same number as the Modbus register; engineering value = value × scale); analog
    values are Double in engineering units with an EngineeringUnits property.
    """

    asset: str
    signal: str
    role: Role
    unit: Unit
    node_id: str
    browse_path: tuple[str, ...]  # browse names from the Objects folder down
    data_type: Literal["Double", "UInt32", "UInt16"]
    scale: float
    unece_code: str | None  # EngineeringUnits common code, None when no EU property


_UA_TYPES: dict[DataType, Literal["Double", "UInt32", "UInt16"]] = {
    "float32": "Double",
    "uint32": "UInt32",
    "uint16": "UInt16",
}


def unece(unit: Unit) -> tuple[str, str] | None:
    """(common code, description) of a unit, per UNECE Recommendation 20."""
    return _UNECE[unit]


def opcua_nodes() -> list[OpcUaNode]:
    """Every variable the OPC UA server exposes, in the same order as the register map."""
    out: list[OpcUaNode] = []
    for s in SIGNALS:
        eu = unece(s.unit) if s.is_analog else None
        out.append(
            OpcUaNode(
                asset=s.asset,
                signal=s.name,
                role=s.role,
                unit=s.unit,
                node_id=f"nsu={NAMESPACE_URI};s={s.key}",
                browse_path=("Objects", "Plant", s.asset, s.name),
                data_type=_UA_TYPES[s.data_type],
                scale=s.scale,
                unece_code=eu[0] if eu else None,
            )
        )
    return out

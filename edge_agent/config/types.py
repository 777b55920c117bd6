"""Small value types shared by every config section: durations, byte sizes, units, roles."""

from __future__ import annotations

__all__ = [
    "ROLE_UNITS",
    "STATE_NAMES",
    "ByteSize",
    "Role",
    "Seconds",
    "StateName",
    "StrictModel",
    "Unit",
    "checked_before",
    "item_model",
    "parse_bytes",
    "parse_seconds",
]

import re
import typing
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationInfo

from edge_agent.config.compact import prime_shared_keys

Role = Literal[
    "power",
    "energy_counter",
    "reactive_energy_counter",
    "part_counter",
    "good_part_counter",
    "scrap_counter",
    "material_counter",
    "air_flow",
    "state",
    "temperature",
    "generic",
]

StateName = Literal["off", "idle", "setup", "producing", "fault"]
#: The default PLC state codes: 0 off, 1 idle, 2 setup, 3 producing, 4 fault.
STATE_NAMES: tuple[StateName, ...] = ("off", "idle", "setup", "producing", "fault")

Unit = Literal["kW", "kWh", "kvarh", "m3/min", "kg", "parts", "state", "degC", "bar", "1"]

#: Which engineering units make sense for each semantic role; analytics relies on them.
ROLE_UNITS: dict[str, frozenset[str]] = {
    "power": frozenset({"kW"}),
    "energy_counter": frozenset({"kWh"}),
    "reactive_energy_counter": frozenset({"kvarh"}),
    "part_counter": frozenset({"parts"}),
    "good_part_counter": frozenset({"parts"}),
    "scrap_counter": frozenset({"parts"}),
    "material_counter": frozenset({"kg"}),
    "air_flow": frozenset({"m3/min"}),
    "state": frozenset({"state"}),
    "temperature": frozenset({"degC"}),
    "generic": frozenset({"kW", "kWh", "kvarh", "m3/min", "kg", "parts", "state", "degC", "bar", "1"}),
}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, None: 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    None: 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
}


def parse_seconds(value: object) -> object:
    """Accept 2, 2.5, '500ms', '2s', '15min', '1h', '1d' and return seconds as float."""
    if isinstance(value, str):
        m = _DURATION.match(value)
        if not m:
            raise ValueError(f"expected a duration like '500ms', '2s', '15min' or '1h', got {value!r}")
        return float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    return value


def parse_bytes(value: object) -> object:
    """Accept 1048576, '512MB', '1GiB' and return a byte count."""
    if isinstance(value, str):
        m = _SIZE.match(value)
        if not m:
            raise ValueError(f"expected a size like '64MB' or '1GiB', got {value!r}")
        unit = m.group(2).lower() if m.group(2) else None
        return int(float(m.group(1)) * _SIZE_UNITS[unit])
    return value


Seconds = Annotated[float, BeforeValidator(parse_seconds)]
ByteSize = Annotated[int, BeforeValidator(parse_bytes)]


#: Validation context the loader sets when it assembles the whole config from tags it
#: validated (in chunks) already.
ITEMS_CHECKED = "edge_agent.items_checked"


def checked_before(info: ValidationInfo) -> bool:
    """Whether the loader built and checked the items of this validation in chunks already
    (DeviceConfig then takes its tags as they are)."""
    context = info.context
    return isinstance(context, dict) and context.get(ITEMS_CHECKED) is True


def item_model(model: Any, field: str) -> Any:
    """``X`` of a ``list[X]`` field when X is a model, else None (a plugin's tags may be anything)."""
    info = getattr(model, "model_fields", {}).get(field)
    args = typing.get_args(info.annotation) if info is not None else ()
    if len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        return args[0]
    return None


#: One shared ``model_fields_set`` per distinct set of keys written in the file (see StrictModel).
_FIELDS_SETS: dict[frozenset[str], set[str]] = {}


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, values are immutable.

    Instances that were given the same keys share one ``model_fields_set``: pydantic keeps a
    set per instance, 0.7 kB for a tag with five keys or more, so 50,000 tags held 35 MB of
    identical sets. A frozen model never adds to it, and pydantic copies it before
    ``model_copy(update=...)`` does. Subclasses that define ``model_post_init`` call
    ``super().model_post_init(context)``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        prime_shared_keys(cls)  # before any instance: see edge_agent.config.compact

    def model_post_init(self, context: Any, /) -> None:
        given = self.__pydantic_fields_set__
        if not self.model_config.get("frozen"):
            return  # a plugin's mutable model adds to its own set on assignment
        shared = _FIELDS_SETS.setdefault(frozenset(given), given)
        if shared is not given:
            object.__setattr__(self, "__pydantic_fields_set__", shared)

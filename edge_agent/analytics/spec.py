"""What the analytics needs to know about one asset, as plain frozen dataclasses.

The runtime builds these from its validated config; the analytics core never sees pydantic
or YAML, so it can be tested and benchmarked with nothing but arrays. Validation here is a
second line of defence: it names the asset and the field, and says what to change.
"""

from __future__ import annotations

__all__ = [
    "ANALOG_ROLES",
    "COUNTER_ROLES",
    "ROLES",
    "AssetSpec",
    "CounterSpec",
    "EmissionSeries",
    "MachineState",
    "StateThresholds",
]

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal

import numpy as np
import numpy.typing as npt

from edge_agent.errors import ConfigError, ConfigProblem

from .windows import DEFAULT_WINDOWS, CalendarWindow, FixedWindow, RollingWindow, WindowSpec

COUNTER_ROLES = (
    "energy_counter",
    "reactive_energy_counter",
    "part_counter",
    "scrap_counter",
    "material_counter",
    "good_part_counter",
)
"""Roles whose values arrive as raw, cumulative integers (the spec holds their scale)."""

ANALOG_ROLES = ("power", "air_flow", "temperature", "generic")
"""Roles whose values arrive already scaled to engineering units (kW, m³/min, °C, any)."""

ROLES = (*ANALOG_ROLES, *COUNTER_ROLES, "state")
"""Every role a signal may play; ``state`` is a PLC state code (see :class:`MachineState`)."""


class MachineState(IntEnum):
    """Operating state. Codes 0–4 are the PLC state-tag codes; UNKNOWN means no usable data.

    For a compressor IDLE is "unload" and PRODUCING is "load".
    """

    OFF = 0
    IDLE = 1
    SETUP = 2
    PRODUCING = 3
    FAULT = 4
    UNKNOWN = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class StateThresholds:
    """Power thresholds that classify off / idle / producing.

    Below ``off_below_kw`` a machine is off, below ``idle_below_kw`` idle, else producing.
    Each threshold T is crossed upwards at T + h/2 and downwards below T − h/2 (h =
    ``hysteresis_kw``), so noise around T does not flap the state. A new state takes effect
    only once it has persisted ``min_dwell_s`` (a debounce timer, like a PLC TON).
    """

    off_below_kw: float
    idle_below_kw: float
    hysteresis_kw: float = 0.0
    min_dwell_s: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class CounterSpec:
    """A cumulative counter: its width and how raw counts convert to engineering units.

    ``max_rate_per_s`` (engineering units per second) decides whether a fall is a rollover
    or a reset; energy counters default to the asset's rated power, other counters must
    state it.
    """

    scale: float = 1.0
    bits: Literal[16, 32, 64] = 32
    max_value: int | None = None
    max_rate_per_s: float | None = None
    step_counts: int = 1
    """The counter's resolution in raw counts: one step is plausible in any interval."""
    slack_s: float = 2.0
    """How long a reading may lag the count it shows (register update period, gateway
    cache, late publishing): that much more time's worth of counts is plausible."""

    @property
    def slack_ns(self) -> int:
        return round(self.slack_s * 1e9)

    @property
    def maximum(self) -> int:
        """M, the largest value the counter shows before it wraps to 0."""
        return self.max_value if self.max_value is not None else (1 << self.bits) - 1


@dataclass(frozen=True, slots=True, eq=False)
class EmissionSeries:
    """A time-varying emission factor: ``kg_per_kwh[i]`` applies from ``ts_ns[i]`` on.

    The first value also applies before its timestamp, so every kWh gets a factor.
    """

    ts_ns: npt.NDArray[np.int64]
    kg_per_kwh: npt.NDArray[np.float64]

    def at(self, ts_ns: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """Factor in force at each timestamp (step function, last change at or before)."""
        i = np.searchsorted(self.ts_ns, ts_ns, side="right") - 1
        return np.asarray(self.kg_per_kwh[np.maximum(i, 0)], dtype=np.float64)


def _default_counters() -> Mapping[str, CounterSpec]:
    return {}


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class AssetSpec:
    """One monitored asset: machine, compressor or meter.

    ``counters`` maps counter roles to their specs; ``signals`` lists the other roles the
    asset delivers. Energy comes from the energy counter when one is configured (exact,
    revenue-grade) and from integrated power otherwise. ``planned_states`` are the states
    that count as planned busy time (PBT); UNKNOWN (no data) is excluded so a data gap is
    not booked as downtime — the coverage KPIs report it instead.
    """

    asset: str
    kind: Literal["machine", "compressor", "meter"] = "machine"
    rated_power_kw: float
    thresholds: StateThresholds | None = None
    counters: Mapping[str, CounterSpec] = field(default_factory=_default_counters)
    signals: frozenset[str] = frozenset({"power"})
    power_mode: Literal["instantaneous", "interval_average"] = "instantaneous"
    ideal_cycle_time_s: float | None = None
    emission_factor: float | EmissionSeries | None = None
    max_gap_s: float = 60.0
    windows: tuple[WindowSpec, ...] = DEFAULT_WINDOWS
    demand_block_s: int = 900
    sources: Mapping[str, str] = field(default_factory=dict)
    """role → where it comes from (``device/tag``), used only to name it in messages."""
    planned_states: frozenset[MachineState] = frozenset(
        {MachineState.IDLE, MachineState.SETUP, MachineState.PRODUCING, MachineState.FAULT}
    )

    def __post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise ConfigError(f"asset {self.asset!r}", problems)

    @property
    def roles(self) -> frozenset[str]:
        """Every configured role, counters included."""
        return self.signals | frozenset(self.counters)

    @property
    def energy_role(self) -> str | None:
        """Where energy comes from: the energy counter if configured, else power."""
        if "energy_counter" in self.counters:
            return "energy_counter"
        return "power" if "power" in self.signals else None

    @property
    def has_states(self) -> bool:
        """True when a state can be derived (PLC state tag or power with thresholds)."""
        return "state" in self.signals or (self.thresholds is not None and "power" in self.signals)

    def max_rate(self, role: str) -> float:
        """Plausible maximum rate of a counter in engineering units per second."""
        spec = self.counters[role]
        if spec.max_rate_per_s is not None:
            return spec.max_rate_per_s
        return self.rated_power_kw / 3600.0  # kWh (or kvarh) per second at rated power

    def max_gap_ns(self) -> int:
        return round(self.max_gap_s * 1e9)

    def _problems(self) -> list[ConfigProblem]:
        out: list[ConfigProblem] = []

        def bad(path: str, msg: str) -> None:
            out.append(ConfigProblem(path=path, line=None, message=msg))

        if not self.asset:
            bad("asset", "asset id must not be empty")
        if self.kind not in ("machine", "compressor", "meter"):
            bad("kind", f"got {self.kind!r}; use 'machine', 'compressor' or 'meter'")
        if not (self.rated_power_kw > 0 and np.isfinite(self.rated_power_kw)):
            bad("rated_power_kw", f"got {self.rated_power_kw}; give the nameplate power in kW (> 0)")
        if self.power_mode not in ("instantaneous", "interval_average"):
            bad("power_mode", f"got {self.power_mode!r}; use 'instantaneous' or 'interval_average'")
        if not self.max_gap_s > 0:
            bad("max_gap_s", f"got {self.max_gap_s}; give the longest sample spacing to bridge (> 0 s)")
        if self.demand_block_s <= 0:
            bad("demand_block_s", f"got {self.demand_block_s}; use the tariff's block (900 s)")
        unknown = sorted(self.signals - set(ANALOG_ROLES) - {"state"})
        if unknown:
            bad(
                "signals",
                f"unknown or counter roles {unknown}; analog roles are {ANALOG_ROLES} "
                "and 'state'; counters go under 'counters'",
            )
        for role, c in self.counters.items():
            where = f"counters.{role}"
            if role not in COUNTER_ROLES:
                bad(where, f"{role!r} is not a counter role; use one of {COUNTER_ROLES}")
                continue
            if c.bits not in (16, 32, 64):
                bad(f"{where}.bits", f"got {c.bits}; use 16, 32 or 64 (or set max_value)")
            if c.max_value is not None and not 0 < c.max_value < (1 << 64):
                bad(f"{where}.max_value", f"got {c.max_value}; the meter maximum must be in 1..2**64-1")
            if not (c.scale > 0 and np.isfinite(c.scale)):
                bad(f"{where}.scale", f"got {c.scale}; give engineering units per raw count (> 0)")
            if c.max_rate_per_s is None and role not in ("energy_counter", "reactive_energy_counter"):
                bad(
                    f"{where}.max_rate_per_s",
                    "needed to tell a rollover from a reset; give the "
                    "fastest plausible rate in units per second",
                )
            if not c.slack_s >= 0:
                bad(f"{where}.slack_s", f"got {c.slack_s}; give the reading's lag in seconds (>= 0)")
            if c.step_counts < 1:
                bad(f"{where}.step_counts", f"got {c.step_counts}; the resolution is >= 1 raw count")
            if c.max_rate_per_s is not None and not c.max_rate_per_s > 0:
                bad(f"{where}.max_rate_per_s", f"got {c.max_rate_per_s}; must be > 0")
        t = self.thresholds
        if t is not None:
            if not 0 <= t.off_below_kw <= t.idle_below_kw:
                bad(
                    "thresholds",
                    f"need 0 <= off_below_kw ({t.off_below_kw}) <= idle_below_kw ({t.idle_below_kw})",
                )
            if t.hysteresis_kw < 0 or t.idle_below_kw - t.off_below_kw < t.hysteresis_kw:
                bad(
                    "thresholds.hysteresis_kw",
                    f"got {t.hysteresis_kw}; must be >= 0 and no wider "
                    "than the idle band (idle_below_kw - off_below_kw) so the bands do not overlap",
                )
            if t.min_dwell_s < 0:
                bad("thresholds.min_dwell_s", f"got {t.min_dwell_s}; must be >= 0")
        if self.ideal_cycle_time_s is not None and not self.ideal_cycle_time_s > 0:
            bad("ideal_cycle_time_s", f"got {self.ideal_cycle_time_s}; must be > 0 s per unit")
        ef = self.emission_factor
        if isinstance(ef, EmissionSeries):
            if ef.ts_ns.ndim != 1 or ef.ts_ns.shape != ef.kg_per_kwh.shape or ef.ts_ns.size == 0:
                bad("emission_factor", "time series needs equal-length, non-empty ts_ns and kg_per_kwh")
            elif np.any(np.diff(ef.ts_ns) <= 0):
                bad("emission_factor.ts_ns", "timestamps must be strictly increasing")
            elif not np.all(np.isfinite(ef.kg_per_kwh)):
                bad("emission_factor.kg_per_kwh", "factors must be finite numbers")
        elif ef is not None and not (np.isfinite(ef) and ef >= 0):
            bad("emission_factor", f"got {ef}; give kg CO2e per kWh (>= 0)")
        names = [w.name for w in self.windows]
        if not names:
            bad("windows", "no window scheme given; give at least one (e.g. FixedWindow('1min', 60))")
        elif len(set(names)) != len(names):
            bad("windows", f"window names must be unique, got {names}")
        for w in self.windows:
            out.extend(
                ConfigProblem(path=f"windows.{w.name}", line=None, message=m) for m in _window_problems(w)
            )
        if not self.planned_states <= set(MachineState):
            bad("planned_states", "use MachineState members")
        return out


def _window_problems(w: WindowSpec) -> list[str]:
    if isinstance(w, FixedWindow):
        return [] if w.length_s > 0 else [f"length_s must be > 0, got {w.length_s}"]
    if isinstance(w, RollingWindow):
        if w.step_s <= 0 or w.length_s <= 0 or w.length_s % w.step_s:
            return [f"length_s ({w.length_s}) must be a positive multiple of step_s ({w.step_s})"]
        return []
    if isinstance(w, CalendarWindow):
        return w.problems()
    return [f"unknown window type {type(w).__name__}"]

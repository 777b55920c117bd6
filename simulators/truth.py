"""Exact ground truth of a model run, as plain frozen dataclasses.

Tests and the evaluator compare what the agent measured against these numbers, so they
are accumulated from the same per-tick values the servers expose, never re-derived.
"""

from __future__ import annotations

__all__ = ["COUNTER_MODULUS", "COUNTS_PER_UNIT", "AssetTruth", "PlantTruth"]

import math
from dataclasses import asdict, dataclass
from typing import Any

COUNTER_MODULUS = 2**32
# Raw counts per engineering unit of each counter signal (inverse of the register scale).
COUNTS_PER_UNIT: dict[str, int] = {
    "energy_kwh": 10_000,
    "reactive_energy_kvarh": 10_000,
    "good_parts": 1,
    "scrap_parts": 1,
    "material_kg": 1_000,
}


@dataclass(frozen=True, slots=True)
class AssetTruth:
    """Totals of one asset since the model started (reporting-period splits subtract two)."""

    asset: str
    energy_kwh: float
    energy_kwh_by_state: dict[str, float]  # keys: off, idle, setup, producing, fault
    seconds_by_state: dict[str, float]
    reactive_kvarh: float
    good_parts: int = 0
    scrap_parts: int = 0
    material_g: float = 0.0
    air_m3: float = 0.0  # compressor only: free air delivered to the plant
    loaded_s: float = 0.0  # compressor only
    loaded_kwh: float = 0.0  # compressor only: energy drawn while loaded
    base_kwh: float = 0.0  # main only: site base load (lighting, HVAC)
    counter_initial: dict[str, int] | None = None  # effective raw value at zero truth

    @property
    def material_kg(self) -> float:
        return self.material_g / 1000.0

    @property
    def idle_kwh(self) -> float:
        return self.energy_kwh_by_state["idle"]

    @property
    def operating_h(self) -> float:
        """Hours in the producing state (ISO 22400 actual production time)."""
        return self.seconds_by_state["producing"] / 3600.0

    @property
    def running_s(self) -> float:
        """Seconds switched on (any state but off)."""
        return sum(v for k, v in self.seconds_by_state.items() if k != "off")

    @property
    def load_share(self) -> float:
        """Compressor: loaded time over running time (nan when it never ran)."""
        return self.loaded_s / self.running_s if self.running_s > 0 else math.nan

    def load_states(self) -> tuple[dict[str, float], dict[str, float]]:
        """Compressor: (kWh, seconds) by *load* state — off, idle = unloaded, producing = loaded.

        ``energy_kwh_by_state`` splits by what the plant demands (the PLC's state tag); an
        agent that reads the ``loaded`` signal as the compressor's state compares to this.
        """
        run = self.running_s
        kwh = {"off": 0.0, "idle": self.energy_kwh - self.loaded_kwh, "producing": self.loaded_kwh}
        sec = {"off": self.seconds_by_state["off"], "idle": run - self.loaded_s, "producing": self.loaded_s}
        return kwh, sec

    def expected_counter(self, signal: str) -> int:
        """Raw register value implied by the truth: (initial + ⌊truth·counts⌋) mod 2³²."""
        if not self.counter_initial or signal not in self.counter_initial:
            raise KeyError(f"asset {self.asset!r} has no counter {signal!r}")
        raw_units = {
            "energy_kwh": self.energy_kwh * COUNTS_PER_UNIT["energy_kwh"],
            "reactive_energy_kvarh": self.reactive_kvarh * COUNTS_PER_UNIT["reactive_energy_kvarh"],
            "good_parts": float(self.good_parts),
            "scrap_parts": float(self.scrap_parts),
            "material_kg": self.material_g,
        }[signal]
        return (self.counter_initial[signal] + math.floor(raw_units)) % COUNTER_MODULUS

    def minus(self, earlier: AssetTruth) -> AssetTruth:
        """Totals accumulated between ``earlier`` and this truth (for period splits)."""
        return AssetTruth(
            asset=self.asset,
            energy_kwh=self.energy_kwh - earlier.energy_kwh,
            energy_kwh_by_state={
                k: v - earlier.energy_kwh_by_state[k] for k, v in self.energy_kwh_by_state.items()
            },
            seconds_by_state={k: v - earlier.seconds_by_state[k] for k, v in self.seconds_by_state.items()},
            reactive_kvarh=self.reactive_kvarh - earlier.reactive_kvarh,
            good_parts=self.good_parts - earlier.good_parts,
            scrap_parts=self.scrap_parts - earlier.scrap_parts,
            material_g=self.material_g - earlier.material_g,
            air_m3=self.air_m3 - earlier.air_m3,
            loaded_s=self.loaded_s - earlier.loaded_s,
            loaded_kwh=self.loaded_kwh - earlier.loaded_kwh,
            base_kwh=self.base_kwh - earlier.base_kwh,
        )

    def summary(self) -> dict[str, Any]:
        """JSON-ready totals with derived figures (kg, hours, idle kWh)."""
        d = asdict(self)
        d.pop("counter_initial")
        d.pop("material_g")
        d["material_kg"] = self.material_kg
        d["idle_kwh"] = self.idle_kwh
        d["operating_h"] = self.operating_h
        return d


@dataclass(frozen=True, slots=True)
class PlantTruth:
    """Truth of all assets at one model instant."""

    time: float  # physics epoch seconds at the end of the last tick
    ticks: int
    tick_s: float
    assets: dict[str, AssetTruth]

    def __getitem__(self, asset: str) -> AssetTruth:
        return self.assets[asset]

    def as_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "ticks": self.ticks,
            "tick_s": self.tick_s,
            "assets": {a: t.summary() for a, t in self.assets.items()},
        }

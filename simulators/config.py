"""Plant parameters: one frozen dataclass per asset kind, plus the retrofit switch.

Numbers are plausible for a small job shop (a bar-fed CNC lathe, a 4-cavity injection
moulding machine, a 22 kW screw compressor). They live here, apart from the model code,
so tests and demos can tweak one figure without touching the physics.
"""

from __future__ import annotations

__all__ = [
    "CompressorParams",
    "MachineParams",
    "PlantConfig",
    "RetrofitConfig",
    "SiteParams",
]

from dataclasses import dataclass, field

from .states import MachineState

# Per-state tuples are indexed by MachineState: (off, idle, setup, producing, fault).
StateFloats = tuple[float, float, float, float, float]


@dataclass(frozen=True, slots=True)
class MachineParams:
    """One production machine. Powers in kW, cycle time in real (physics) seconds."""

    power_kw: StateFloats
    noise: StateFloats  # relative standard deviation of power per model tick
    power_factor: StateFloats
    air_m3min: StateFloats  # compressed-air demand per state
    cycle_s: float
    parts_per_cycle: int
    scrap_prob: float
    material_g_per_part: float
    setup_material_g_per_s: float = 0.0  # e.g. purging an injection barrel during setup
    demand_factor: float = 1.0  # share of plant demand this machine sees
    shifts: tuple[tuple[int, int], ...] = ((6, 14), (14, 22))
    breaks: tuple[tuple[float, int], ...] = ((9.0, 15), (12.0, 30), (17.0, 15), (19.5, 30))
    setup_slots: tuple[int, int] = (2, 6)  # 5-min slots of setup at the first shift start
    changeover_prob: float = 0.5  # chance of a new setup at the second shift start
    changeover_slots: tuple[int, int] = (1, 4)
    idle_run_slots: float = 3.0  # mean length of a waiting (idle) run inside a shift
    fault_rate_per_day: float = 1.0  # Poisson mean over a full working day
    fault_slots: tuple[int, int] = (2, 12)
    left_idle_prob: float = 0.08  # chance the machine is left idling overnight

    def __post_init__(self) -> None:
        for name in ("power_kw", "noise", "power_factor", "air_m3min"):
            if len(getattr(self, name)) != len(MachineState):
                raise ValueError(f"MachineParams.{name} needs one value per MachineState (5)")
        if self.cycle_s <= 0 or self.parts_per_cycle < 1:
            raise ValueError("MachineParams: cycle_s must be > 0 and parts_per_cycle >= 1")
        if not 0.0 <= self.scrap_prob <= 1.0:
            raise ValueError(f"MachineParams.scrap_prob must be in [0, 1], got {self.scrap_prob}")


@dataclass(frozen=True, slots=True)
class CompressorParams:
    """Load/unload screw compressor feeding a receiver; flows in m³/min of free air."""

    capacity_m3min: float = 3.6
    loaded_kw: float = 22.0
    unloaded_kw: float = 7.5
    pf_loaded: float = 0.86
    pf_unloaded: float = 0.45
    leak_m3min: float = 0.6
    receiver_m3: float = 1.0  # free-air volume stored between the two pressure set points
    p_low_bar: float = 6.5
    p_high_bar: float = 7.5
    flow_noise: float = 0.05
    left_on_prob: float = 0.25  # chance it runs overnight on leaks alone


@dataclass(frozen=True, slots=True)
class SiteParams:
    """Site base load (lighting, offices, HVAC) and the outdoor climate."""

    base_on_kw: float = 6.0  # while any machine is on
    base_off_kw: float = 2.5
    heating_kw_per_k: float = 0.8
    heating_balance_c: float = 16.0
    cooling_kw_per_k: float = 1.2
    cooling_balance_c: float = 22.0
    base_noise: float = 0.03
    base_pf: float = 0.92
    temp_mean_c: float = 10.0
    temp_season_amp_c: float = 9.0
    temp_day_amp_c: float = 4.0
    temp_weather_sd_c: float = 3.0
    base_demand: float = 0.62  # share of shift time spent producing on an average day
    demand_sd: float = 0.12  # day-to-day log-normal spread
    demand_trend_per_day: float = 0.004  # rising order book: +0.4 %/day from the start day
    saturday_prob: float = 0.15  # chance of a Saturday morning shift


@dataclass(frozen=True, slots=True)
class RetrofitConfig:
    """What the efficiency retrofit changes from ``retrofit_at`` on."""

    idle_power_factor: float = 0.7  # idle power −30 %
    scrap_factor: float = 0.8  # scrap probability −20 %
    assets: tuple[str, ...] = ("cnc1", "imm1")


def _default_machines() -> dict[str, MachineParams]:
    return {
        "cnc1": MachineParams(
            power_kw=(0.05, 4.5, 6.0, 18.0, 2.5),
            noise=(0.0, 0.02, 0.06, 0.04, 0.03),
            power_factor=(1.0, 0.55, 0.70, 0.85, 0.50),
            air_m3min=(0.0, 0.1, 0.3, 0.6, 0.05),
            cycle_s=30.0,
            parts_per_cycle=1,
            scrap_prob=0.03,
            material_g_per_part=420.0,
            demand_factor=1.0,
            fault_rate_per_day=0.9,
        ),
        "imm1": MachineParams(
            power_kw=(0.1, 9.0, 14.0, 32.0, 6.0),
            noise=(0.0, 0.02, 0.05, 0.04, 0.03),
            power_factor=(1.0, 0.60, 0.75, 0.88, 0.55),
            air_m3min=(0.0, 0.3, 0.6, 1.2, 0.1),
            cycle_s=15.0,
            parts_per_cycle=4,
            scrap_prob=0.05,
            material_g_per_part=22.0,
            setup_material_g_per_s=1.5,
            demand_factor=0.95,
            fault_rate_per_day=1.3,
        ),
    }


@dataclass(frozen=True, slots=True)
class PlantConfig:
    """The whole plant. Asset ids are fixed: configs and the register map depend on them."""

    machines: dict[str, MachineParams] = field(default_factory=_default_machines)
    compressor: CompressorParams = field(default_factory=CompressorParams)
    site: SiteParams = field(default_factory=SiteParams)

    def __post_init__(self) -> None:
        if tuple(self.machines) != ("cnc1", "imm1"):
            raise ValueError(
                f"PlantConfig.machines must be exactly ('cnc1', 'imm1') in that order, "
                f"got {tuple(self.machines)}; asset ids are fixed by the register map"
            )

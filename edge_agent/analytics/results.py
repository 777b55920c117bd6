"""What the analytics hands to the runtime: per-window KPIs and running totals."""

from __future__ import annotations

__all__ = ["Totals", "WindowKpis"]

from collections.abc import Mapping
from dataclasses import dataclass, field

from .spec import MachineState


@dataclass(frozen=True, slots=True)
class WindowKpis:
    """KPIs of one asset over one window ``[start_ns, end_ns)``.

    ``kpis`` is flat (name → float, NaN when undefined) so it maps straight onto a
    SampleBatch row or an InfluxDB point. ``coverage`` is the share of the window covered
    by Good data of the energy signal (power if there is none); per-role coverage is in
    ``kpis`` as ``coverage_<role>``.
    """

    asset: str
    window: str
    start_ns: int
    end_ns: int
    kpis: Mapping[str, float]
    coverage: float


@dataclass(frozen=True, slots=True)
class Totals:
    """Running totals since the analytics started — what the live table shows.

    Quantities are in engineering units; ``raw_counts`` keeps each counter's exact integer
    total. ``gaps`` counts intervals longer than the max gap, per role.
    """

    energy_kwh: float
    energy_by_state_kwh: Mapping[str, float]
    reactive_energy_kvarh: float
    produced_quantity: float
    good_quantity: float
    scrap_quantity: float
    consumed_material: float
    kwh_per_good_part: float
    state: MachineState
    last_power_kw: float
    last_ts_ns: int | None
    raw_counts: Mapping[str, int]
    resets: Mapping[str, int]
    rollovers: Mapping[str, int]
    gaps: Mapping[str, int]
    duplicates: int
    late: int
    invalid_state_codes: int
    jumps: Mapping[str, int] = field(default_factory=dict)
    """Counter steps above the physically plausible maximum, booked as nothing, per role."""

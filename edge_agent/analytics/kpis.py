"""KPI formulas (docs/kpi-definitions.md, ISO 22400-2) from a window's sums — one place, all paths.

Every formula is vectorised over windows. A ratio whose denominator is zero is NaN
(undefined), never 0 or inf. Names follow ISO 22400-2:

* PBT planned busy time: seconds in ``spec.planned_states`` (not off, not unknown);
  APT actual production time: seconds producing.
* PQ produced quantity (part counter), GQ good quantity (good-part counter), SQ scrap
  quantity (scrap counter): any two of the three give the third. CM consumed material
  (material counter); PRU ideal cycle time per unit.
* availability = APT/PBT; effectiveness = PRU·PQ/APT (may exceed 1);
  quality_ratio = GQ/PQ; oee = availability·effectiveness·quality_ratio = PRU·GQ/PBT.
  These three relate parts to time, so they count only the parts made while the state was
  known: parts counted across a gap or the agent's own downtime (recovered from the
  counters, in PQ/GQ/SQ) have no time in APT or PBT and would inflate them.
* scrap_ratio = SQ/PQ; material_yield = GQ/CM (good units per unit of material).
* SEC (ISO 22400 comprehensive energy consumption) = E/PQ, and per good unit E/GQ.
* idle_share = E_idle/E_total; power_factor = kWh/√(kWh² + kvarh²).
* peak demand (kW) = (3600/L)·(kWh of the block), 4× for 15-min blocks; fixed and rolling.
* compressors: specific power = mean kW / mean m³/min over each signal's covered time;
  load_share = T_load/(T_load + T_unload) (producing/idle) — the leakage % when measured
  with all consumers off.
* co2e_kg = Σ E_t·EF_t, the factor taken at each interval's start.
* coverage_<role> = seconds covered by Good data of the role / window length.
"""

from __future__ import annotations

__all__ = ["compute_kpis", "kpi_names", "part_quantities"]

from collections.abc import Mapping
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from .spec import AssetSpec, MachineState
from .sum_columns import (
    CO2_KG,
    COUNTS_IN_STATE,
    GOOD_S,
    INTEGRAL,
    PEAK_BLOCK_KWH,
    PEAK_ROLLING_KWH,
    POWER_KWH_IN_STATE,
    RAW_COUNTS,
    SECONDS_IN_STATE,
    UNATTRIBUTED_COUNTS,
    USABLE_S,
)

_F = npt.NDArray[np.float64]
_Q = TypeVar("_Q", npt.NDArray[np.float64], float)
_STATE_NAMES = [s.name.lower() for s in MachineState]


def part_quantities(pq: _Q | None, gq: _Q | None, sq: _Q | None) -> tuple[_Q | None, _Q | None, _Q | None]:
    """(produced, good, scrap) from whichever counters an asset has: any two give the third.

    A PLC may count total parts and scrap, good parts and scrap, or total and good parts;
    the KPIs (SEC per good part, scrap ratio, yield, OEE) need all three.
    """
    if pq is None and gq is not None and sq is not None:
        pq = gq + sq
    elif gq is None and pq is not None and sq is not None:
        gq = pq - sq
    elif sq is None and pq is not None and gq is not None:
        sq = pq - gq
    return pq, gq, sq


def _div(a: _F, b: _F) -> _F:
    """a/b, NaN where b is 0 (called inside :func:`compute_kpis`'s one errstate: entering one
    costs more than the division of a few windows)."""
    return np.where(b != 0, a / np.where(b != 0, b, 1.0), np.nan)


def kpi_names(spec: AssetSpec) -> tuple[str, ...]:
    """The KPI keys this asset's windows carry (stable for a given spec)."""
    return tuple(compute_kpis(spec, *_one_empty()).keys())


def _one_empty() -> tuple[_F, npt.NDArray[np.uint64], _F, _F]:
    from .sum_columns import empty_sums

    f, u, m = empty_sums(1)
    return f, u, m, np.ones(1)


def compute_kpis(
    spec: AssetSpec,
    f: _F,
    u: npt.NDArray[np.uint64],
    m: _F,
    length_s: _F,
    *,
    pru: _F | None = None,
    scales: Mapping[str, _F] | None = None,
) -> dict[str, _F]:
    """KPIs of k windows from their sums (``f`` k×N_FLOAT_SUMS, ``u`` k×N_COUNT_SUMS, ``m`` k×N_MAXIMA).

    ``pru`` and ``scales`` (per window) override the spec's ideal cycle time and counter
    scales, so windows of many assets that differ only in those share one call.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return _compute(spec, f, u, m, length_s, pru, scales)


def _compute(
    spec: AssetSpec,
    f: _F,
    u: npt.NDArray[np.uint64],
    m: _F,
    length_s: _F,
    pru: _F | None,
    scales: Mapping[str, _F] | None,
) -> dict[str, _F]:
    roles = spec.roles
    out: dict[str, _F] = {}

    def scale_of(role: str) -> _F | float:
        return scales[role] if scales is not None else spec.counters[role].scale

    def raw(role: str) -> _F:
        return u[:, RAW_COUNTS[role]].astype(np.float64) * scale_of(role)

    def timed(role: str) -> _F:
        """Parts of ``role`` made while the state was known (no gap, no downtime)."""
        left = u[:, RAW_COUNTS[role]] - u[:, UNATTRIBUTED_COUNTS[role]]
        return left.astype(np.float64) * scale_of(role)

    e_role = spec.energy_role
    energy: _F | None = None
    if e_role is not None:
        if e_role == "energy_counter":
            scale = scale_of(e_role)
            energy = raw(e_role)
            by_state = f[:, COUNTS_IN_STATE : COUNTS_IN_STATE + len(_STATE_NAMES)] * np.reshape(
                scale, (-1, 1)
            )
        else:
            energy = f[:, INTEGRAL["power"]]
            by_state = f[:, POWER_KWH_IN_STATE : POWER_KWH_IN_STATE + len(_STATE_NAMES)]
        out["energy_kwh"] = energy
        for i, name in enumerate(_STATE_NAMES):
            out[f"energy_{name}_kwh"] = by_state[:, i]
        out["idle_share"] = _div(by_state[:, MachineState.IDLE], energy)
        per_h = 3600.0 / spec.demand_block_s
        out["peak_demand_kw"] = np.where(
            np.isfinite(m[:, PEAK_BLOCK_KWH]), m[:, PEAK_BLOCK_KWH] * per_h, np.nan
        )
        out["peak_demand_rolling_kw"] = np.where(
            np.isfinite(m[:, PEAK_ROLLING_KWH]), m[:, PEAK_ROLLING_KWH] * per_h, np.nan
        )
        if spec.emission_factor is not None:
            out["co2e_kg"] = f[:, CO2_KG]
    pbt: _F | None = None
    apt: _F | None = None
    if spec.has_states:
        t = f[:, SECONDS_IN_STATE : SECONDS_IN_STATE + len(_STATE_NAMES)]
        for i, name in enumerate(_STATE_NAMES):
            out[f"time_{name}_s"] = t[:, i]
        pbt = t[:, sorted(int(s) for s in spec.planned_states)].sum(axis=1)
        apt = t[:, MachineState.PRODUCING]
        out["pbt_s"] = pbt
        out["apt_s"] = apt
        out["availability"] = _div(apt, pbt)
    if "power" in roles:
        out["mean_power_kw"] = _div(f[:, INTEGRAL["power"]] * 3600.0, f[:, USABLE_S["power"]])
    if "reactive_energy_counter" in roles:
        kvarh = raw("reactive_energy_counter")
        out["reactive_energy_kvarh"] = kvarh
        if energy is not None:
            out["power_factor"] = _div(energy, np.sqrt(energy * energy + kvarh * kvarh))
    pq, gq, sq = part_quantities(
        raw("part_counter") if "part_counter" in roles else None,
        raw("good_part_counter") if "good_part_counter" in roles else None,
        raw("scrap_counter") if "scrap_counter" in roles else None,
    )
    if pq is not None:
        out["produced_quantity"] = pq
        if energy is not None:
            out["sec_kwh_per_part"] = _div(energy, pq)
    if sq is not None:
        out["scrap_quantity"] = sq
    pqt, gqt, _ = part_quantities(
        timed("part_counter") if "part_counter" in roles else None,
        timed("good_part_counter") if "good_part_counter" in roles else None,
        timed("scrap_counter") if "scrap_counter" in roles else None,
    )
    if gq is not None and pq is not None and sq is not None:
        assert gqt is not None and pqt is not None  # the same counters give both
        out["good_quantity"] = gq
        out["unattributed_quantity"] = pq - pqt  # made across a gap or the agent's downtime
        out["unattributed_good_quantity"] = gq - gqt
        out["quality_ratio"] = _div(gqt, pqt)
        out["scrap_ratio"] = _div(sq, pq)
        if energy is not None:
            out["sec_kwh_per_good_part"] = _div(energy, gq)
    if pru is None and spec.ideal_cycle_time_s is not None:
        pru = np.full(f.shape[0], spec.ideal_cycle_time_s)
    if pru is not None and pq is not None and apt is not None and pbt is not None:
        assert pqt is not None
        out["effectiveness"] = _div(pru * pqt, apt)
        if gqt is not None:
            out["oee"] = _div(pru * gqt, pbt)
    if "material_counter" in roles:
        cm = raw("material_counter")
        out["consumed_material"] = cm
        if gq is not None:
            out["material_yield"] = _div(gq, cm)
    if spec.kind == "compressor":
        if "air_flow" in roles:
            out["air_volume_m3"] = f[:, INTEGRAL["air_flow"]] / 60.0
            if "power" in roles:
                flow = _div(f[:, INTEGRAL["air_flow"]], f[:, USABLE_S["air_flow"]])
                out["specific_power_kw_per_m3min"] = _div(out["mean_power_kw"], flow)
        if spec.has_states:
            load = f[:, SECONDS_IN_STATE + MachineState.PRODUCING]
            out["load_share"] = _div(load, load + f[:, SECONDS_IN_STATE + MachineState.IDLE])
    if "temperature" in roles:
        out["mean_temperature"] = _div(f[:, INTEGRAL["temperature"]], f[:, USABLE_S["temperature"]])
    if "generic" in roles:
        out["mean_generic"] = _div(f[:, INTEGRAL["generic"]], f[:, USABLE_S["generic"]])
    for role in sorted(roles - {"state"}):
        out[f"coverage_{role}"] = f[:, GOOD_S[role]] / length_s
    return out

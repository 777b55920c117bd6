"""Shift schedule: per machine and local day, a plan of 5-minute slots of state codes.

A day's plan is drawn from its own seeded stream ``(seed, machine, day)``, so the state at
any instant is a pure function of time. That is what lets the live model advance tick by
tick while the offline history advances a day at a time, and what lets a counterfactual
run (no retrofit) see exactly the same production decisions.
"""

from __future__ import annotations

__all__ = ["DAY_SLOTS", "DEMO_FIRST_DAY", "SLOT_S", "PlantDay", "Schedule", "demo_schedule_start"]

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .clock import DAY_S, LocalClock
from .config import MachineParams, PlantConfig
from .states import MachineState

SLOT_S = 300
DEMO_FIRST_DAY = 19_730  # Monday 2024-01-08: compressed demos search from here
DAY_SLOTS = DAY_S // SLOT_S
_SLOTS_PER_H = 3600 // SLOT_S
_MORNING_SLOT = 6 * _SLOTS_PER_H  # overnight carry-overs end at 06:00

_SALT_PLANT = 0x504C_414E  # "PLAN"
_SALT_MACHINE = 0x4D41_4348  # "MACH"
_SALT_NIGHT = 0x4E49_4748  # "NIGH"

U8 = npt.NDArray[np.uint8]
F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]

_OFF, _IDLE, _SETUP, _PROD, _FAULT = (int(s) for s in MachineState)


@dataclass(frozen=True, slots=True)
class PlantDay:
    """Plant-wide decisions for one local day (shared by all machines)."""

    demand: float
    working: bool
    saturday_shift: bool
    compressor_left_on: bool


class Schedule:
    """Machine states over time for one seed, plant configuration and time zone."""

    def __init__(self, *, seed: int, config: PlantConfig, clock: LocalClock, ref_day: int) -> None:
        if seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        self._seed = seed
        self._config = config
        self._machines: list[MachineParams] = list(config.machines.values())
        self.clock = clock
        self._ref_day = ref_day  # demand trend is relative to this day
        self._days: dict[int, PlantDay] = {}
        self._plans: dict[tuple[int, int], U8] = {}

    @property
    def n_machines(self) -> int:
        return len(self._machines)

    # ---- plant-level day decisions -------------------------------------------------------
    def plant_day(self, day: int) -> PlantDay:
        pd = self._days.get(day)
        if pd is None:
            site = self._config.site
            rng = np.random.default_rng([self._seed, _SALT_PLANT, day])
            noise = float(rng.normal(0.0, site.demand_sd))
            sat = bool(rng.random() < site.saturday_prob)
            left_on = bool(rng.random() < self._config.compressor.left_on_prob)
            trend = 1.0 + site.demand_trend_per_day * (day - self._ref_day)
            demand = float(np.clip(site.base_demand * trend * np.exp(noise), 0.15, 0.95))
            wd = self.clock.weekday(day)
            saturday_shift = wd == 5 and sat
            working = wd < 5 or saturday_shift
            pd = PlantDay(demand, working, saturday_shift, working and left_on)
            self._days[day] = pd
        return pd

    def _shifts(self, m: MachineParams, day: int) -> tuple[tuple[int, int], ...]:
        pd = self.plant_day(day)
        if not pd.working:
            return ()
        return m.shifts[:1] if pd.saturday_shift else m.shifts

    def _left_idle(self, mi: int, day: int) -> bool:
        m = self._machines[mi]
        if not self._shifts(m, day):
            return False
        rng = np.random.default_rng([self._seed, _SALT_NIGHT, mi, day])
        return bool(rng.random() < m.left_idle_prob)

    # ---- one machine, one day ------------------------------------------------------------
    def plan(self, mi: int, day: int) -> U8:
        """State code per 5-minute slot of local day ``day`` for machine index ``mi``."""
        key = (mi, day)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) > 4096:
                self._plans.clear()
            plan = self._draw_plan(mi, day)
            self._plans[key] = plan
        return plan

    def _draw_plan(self, mi: int, day: int) -> U8:
        m = self._machines[mi]
        plan = np.full(DAY_SLOTS, _OFF, dtype=np.uint8)
        if self._left_idle(mi, day - 1):
            plan[:_MORNING_SLOT] = _IDLE
        shifts = self._shifts(m, day)
        if not shifts:
            return plan
        rng = np.random.default_rng([self._seed, _SALT_MACHINE, mi, day])
        demand = min(0.97, self.plant_day(day).demand * m.demand_factor)
        p_idle_to_prod = 1.0 / m.idle_run_slots
        p_prod_to_idle = p_idle_to_prod * (1.0 - demand) / demand
        full_day = sum(b - a for a, b in m.shifts) * _SLOTS_PER_H
        for i, (a_h, b_h) in enumerate(shifts):
            a, b = a_h * _SLOTS_PER_H, b_h * _SLOTS_PER_H
            # producing/idle as a two-state Markov chain: idle runs are waits for work
            u = rng.random(b - a)
            producing = True
            seg = np.empty(b - a, dtype=np.uint8)
            for j in range(b - a):
                seg[j] = _PROD if producing else _IDLE
                producing = u[j] >= p_prod_to_idle if producing else u[j] < p_idle_to_prod
            plan[a:b] = seg
            for start_h, minutes in m.breaks:
                s = round(start_h * _SLOTS_PER_H)
                if a <= s < b:
                    plan[s : min(b, s + minutes // (SLOT_S // 60))] = _IDLE
            if i == 0:
                k = int(rng.integers(m.setup_slots[0], m.setup_slots[1] + 1))
            elif rng.random() < m.changeover_prob:
                k = int(rng.integers(m.changeover_slots[0], m.changeover_slots[1] + 1))
            else:
                k = 0
            plan[a : a + k] = _SETUP
            n_faults = int(rng.poisson(m.fault_rate_per_day * (b - a) / full_day))
            for _ in range(n_faults):
                s = int(rng.integers(a + k, b))
                d = int(rng.integers(m.fault_slots[0], m.fault_slots[1] + 1))
                plan[s : min(b, s + d)] = _FAULT
        if self._left_idle(mi, day):
            plan[shifts[-1][1] * _SLOTS_PER_H :] = _IDLE
        return plan

    # ---- vectorised lookups ----------------------------------------------------------------
    def _day_slot(self, t: F64) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        day, sec = self.clock.day_and_second(t)
        slot = np.minimum((sec // SLOT_S).astype(np.int64), DAY_SLOTS - 1)
        return day, slot

    def machine_states(self, mi: int, t: F64) -> U8:
        """State code of machine ``mi`` at each schedule time ``t`` (epoch seconds)."""
        day, slot = self._day_slot(t)
        first, last = int(day[0]), int(day[-1])
        if first == last:
            out: U8 = self.plan(mi, first)[slot]
            return out
        table = np.stack([self.plan(mi, d) for d in range(first, last + 1)])
        stacked: U8 = table[day - first, slot]
        return stacked

    def compressor_left_on(self, t: F64) -> B:
        """True where the compressor was left running overnight (on leaks alone)."""
        day, slot = self._day_slot(t)
        first, last = int(day[0]), int(day[-1])
        out = np.zeros(t.shape[0], dtype=np.bool_)
        for d in range(first, last + 1):
            here = day == d
            pd, prev = self.plant_day(d), self.plant_day(d - 1)
            if pd.compressor_left_on:
                shifts = [self._shifts(m, d) for m in self._machines]
                end = max(b for sh in shifts for _, b in sh)
                out |= here & (slot >= end * _SLOTS_PER_H)
            if prev.compressor_left_on:
                out |= here & (slot < _MORNING_SLOT)
        return out


def demo_schedule_start(
    schedule: Schedule,
    *,
    time_scale: float,
    window_s: float = 30.0,
    lead_min: int = 20,
    first_day: int = DEMO_FIRST_DAY,
    max_days: int = 400,
) -> float:
    """Schedule start for a compressed demo: the first weekday whose opening hours show
    every machine state within ``window_s`` real seconds, starting ``lead_min`` before 06:00.

    Deterministic for a seed, so the same seed always gives the same demo.
    """
    lead_slots = lead_min * 60 // SLOT_S
    window_slots = max(1, int(window_s * time_scale // SLOT_S))
    a = _MORNING_SLOT - lead_slots
    wanted = {int(s) for s in MachineState}
    for day in range(first_day, first_day + max_days):
        if not schedule.plant_day(day).working or schedule.clock.weekday(day) >= 5:
            continue
        seen: set[int] = set()
        for mi in range(schedule.n_machines):
            seen.update(int(x) for x in np.unique(schedule.plan(mi, day)[a : a + window_slots]))
        if wanted <= seen:
            return schedule.clock.local_midnight(day) + a * SLOT_S
    return schedule.clock.local_midnight(first_day) + a * SLOT_S

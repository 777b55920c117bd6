"""The plant model: pure numpy, vectorised over ticks, no I/O.

Power is piecewise constant per model tick, so the true energy of a tick is exactly
P·dt and every total is a plain sum. Time comes in two flavours:

* physics time (epoch seconds, advances by ``tick_s`` per tick) drives energy, parts
  and the retrofit switch;
* schedule time = ``schedule_start + elapsed_physics × time_scale`` drives shift
  states and weather, so a compressed demo runs a shift in minutes while kW and kWh
  stay real.

Randomness comes from separate seeded streams (noise, scrap draws per machine, daily
plans) whose consumption never depends on the retrofit switch, so a counterfactual run
with the same seed takes the same production decisions.
"""

from __future__ import annotations

__all__ = ["AssetBlock", "PlantModel", "Snapshot", "TickBlock"]

import math
import time as _time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import tzinfo

import numpy as np
import numpy.typing as npt

from .catalog import ASSETS, MACHINES, SIGNALS, signal
from .clock import DAY_S, LocalClock
from .config import PlantConfig, RetrofitConfig
from .schedule import DEMO_FIRST_DAY, Schedule, demo_schedule_start
from .states import MachineState
from .truth import COUNTER_MODULUS, COUNTS_PER_UNIT, AssetTruth, PlantTruth
from .weather import Weather

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
B = npt.NDArray[np.bool_]

_SALT_NOISE = 0x4E4F_4953  # "NOIS"
_SALT_SCRAP = 0x5343_5241  # "SCRA"
_SALT_INIT = 0x494E_4954  # "INIT"

_N_STATES = len(MachineState)
_OFF, _IDLE, _SETUP, _PROD, _FAULT = (int(s) for s in MachineState)
_STATE_LABELS = tuple(s.label for s in MachineState)
_DEFAULT_CODES: Mapping[str, int] = {}  # codes as in MachineState
_COUNTERS = tuple(COUNTS_PER_UNIT)
_NOISE_COLS = len(MACHINES) + 2  # machine powers, air demand, base load


def _zeros(n: int) -> F64:
    return np.zeros(n, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class AssetBlock:
    """Per-tick values of one asset over a block of ticks (zeros where not applicable)."""

    state: U8
    power_kw: F64
    reactive_kvar: F64
    energy_kwh: F64
    reactive_kvarh: F64
    good: I64
    scrap: I64
    material_g: F64
    air_m3min: F64
    loaded_frac: F64
    loaded: B
    pressure_bar: F64
    loaded_kwh: F64 | None = None  # compressor only: energy drawn while loaded
    power_end_kw: F64 | None = None
    """Power at each tick's end, where it differs from the tick's mean ``power_kw`` (a
    compressor changes load inside a tick; the main meter sums it). Served as ``power_kw``."""


@dataclass(frozen=True, slots=True)
class TickBlock:
    """What ``PlantModel.advance`` produced: one row per model tick."""

    t_start: F64  # physics epoch seconds at the start of each tick
    tick_s: float
    schedule_s: F64
    outdoor_temp_c: F64
    retrofit: B
    base_kwh: F64
    assets: dict[str, AssetBlock]

    def __len__(self) -> int:
        return int(self.t_start.shape[0])


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The value of every catalogue signal after the last tick, as the servers expose it.

    Analog signals are floats in engineering units; counters, state and flags are the raw
    integers written to the registers.
    """

    time: float  # physics epoch seconds at the end of the last tick
    schedule_time: float
    values: dict[str, float | int] = field(default_factory=dict)  # key "asset.signal"

    def value(self, asset: str, name: str) -> float | int:
        return self.values[signal(asset, name).key]


@dataclass(slots=True)
class _Totals:
    energy_kwh: float = 0.0
    by_state: F64 = field(default_factory=lambda: np.zeros(_N_STATES))
    ticks_by_state: I64 = field(default_factory=lambda: np.zeros(_N_STATES, dtype=np.int64))
    kvarh: float = 0.0
    good: int = 0
    scrap: int = 0
    material_g: float = 0.0
    air_m3: float = 0.0
    loaded_s: float = 0.0
    loaded_kwh: float = 0.0
    base_kwh: float = 0.0

    def add(self, blk: AssetBlock, dt: float) -> None:
        self.energy_kwh += float(blk.energy_kwh.sum())
        self.by_state += np.bincount(blk.state, weights=blk.energy_kwh, minlength=_N_STATES)
        self.ticks_by_state += np.bincount(blk.state, minlength=_N_STATES)
        self.kvarh += float(blk.reactive_kvarh.sum())
        self.good += int(blk.good.sum())
        self.scrap += int(blk.scrap.sum())
        self.material_g += float(blk.material_g.sum())
        self.air_m3 += float(blk.air_m3min.sum()) * dt / 60.0
        self.loaded_s += float(blk.loaded_frac.sum()) * dt
        if blk.loaded_kwh is not None:
            self.loaded_kwh += float(blk.loaded_kwh.sum())


class PlantModel:
    """Deterministic, seeded model of cnc1, imm1, comp1 and the site main meter.

    ``advance(n)`` runs ``n`` ticks and returns them as a :class:`TickBlock`; the model
    carries totals, counters and cycle progress between calls, so advancing in chunks
    gives the same states and part counts as one big call.
    """

    def __init__(
        self,
        *,
        seed: int = 42,
        start: float | None = None,
        tick_s: float = 0.1,
        time_scale: float = 1.0,
        schedule_start: float | None = None,
        retrofit_at: float | None = None,
        retrofit: RetrofitConfig | None = None,
        config: PlantConfig | None = None,
        tz: str | tzinfo = "UTC",
        main_rollover_s: float | None = 10.0,
        counter_init: Mapping[str, int] | None = None,
        state_codes: Mapping[str, Mapping[str, int]] | None = None,
    ) -> None:
        """``state_codes`` (asset → state label → code) serves an asset's ``state`` with
        another PLC's convention, e.g. ``{"cnc1": {"setup": 7, "producing": 2}}``; the truth
        keeps the labels."""
        tick_ms = round(tick_s * 1000)
        if tick_ms < 1 or abs(tick_ms - tick_s * 1000) > 1e-6:
            raise ValueError(f"tick_s must be a positive whole number of milliseconds, got {tick_s}")
        if time_scale <= 0:
            raise ValueError(f"time_scale must be > 0, got {time_scale}")
        self.seed = seed
        self.config = config or PlantConfig()
        self.retrofit = retrofit or RetrofitConfig()
        unknown = set(self.retrofit.assets) - set(ASSETS[:3])
        if unknown:
            raise ValueError(f"RetrofitConfig.assets names unknown assets {sorted(unknown)}")
        self.tick_s = tick_ms / 1000.0
        self._tick_ms = tick_ms
        self.time_scale = float(time_scale)
        self.start = float(_time.time() if start is None else start)
        self.retrofit_at = retrofit_at
        self.clock = LocalClock(tz)
        if schedule_start is None and self.time_scale == 1.0:
            schedule_start = self.start
        if schedule_start is None:  # compressed demo: pick a telling day, trend from the search
            ref_day = DEMO_FIRST_DAY
        else:
            ref_day = int(np.floor(self.clock.local_seconds(np.array([schedule_start]))[0] / DAY_S))
        self.schedule = Schedule(seed=seed, config=self.config, clock=self.clock, ref_day=ref_day)
        if schedule_start is None:
            schedule_start = demo_schedule_start(self.schedule, time_scale=self.time_scale)
        self.schedule_start = float(schedule_start)
        self.weather = Weather(seed=seed, site=self.config.site, clock=self.clock)

        self._rng_noise = np.random.default_rng([seed, _SALT_NOISE])
        self._rng_scrap = [np.random.default_rng([seed, _SALT_SCRAP, i]) for i in range(len(MACHINES))]
        self._cycle_ms = [round(m.cycle_s * 1000) for m in self.config.machines.values()]
        self._k = 0  # ticks done
        self._prod_ms = [0] * len(MACHINES)  # cumulative producing time, exact integer ms
        self._theta = 0.0  # compressor load/unload phase (cycles)
        self._totals = {a: _Totals() for a in ASSETS}
        self._last: TickBlock | None = None
        self._main_rollover_s = main_rollover_s
        self._counter_init = self._initial_counters(counter_init or {})
        self.state_codes = dict(state_codes or {})
        for asset, codes in self.state_codes.items():
            unknown = set(codes) - set(_STATE_LABELS)
            if unknown or not all(0 <= c < 2**16 for c in codes.values()):
                raise ValueError(
                    f"state_codes[{asset!r}]: use labels {_STATE_LABELS} mapped to uint16 codes, got {codes}"
                )

    # ---- counters --------------------------------------------------------------------------
    def _initial_counters(self, override: Mapping[str, int]) -> dict[str, int]:
        rng = np.random.default_rng([self.seed, _SALT_INIT])
        highs = {
            "energy_kwh": 10**9,
            "reactive_energy_kvarh": 5 * 10**8,
            "good_parts": 5 * 10**5,
            "scrap_parts": 2 * 10**4,
            "material_kg": 5 * 10**7,
        }
        init: dict[str, int] = {}
        for s in SIGNALS:
            if s.name in highs:
                init[s.key] = int(rng.integers(highs[s.name] // 100, highs[s.name]))
        for key, value in override.items():
            if key not in init:
                raise ValueError(f"counter_init: {key!r} is not a counter; counters are {sorted(init)}")
            if not 0 <= value < COUNTER_MODULUS:
                raise ValueError(f"counter_init[{key!r}] = {value} is outside 0 … 2^32-1")
            init[key] = int(value)
        if "main.energy_kwh" in override:
            self._main_rollover_s = None
        return init

    def _raw_units(self, asset: str, name: str) -> int:
        t = self._totals[asset]
        value = {
            "energy_kwh": t.energy_kwh * COUNTS_PER_UNIT["energy_kwh"],
            "reactive_energy_kvarh": t.kvarh * COUNTS_PER_UNIT["reactive_energy_kvarh"],
            "good_parts": float(t.good),
            "scrap_parts": float(t.scrap),
            "material_kg": t.material_g,
        }[name]
        return math.floor(value)

    def counter(self, asset: str, name: str) -> int:
        """Raw counter value now: (initial + ⌊truth·counts⌋) mod 2³²."""
        key = signal(asset, name).key
        if key not in self._counter_init:
            raise ValueError(f"{key} is not a counter; counter_reset/counter work on counters only")
        return (self._counter_init[key] + self._raw_units(asset, name)) % COUNTER_MODULUS

    def counter_reset(self, asset: str, name: str) -> None:
        """Make a counter read 0 now, like a meter swap. The truth is not touched."""
        self.counter_set(asset, name, 0)

    def counter_set(self, asset: str, name: str, value: int) -> None:
        """Make a counter read ``value`` now and count on from there (a device restart that
        reloads a stale or garbage count). The truth is not touched."""
        key = signal(asset, name).key
        if key not in self._counter_init:
            raise ValueError(
                f"{key} is not a counter; resettable signals are {', '.join(sorted(self._counter_init))}"
            )
        if not 0 <= value < COUNTER_MODULUS:
            raise ValueError(f"counter value {value} for {key} is outside 0 … 2^32-1")
        self._counter_init[key] = (value - self._raw_units(asset, name)) % COUNTER_MODULUS
        if key == "main.energy_kwh":
            self._main_rollover_s = None  # the preset rollover would overwrite it

    def counters_of(self, asset: str) -> list[str]:
        """Names of an asset's counter signals."""
        return [s.name for s in SIGNALS if s.asset == asset and s.key in self._counter_init]

    # ---- stepping --------------------------------------------------------------------------
    @property
    def ticks(self) -> int:
        return self._k

    @property
    def time(self) -> float:
        """Physics time (epoch seconds) at the end of the last tick."""
        return self.start + self._k * self.tick_s

    def advance(self, n: int = 1) -> TickBlock:
        """Run ``n`` ticks and return their values; totals and counters move on."""
        if n < 1:
            raise ValueError(f"advance(n) needs n >= 1, got {n}")
        blk = self._compute(n)
        if self._k == 0 and self._main_rollover_s is not None:
            # Put the main meter just below 2³² so it wraps ~main_rollover_s into a live run.
            counts = math.floor(
                float(blk.assets["main"].power_kw[0]) * self._main_rollover_s / 3600.0 * 10_000
            )
            self._counter_init["main.energy_kwh"] = COUNTER_MODULUS - max(1, counts)
        for a in ASSETS:
            self._totals[a].add(blk.assets[a], self.tick_s)
        self._totals["main"].base_kwh += float(blk.base_kwh.sum())
        self._k += n
        self._last = blk
        return blk

    def _compute(self, n: int) -> TickBlock:
        cfg, dt = self.config, self.tick_s
        idx = self._k + np.arange(n, dtype=np.int64)
        elapsed = idx.astype(np.float64) * dt
        t_start = self.start + elapsed
        sched = self.schedule_start + elapsed * self.time_scale
        retro: B = np.zeros(n, dtype=np.bool_)
        if self.retrofit_at is not None:
            retro = t_start >= self.retrofit_at
        temp = self.weather.temperature(sched)
        noise = self._rng_noise.standard_normal((n, _NOISE_COLS))
        rf = self.retrofit

        assets: dict[str, AssetBlock] = {}
        any_on = np.zeros(n, dtype=np.bool_)
        needs_air = np.zeros(n, dtype=np.bool_)
        air = _zeros(n)
        for mi, (name, m) in enumerate(cfg.machines.items()):
            st = self.schedule.machine_states(mi, sched)
            pw = np.asarray(m.power_kw)[st] * (1.0 + np.asarray(m.noise)[st] * noise[:, mi])
            p = np.maximum(pw, 0.0)
            if name in rf.assets:
                p = np.where(retro & (st == _IDLE), p * rf.idle_power_factor, p)
            tan_phi = np.tan(np.arccos(np.asarray(m.power_factor)))[st]
            q = p * tan_phi
            # parts: whole cycles completed, counted on exact integer milliseconds
            prod_ms = np.where(st == _PROD, self._tick_ms, 0).astype(np.int64)
            cum = self._prod_ms[mi] + np.cumsum(prod_ms)
            cycles = cum // self._cycle_ms[mi]
            prev = np.concatenate(([self._prod_ms[mi] // self._cycle_ms[mi]], cycles[:-1]))
            parts = (cycles - prev) * m.parts_per_cycle
            self._prod_ms[mi] = int(cum[-1])
            owner = np.repeat(np.arange(n), parts)
            u = self._rng_scrap[mi].random(owner.shape[0])  # same draws with or without retrofit
            p_scrap = np.full(owner.shape[0], m.scrap_prob)
            if name in rf.assets:
                p_scrap = np.where(retro[owner], p_scrap * rf.scrap_factor, p_scrap)
            scrap = np.bincount(owner, weights=u < p_scrap, minlength=n).astype(np.int64)
            purge = np.where(st == _SETUP, m.setup_material_g_per_s * dt, 0.0)
            material = (parts * m.material_g_per_part + purge).astype(np.float64)
            assets[name] = AssetBlock(
                state=st,
                power_kw=p,
                reactive_kvar=q,
                energy_kwh=p * (dt / 3600.0),
                reactive_kvarh=q * (dt / 3600.0),
                good=parts - scrap,
                scrap=scrap,
                material_g=material,
                air_m3min=_zeros(n),
                loaded_frac=_zeros(n),
                loaded=np.zeros(n, dtype=np.bool_),
                pressure_bar=_zeros(n),
            )
            any_on |= st != _OFF
            needs_air |= (st == _PROD) | (st == _SETUP)
            air += np.asarray(m.air_m3min)[st]

        assets["comp1"] = self._compressor(n, sched, any_on, needs_air, air, noise[:, -2], retro)

        site = cfg.site
        base = (
            np.where(any_on, site.base_on_kw, site.base_off_kw)
            + site.heating_kw_per_k * np.maximum(0.0, site.heating_balance_c - temp)
            + site.cooling_kw_per_k * np.maximum(0.0, temp - site.cooling_balance_c)
        )
        base = np.maximum(base * (1.0 + site.base_noise * noise[:, -1]), 0.0)
        base_q = base * math.tan(math.acos(site.base_pf))
        p_main = base + sum((assets[a].power_kw for a in ASSETS[:3]), _zeros(n))
        others = base + sum((assets[a].power_kw for a in MACHINES), _zeros(n))
        comp_end = assets["comp1"].power_end_kw
        p_main_end = None if comp_end is None else others + comp_end
        q_main = base_q + sum((assets[a].reactive_kvar for a in ASSETS[:3]), _zeros(n))
        site_state = np.full(n, _OFF, dtype=np.uint8)
        site_state[any_on | (assets["comp1"].state != _OFF)] = _IDLE
        machine_states = [assets[a].state for a in MACHINES]
        for code in (_FAULT, _SETUP, _PROD):  # later codes win: producing > setup > fault
            for st in machine_states:
                site_state[st == code] = code
        assets["main"] = AssetBlock(
            state=site_state,
            power_kw=p_main,
            power_end_kw=p_main_end,
            reactive_kvar=q_main,
            energy_kwh=p_main * (dt / 3600.0),
            reactive_kvarh=q_main * (dt / 3600.0),
            good=np.zeros(n, dtype=np.int64),
            scrap=np.zeros(n, dtype=np.int64),
            material_g=_zeros(n),
            air_m3min=_zeros(n),
            loaded_frac=_zeros(n),
            loaded=np.zeros(n, dtype=np.bool_),
            pressure_bar=_zeros(n),
        )
        return TickBlock(
            t_start=t_start,
            tick_s=dt,
            schedule_s=sched,
            outdoor_temp_c=temp,
            retrofit=retro,
            base_kwh=base * (dt / 3600.0),
            assets=assets,
        )

    def _compressor(
        self, n: int, sched: F64, any_on: B, needs_air: B, air: F64, noise: F64, retro: B
    ) -> AssetBlock:
        """Load/unload cycling without a sequential loop.

        A receiver between two pressure set points cycles with frequency
        f = D(C−D)/(V·C) and loaded share D/C (D demand, C capacity, V stored free air).
        Integrating f gives a phase θ; the compressor is loaded while frac(θ) < D/C, and
        the loaded time inside a tick follows in closed form from θ at both ends.

        The cycle follows the demand without its tick-to-tick noise: the receiver integrates
        the flow, so a flicker of demand moves the pressure by nothing. Driving the load
        state with the noisy demand made it chatter (loaded for single 0.1 s ticks whenever
        the noise moved D/C across the phase), which no real load/unload control does; the
        noisy demand is still what the plant draws and what the flow meter shows.
        """
        c = self.config.compressor
        dt = self.tick_s
        on = any_on | self.schedule.compressor_left_on(sched)
        steady = np.where(on, c.leak_m3min + air, 0.0)  # what the receiver's pressure follows
        demand = np.maximum(steady * (1.0 + c.flow_noise * noise), 0.0)  # what the plant draws
        cap = c.capacity_m3min
        duty = np.clip(steady / cap, 0.0, 1.0)
        cycling = (steady > 0.0) & (steady < cap)
        f = np.where(cycling, steady * (cap - steady) / (c.receiver_m3 * cap) / 60.0, 0.0)
        theta_end = self._theta + np.cumsum(f * dt)
        theta_start = theta_end - f * dt
        self._theta = float(theta_end[-1])

        def loaded_phase(th: F64) -> F64:
            whole = np.floor(th)
            out: F64 = whole * duty + np.minimum(th - whole, duty)
            return out

        safe_f = np.where(cycling, f, 1.0)
        loaded_s = np.where(
            cycling,
            (loaded_phase(theta_end) - loaded_phase(theta_start)) / safe_f,
            np.where(on & (steady >= cap), dt, 0.0),
        )
        lf = np.clip(loaded_s / dt, 0.0, 1.0)
        unloaded_kw = c.unloaded_kw
        p_unl = np.full(n, unloaded_kw)
        if "comp1" in self.retrofit.assets:
            p_unl = np.where(retro, unloaded_kw * self.retrofit.idle_power_factor, p_unl)
        p_load = np.where(on, c.loaded_kw * lf, 0.0)
        p_unl_kw = p_unl
        p_unl = np.where(on, p_unl * (1.0 - lf), 0.0)
        p = p_load + p_unl
        q = p_load * math.tan(math.acos(c.pf_loaded)) + p_unl * math.tan(math.acos(c.pf_unloaded))
        frac = theta_end - np.floor(theta_end)
        safe_duty = np.where((duty > 0) & (duty < 1), duty, 0.5)
        rising = frac < safe_duty
        dp = c.p_high_bar - c.p_low_bar
        pressure = np.where(
            rising,
            c.p_low_bar + dp * frac / safe_duty,
            c.p_high_bar - dp * (frac - safe_duty) / (1.0 - safe_duty),
        )
        pressure = np.where(steady >= cap, c.p_low_bar - 0.3, pressure)
        pressure = np.where(on, pressure, 0.0)
        loaded = on & ((steady >= cap) | (cycling & rising))
        state = np.where(on, np.where(needs_air, _PROD, _IDLE), _OFF).astype(np.uint8)
        return AssetBlock(
            state=state,
            power_kw=p,
            reactive_kvar=q,
            energy_kwh=p * (dt / 3600.0),
            reactive_kvarh=q * (dt / 3600.0),
            good=np.zeros(n, dtype=np.int64),
            scrap=np.zeros(n, dtype=np.int64),
            material_g=_zeros(n),
            air_m3min=demand,
            loaded_frac=lf,
            loaded=loaded,
            pressure_bar=pressure,
            loaded_kwh=p_load * (dt / 3600.0),
            # at the tick's end the compressor is either loaded or not, like its flag says
            power_end_kw=np.where(loaded, c.loaded_kw, np.where(on, p_unl_kw, 0.0)),
        )

    # ---- reporting -------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """Every catalogue signal after the last tick (raw integers for counters/state)."""
        blk = self._last
        if blk is None:
            raise RuntimeError("PlantModel.snapshot(): call advance() at least once first")
        i = len(blk) - 1
        values: dict[str, float | int] = {}
        for s in SIGNALS:
            a = blk.assets[s.asset]
            if s.name in _COUNTERS:
                values[s.key] = self.counter(s.asset, s.name)
            elif s.name == "power_kw":  # the instant the other signals describe: the tick's end
                values[s.key] = float((a.power_kw if a.power_end_kw is None else a.power_end_kw)[i])
            elif s.name == "state":
                code = int(a.state[i])
                values[s.key] = self.state_codes.get(s.asset, _DEFAULT_CODES).get(_STATE_LABELS[code], code)
            elif s.name == "air_flow_m3min":
                values[s.key] = float(a.air_m3min[i])
            elif s.name == "pressure_bar":
                values[s.key] = float(a.pressure_bar[i])
            elif s.name == "loaded":
                values[s.key] = int(a.loaded[i])
            elif s.name == "outdoor_temp_c":
                values[s.key] = float(blk.outdoor_temp_c[i])
            else:  # pragma: no cover - guarded by test_every_signal_in_snapshot
                raise AssertionError(f"snapshot: no source for {s.key}")
        return Snapshot(
            time=self.time,
            schedule_time=float(blk.schedule_s[i]) + self.tick_s * self.time_scale,
            values=values,
        )

    def truth(self) -> PlantTruth:
        """Exact totals since start; Σ energy over states equals the total for every asset."""
        out: dict[str, AssetTruth] = {}
        for a in ASSETS:
            t = self._totals[a]
            out[a] = AssetTruth(
                asset=a,
                energy_kwh=t.energy_kwh,
                energy_kwh_by_state=dict(zip(_STATE_LABELS, map(float, t.by_state), strict=True)),
                seconds_by_state=dict(
                    zip(_STATE_LABELS, (float(x) * self.tick_s for x in t.ticks_by_state), strict=True)
                ),
                reactive_kvarh=t.kvarh,
                good_parts=t.good,
                scrap_parts=t.scrap,
                material_g=t.material_g,
                air_m3=t.air_m3,
                loaded_s=t.loaded_s,
                loaded_kwh=t.loaded_kwh,
                base_kwh=t.base_kwh,
                counter_initial={
                    s.name: self._counter_init[s.key]
                    for s in SIGNALS
                    if s.asset == a and s.key in self._counter_init
                },
            )
        return PlantTruth(time=self.time, ticks=self._k, tick_s=self.tick_s, assets=out)

"""One batch of one asset → everything it contributes, plus the carry for the next batch.

This is the per-sample work of the streaming path, all vectorised: order the rows, decide
which samples are usable, classify states, turn power into trapezoid spans and counters into
exact increments. It knows nothing about windows; :mod:`apportion` books what it returns.

Conventions (documented in README.md):

* A sample is usable when its quality is Good or Uncertain (and, for analog roles, the value
  is finite). Bad/Missing samples are skipped: the next usable sample's interval spans them.
* An interval between consecutive usable samples longer than ``max_gap_s`` is a gap: power
  is not integrated across it; a counter's increment is still counted (totals stay exact)
  but booked at the gap's end, in state UNKNOWN.
* Everything an interval contributes is attributed to the state at its start — except the
  energy and time of an interval that straddles a change between two known states, which
  :mod:`state_change` splits at the estimated change instant.
* The state is observed at rows with a usable PLC state code (it wins) or usable power; an
  observation holds for at most ``max_gap_s``, after which the state is UNKNOWN.
"""

from __future__ import annotations

__all__ = ["Carry", "Contributions", "RoleCarry", "batch_contributions", "validate_batch"]

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from edge_agent.batch import Quality

from .apportion import Points, SpanSet, Target
from .counters import CounterDeltas, as_raw_counts, counter_deltas
from .spec import ANALOG_ROLES, COUNTER_ROLES, ROLES, AssetSpec, EmissionSeries, MachineState
from .state_change import NO_SWITCH, TimeBase, split_interval, time_base_at, time_base_terms
from .states import LEVEL_STATE, PowerCarry, classify_power
from .sum_columns import (
    CO2_KG,
    COUNTS_IN_STATE,
    GOOD_S,
    INTEGRAL,
    POWER_KWH_IN_STATE,
    RAW_COUNTS,
    ROW_COUNT,
    SECONDS_IN_STATE,
    UNATTRIBUTED_COUNTS,
    USABLE_S,
)
from .timeline import order_rows

log = logging.getLogger("edge_agent.analytics")

_I64 = npt.NDArray[np.int64]
_F64 = npt.NDArray[np.float64]
_UNKNOWN = int(MachineState.UNKNOWN)
_OFF = int(MachineState.OFF)
_IDLE = int(MachineState.IDLE)
_STATE_RESUMED = "state"  # in Carry.resumed: the held state ends where the dead agent's data did
_EMPTY_I = np.zeros(0, np.int64)
_EMPTY_F = np.zeros(0, np.float64)
_KWH = 1.0 / 3600.0  # kW·s → kWh
_GOOD, _UNCERTAIN = int(Quality.GOOD), int(Quality.UNCERTAIN)  # plain ints: enum lookups are slow


@dataclass(frozen=True, slots=True)
class RoleCarry:
    """The last usable sample of a role: where its next interval starts (``p``: the power
    reading at that row, NaN if none — the old side of a state change's energy split)."""

    t: int
    v: float | int
    good: bool
    state: int
    p: float = float("nan")


@dataclass(frozen=True, slots=True)
class Carry:
    """Everything one asset's analytics remembers between batches (a few numbers)."""

    first_ns: int | None = None
    latest_ns: int | None = None
    roles: Mapping[str, RoleCarry] = field(default_factory=dict)
    power: PowerCarry | None = None
    obs_t: int | None = None
    obs_state: int = _UNKNOWN
    time_base: TimeBase = field(default_factory=TimeBase)  # of the energy counter (:mod:`state_change`)
    resumed: frozenset[str] = frozenset()
    """Roles whose last sample predates an agent restart: their next interval is a gap
    whatever its length (what was made while the agent was down is unattributed); with
    ``"state"``, the held state is not stretched over the downtime either."""


@dataclass(frozen=True, slots=True)
class Contributions:
    """What one batch contributes; times are ns, amounts per :mod:`sum_columns` columns."""

    carry: Carry
    spans: list[SpanSet]
    fpoints: list[Points]
    upoints: list[Points]
    lo_ns: int | None  # earliest instant anything is booked at (None: nothing)
    energy_samples: _I64  # usable instants of the energy signal
    power_spans: tuple[_I64, _I64, _F64, _F64, npt.NDArray[np.bool_]] | None
    energy_counts: tuple[_I64, npt.NDArray[np.uint64]] | None
    duplicates: int = 0
    late: int = 0
    invalid_state: int = 0
    resets: dict[str, int] = field(default_factory=dict)
    rollovers: dict[str, int] = field(default_factory=dict)
    gaps: dict[str, int] = field(default_factory=dict)
    jumps: dict[str, int] = field(default_factory=dict)


def validate_batch(
    spec: AssetSpec,
    ts: np.ndarray,
    signals: Mapping[str, np.ndarray],
    quality: Mapping[str, np.ndarray],
) -> None:
    """Raise a ValueError naming the asset, the role and the fix for a malformed batch."""
    where = f"asset {spec.asset!r}"
    if not isinstance(ts, np.ndarray) or ts.ndim != 1 or ts.dtype != np.int64:
        raise ValueError(f"{where}: ts_ns must be a 1-D int64 array of ns since the epoch")
    n = ts.shape[0]
    for role, arr in signals.items():
        if role not in ROLES:
            raise ValueError(f"{where}: unknown role {role!r}; roles are {ROLES}")
        if role not in spec.roles:
            raise ValueError(
                f"{where}: role {role!r} is not configured; add it to the asset spec's "
                "signals/counters or stop mapping a tag to it"
            )
        if not isinstance(arr, np.ndarray) or arr.shape != (n,):
            raise ValueError(f"{where}: role {role!r} needs {n} values (one per timestamp)")
        q = quality.get(role)
        if q is None:
            raise ValueError(f"{where}: role {role!r} has values but no quality array")
        if not isinstance(q, np.ndarray) or q.shape != (n,) or q.dtype != np.uint8:
            raise ValueError(f"{where}: quality of {role!r} must be a uint8 array of {n} codes")


def _state_codes(
    v: np.ndarray, usable: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """PLC state codes as ints and the mask of usable, valid codes (0..4)."""
    if np.issubdtype(v.dtype, np.integer):
        codes = v.astype(np.int64)
    else:
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(v) & (np.round(v) == v)
        codes = np.where(ok, v, -1).astype(np.int64)
    valid = usable & (codes >= 0) & (codes <= int(MachineState.FAULT))
    return codes, valid


def _ef(spec: AssetSpec, t: _I64) -> _F64 | float:
    ef = spec.emission_factor
    if isinstance(ef, EmissionSeries):
        return ef.at(t)
    return float(ef) if ef is not None else 0.0


def _changes(
    short: npt.NDArray[np.bool_], s0: npt.NDArray[np.int64] | npt.NDArray[np.intp], s1: npt.NDArray[np.int64]
) -> npt.NDArray[np.intp]:
    """Intervals that change between two known states (to or from UNKNOWN is no change of the
    machine, only of what we know: such an interval stays with its start state)."""
    return np.flatnonzero(short & (s0 != s1) & (s0 != _UNKNOWN) & (s1 != _UNKNOWN))


def _counter_by_state(
    t0: _I64,
    t1: _I64,
    short: npt.NDArray[np.bool_],
    s0: npt.NDArray[np.intp],
    s1: _I64,
    counts: _F64,
    p: tuple[_F64, _F64, _I64],
    one: float,
    tb: TimeBase,
) -> tuple[list[Points], tuple[_I64, _I64, _I64], TimeBase]:
    """Energy-counter increments by state (raw counts, booked at each interval's start).

    An interval that changes state is split (:func:`switch.split_interval`) with what the
    intervals without a change before it taught about the time base; ``tb`` carries that from
    batch to batch. ``p`` holds power at the start and end of each interval and a known change
    instant at its end; ``one`` is a count in kW·s. Returns the points, the split intervals
    (t0, t1, τ) and the new evidence.
    """
    p0, p1, switch = p
    trap = (p0 + p1) * 0.5 * ((t1 - t0) / 1e9)
    energy = counts * one
    xx, xy, yy, w, x, xp = time_base_terms(energy, trap, short & (s0 == s1), one, tb)
    ch = _changes(short, s0, s1)
    old_part = counts.copy()
    switches = (_EMPTY_I, _EMPTY_I, _EMPTY_I)
    if ch.size:
        # the evidence gathered before each change (its own pair adds nothing)
        rho, scatter = time_base_at(
            tb.sxx + np.cumsum(xx)[ch],
            tb.sxy + np.cumsum(xy)[ch],
            tb.syy + np.cumsum(yy)[ch],
            tb.sw + np.cumsum(w)[ch],
            xp[ch],
        )
        tau, share = split_interval(t0[ch], t1[ch], energy[ch], p0[ch], p1[ch], one, switch[ch], rho, scatter)
        old_part[ch] *= share
        switches = (t0[ch], t1[ch], tau)
    tb_points = np.where(short, t0, t1)
    points = [
        Points(tb_points, COUNTS_IN_STATE + s0, old_part),
        Points(tb_points[ch], COUNTS_IN_STATE + s1[ch].astype(np.intp), counts[ch] - old_part[ch]),
    ]
    learned = TimeBase(
        tb.sxx + float(xx.sum()),
        tb.sxy + float(xy.sum()),
        tb.syy + float(yy.sum()),
        tb.sw + float(w.sum()),
        float(x[-1]),
        float(trap[-1]),
    )
    return points, switches, learned


def _change_offsets(t0: _I64, t1: _I64, known: _I64, switches: tuple[_I64, _I64, _I64]) -> _I64:
    """Where a change between observations at t0 and t1 falls (ns after t0): where the energy
    split put it if the energy signal has exactly this interval, else at a known debounce
    instant, else half way."""
    dt = t1 - t0
    tau: _I64 = np.rint(0.5 * dt).astype(np.int64)  # as :func:`switch.split_interval` falls back
    k = known != NO_SWITCH
    tau[k] = np.clip(known[k] - t0[k], 0, dt[k])
    e_t0, e_t1, e_tau = switches
    if e_t1.size:
        i = np.minimum(np.searchsorted(e_t1, t1), e_t1.size - 1)
        same = (e_t1[i] == t1) & (e_t0[i] == t0)
        tau[same] = e_tau[i[same]]
    return tau


def _time_in_state(
    carry: Carry,
    t: _I64,
    obs_state: _I64,
    obs_switch: _I64,
    switches: tuple[_I64, _I64, _I64],
    lo: int,
    hi: int,
    G: int,
) -> tuple[_I64, _I64, SpanSet]:
    """Observations (the carry's first) and the seconds in each state over [lo, hi] as spans.

    An observation holds until the next one, for at most the max gap, then the state is
    UNKNOWN. A change between observations on consecutive rows starts at the instant
    :func:`_change_offsets` gives; with rows in between (a state tag that was Bad there) it
    starts at the new observation, as the rows between were booked before it was seen.
    """
    obs = np.flatnonzero(obs_state >= 0)
    o_t = t[obs]
    o_s = obs_state[obs]
    o_row = obs
    lead: list[tuple[int, int]] = []
    if carry.obs_t is not None:
        o_t = np.concatenate(([carry.obs_t], o_t))
        o_s = np.concatenate(([carry.obs_state], o_s))
        # the carry's observation neighbours this batch's first row, unless the agent was down
        # in between: a change across its own downtime has no estimable instant (unknown time)
        adjacent = carry.latest_ns == carry.obs_t and _STATE_RESUMED not in carry.resumed
        o_row = np.concatenate(([-1 if adjacent else -2], o_row))
    else:
        lead = [(lo, int(o_t[0]) if o_t.size else hi)]
    start = o_t.copy()
    if o_t.size > 1:
        j = 1 + np.flatnonzero(
            (o_s[1:] != o_s[:-1]) & (o_t[1:] - o_t[:-1] <= G) & (o_row[1:] == o_row[:-1] + 1)
        )
        if j.size:
            start[j] = o_t[j - 1] + _change_offsets(o_t[j - 1], o_t[j], obs_switch[o_row[j]], switches)
    nxt = np.append(start[1:], hi) if o_t.size else o_t  # no observation: nothing to hold
    held = np.minimum(nxt, o_t + G)
    if carry.obs_t is not None and _STATE_RESUMED in carry.resumed and carry.latest_ns is not None:
        # across the agent's own downtime the state is unknown: hold only to the last row seen
        held[0] = min(int(held[0]), max(carry.latest_ns, carry.obs_t))
    # in time order (so windows are found without a binary search per span): the lead-in
    # before any observation, then per observation its held state and the unknown after G
    k = len(lead)
    seg_a = np.empty(k + 2 * o_t.size, np.int64)
    seg_b = np.empty_like(seg_a)
    seg_s = np.full(seg_a.size, _UNKNOWN, np.intp)
    if k:
        seg_a[0], seg_b[0] = lead[0]
    seg_a[k::2], seg_a[k + 1 :: 2] = start, held
    seg_b[k::2], seg_b[k + 1 :: 2] = held, nxt
    seg_s[k::2] = o_s
    np.maximum(seg_a, lo, out=seg_a)
    np.minimum(seg_b, hi, out=seg_b)
    keep = seg_b > seg_a
    spans = SpanSet(seg_a[keep], seg_b[keep], (Target(SECONDS_IN_STATE + seg_s[keep]),))
    return o_t, o_s, spans


def batch_contributions(
    spec: AssetSpec,
    carry: Carry,
    ts: _I64,
    signals: Mapping[str, np.ndarray],
    quality: Mapping[str, npt.NDArray[np.uint8]],
) -> Contributions:
    """Contributions of one batch (any order, duplicates allowed) and the new carry."""
    validate_batch(spec, ts, signals, quality)
    order = order_rows(ts, carry.latest_ns)
    idx = order.index
    t = ts if idx is None else ts[idx]
    n = t.shape[0]
    if n == 0:
        return Contributions(
            carry, [], [], [], None, _EMPTY_I, None, None, duplicates=order.duplicates, late=order.late
        )
    G = spec.max_gap_ns()
    lo = carry.latest_ns if carry.latest_ns is not None else int(t[0])
    hi = int(t[-1])

    def col(role: str) -> tuple[np.ndarray, npt.NDArray[np.bool_], npt.NDArray[np.bool_]] | None:
        if role not in signals:
            return None
        v = signals[role] if idx is None else signals[role][idx]
        q = quality[role] if idx is None else quality[role][idx]
        usable = q <= _UNCERTAIN
        if role in ANALOG_ROLES:
            usable &= np.isfinite(v)
        return v, usable, q == _GOOD

    # ---- states -------------------------------------------------------------------
    obs_state = np.full(n, -1, np.int64)
    obs_switch = np.full(n, NO_SWITCH, np.int64)  # known change instants (debounce timers)
    power_carry = carry.power
    invalid_state = 0
    pw = col("power")
    if spec.thresholds is not None and pw is not None:
        pu = np.flatnonzero(pw[1])
        runs, power_carry = classify_power(t[pu], pw[0][pu], spec.thresholds, carry.power)
        obs_state[pu] = LEVEL_STATE[runs.dense(pu.size)]
        obs_switch[pu[runs.start]] = runs.switch
    st = col("state")
    if st is not None:
        codes, valid = _state_codes(st[0], st[1])
        invalid_state = int(np.count_nonzero(st[1] & ~valid))
        # a compressor's state tag is its load/unload signal, which reads "unload" when the
        # compressor is switched off: where it reads unload and the power reading is below
        # off_below_kw, it is off. The reading, not the debounced power state: that stays off
        # for min_dwell_s after a start and would book a loaded compressor's energy as off.
        drawn_off = None
        if spec.kind == "compressor" and spec.thresholds is not None and pw is not None:
            drawn_off = valid & (codes == _IDLE) & pw[1] & (pw[0] < spec.thresholds.off_below_kw)
        obs_state[valid] = codes[valid]
        obs_switch[valid] = NO_SWITCH
        if drawn_off is not None:
            obs_state[drawn_off] = _OFF
    # instantaneous power at each row (NaN where none): the two sides of a change's split
    p_row = np.full(n, np.nan)
    if pw is not None and spec.power_mode == "instantaneous":
        p_row[pw[1]] = pw[0][pw[1]]
    last = np.where(obs_state >= 0, np.arange(n), -1)
    np.maximum.accumulate(last, out=last)
    have = last >= 0
    last_t = np.where(have, t[np.maximum(last, 0)], carry.obs_t if carry.obs_t is not None else 0)
    last_s = np.where(have, obs_state[np.maximum(last, 0)], carry.obs_state)
    known = have | (carry.obs_t is not None)
    s_row = np.where(known & (t - last_t <= G), last_s, _UNKNOWN)

    spans: list[SpanSet] = []
    fpoints: list[Points] = [Points(t, ROW_COUNT, 1.0)]
    upoints: list[Points] = []
    new_roles = dict(carry.roles)
    resets: dict[str, int] = {}
    rollovers: dict[str, int] = {}
    jumps: dict[str, int] = {}
    gaps: dict[str, int] = {}
    e_role = spec.energy_role
    energy_samples = _EMPTY_I
    power_spans = None
    energy_counts = None
    switches = (_EMPTY_I, _EMPTY_I, _EMPTY_I)  # energy intervals split at a change: t0, t1, τ
    time_base = carry.time_base

    # ---- per-role intervals -------------------------------------------------------
    for role in sorted(spec.roles - {"state"}):
        c = col(role)
        prev = carry.roles.get(role)
        if c is None:
            continue
        v, usable, good = c
        u = np.flatnonzero(usable)
        if u.size == 0:
            continue
        tu = t[u]
        gu = good[u]
        su = s_row[u]
        pu_ = p_row[u]
        last_p = float(pu_[-1])
        if role in COUNTER_ROLES:
            cs = spec.counters[role]
            vu = as_raw_counts(v[u], cs.maximum, f"asset {spec.asset!r} role {role!r}")
            new_roles[role] = RoleCarry(int(tu[-1]), int(vu[-1]), bool(gu[-1]), int(su[-1]), last_p)
            if prev is not None:
                vu = np.concatenate((np.array([prev.v], np.uint64), vu))
        else:
            vu = v[u].astype(np.float64)
            new_roles[role] = RoleCarry(int(tu[-1]), float(vu[-1]), bool(gu[-1]), int(su[-1]), last_p)
            if prev is not None:
                vu = np.concatenate(([float(prev.v)], vu))
        su1 = su  # state at each interval's end sample ...
        sw1 = obs_switch[u]  # ... and a known change instant there
        if prev is not None:
            tu = np.concatenate(([prev.t], tu))
            gu = np.concatenate(([prev.good], gu))
            su = np.concatenate(([prev.state], su))
            pu_ = np.concatenate(([prev.p], pu_))
        else:
            su1, sw1 = su1[1:], sw1[1:]
        if role == e_role:
            energy_samples = t[u]
        if tu.size < 2:
            continue
        t0, t1 = tu[:-1], tu[1:]
        short = (t1 - t0) <= G
        if prev is not None and role in carry.resumed:
            short[0] = False  # across the agent's own downtime: never booked to a state
        gaps[role] = int(short.size - np.count_nonzero(short))
        g01 = (gu[:-1] & gu[1:])[short].astype(np.float64)
        spans.append(SpanSet(t0[short], t1[short], (Target(USABLE_S[role]), Target(GOOD_S[role], g01))))
        if role in COUNTER_ROLES:
            cs = spec.counters[role]
            cd = counter_deltas(
                vu,
                tu,
                maximum=cs.maximum,
                scale=cs.scale,
                max_rate_per_s=spec.max_rate(role),
                step_counts=cs.step_counts,
                slack_ns=cs.slack_ns,
            )
            resets[role] = int(np.count_nonzero(cd.reset))
            rollovers[role] = int(np.count_nonzero(cd.rollover))
            if cd.jump.any():
                jumps[role] = int(np.count_nonzero(cd.jump))
                _log_jumps(spec, role, vu, tu, cd)
            tb = np.where(short, t0, t1)
            upoints.append(Points(tb, RAW_COUNTS[role], cd.delta))
            if role in UNATTRIBUTED_COUNTS:  # parts with no time: a gap, or no state known
                unattributed = ~short | (su[:-1] == _UNKNOWN)
                if unattributed.any():
                    upoints.append(
                        Points(tb[unattributed], UNATTRIBUTED_COUNTS[role], cd.delta[unattributed])
                    )
            if role == "energy_counter":
                sb = np.where(short, su[:-1], _UNKNOWN).astype(np.intp)
                counts = cd.delta.astype(np.float64)
                ends = (pu_[:-1], pu_[1:], sw1)
                one = cs.scale * 3600.0  # kW·s per count: the resolution of the split
                pts, switches, time_base = _counter_by_state(
                    t0, t1, short, sb, su1, counts, ends, one, carry.time_base
                )
                fpoints.extend(pts)
                if role == e_role and spec.emission_factor is not None:
                    counted = counts * cs.scale
                    fpoints.append(Points(tb, CO2_KG, counted * _ef(spec, tb)))
                energy_counts = (tb, cd.delta)
        else:
            v1: _F64 = vu[1:].astype(np.float64, copy=False)
            # an interval-average sample describes the interval it closes: constant density
            average = role == "power" and spec.power_mode == "interval_average"
            v0: _F64 = v1 if average else vu[:-1].astype(np.float64, copy=False)
            targets = [Target(INTEGRAL[role], _KWH if role == "power" else 1.0)]
            if role == e_role:  # power is the energy source: energy by state, CO2_KG, demand
                a, b = t0[short], t1[short]
                w0, w1 = v0[short], v1[short]
                s0 = su[:-1][short].astype(np.intp)
                energy = (w0 + w1) * 0.5 * ((b - a) / 1e9)  # kW·s
                ch = _changes(np.ones(a.size, np.bool_), s0, su1[short])
                p0, p1 = pu_[:-1][short][ch], pu_[1:][short][ch]
                tau, share = split_interval(a[ch], b[ch], energy[ch], p0, p1, np.inf, sw1[short][ch])
                old_share = np.ones(a.size)
                old_share[ch] = share
                targets.append(Target(POWER_KWH_IN_STATE + s0, _KWH * old_share))
                new_part = Target(POWER_KWH_IN_STATE + su1[short][ch].astype(np.intp), _KWH * (1.0 - share))
                spans.append(SpanSet(a[ch], b[ch], (new_part,), w0[ch], w1[ch]))
                switches = (a[ch], b[ch], tau)
                if spec.emission_factor is not None:
                    targets.append(Target(CO2_KG, np.asarray(_ef(spec, a)) * _KWH))
                power_spans = (t0, t1, v0, v1, short)
            spans.append(SpanSet(t0[short], t1[short], tuple(targets), v0[short], v1[short]))

    o_t, o_s, time_spans = _time_in_state(carry, t, obs_state, obs_switch, switches, lo, hi, G)
    spans.insert(0, time_spans)
    lo_book = min(
        [lo, *(int(s.t0.min()) for s in spans if s.t0.size), *(int(p.t.min()) for p in upoints if p.t.size)]
    )
    new_carry = Carry(
        first_ns=carry.first_ns if carry.first_ns is not None else int(t[0]),
        latest_ns=hi,
        roles=new_roles,
        power=power_carry,
        obs_t=int(o_t[-1]) if o_t.size else carry.obs_t,
        obs_state=int(o_s[-1]) if o_s.size else carry.obs_state,
        time_base=time_base,
        resumed=carry.resumed
        - {r for r, rc in new_roles.items() if rc is not carry.roles.get(r)}
        - {_STATE_RESUMED},
    )
    return Contributions(
        new_carry,
        spans,
        fpoints,
        upoints,
        lo_book,
        energy_samples,
        power_spans,
        energy_counts,
        duplicates=order.duplicates,
        late=order.late,
        invalid_state=invalid_state,
        resets=resets,
        rollovers=rollovers,
        jumps=jumps,
        gaps=gaps,
    )


def _log_jumps(spec: AssetSpec, role: str, v: npt.NDArray[np.uint64], t: _I64, cd: CounterDeltas) -> None:
    """One warning per jump (each is a single event), with what is needed to check it."""
    cs = spec.counters[role]
    source = spec.sources.get(role, role)
    for i in np.flatnonzero(cd.jump)[:10].tolist():
        dt = (int(t[i + 1]) - int(t[i])) / 1e9
        log.warning(
            "asset %r %s: counter jumped %d -> %d in %.3f s; at most %.0f counts (%.6g units at "
            "%.6g units/s plus one resolution step) are physically plausible, so nothing was "
            "booked for this step. A device restart or a swapped meter does this; if the counter "
            "really runs this fast, raise its max_rate_per_s (or the asset's rated_power_kw).",
            spec.asset,
            source,
            int(v[i]),
            int(v[i + 1]),
            dt,
            float(cd.limit[i]),
            float(cd.limit[i]) * cs.scale,
            spec.max_rate(role),
        )

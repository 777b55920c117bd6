"""Test oracle: a plain-Python reference of every KPI: one loop over the samples, no vectorisation.

It is written to be read against docs/kpi-definitions.md, not to be fast, and it is the test oracle
for the vectorised paths. It shares only the window boundaries (:func:`windows.bounds`) and
the final KPI formulas (:func:`kpis.compute_kpis`) with them; everything that turns samples
into sums — ordering, usability, hysteresis, dwell, trapezoids, counter rollovers, window
apportioning, demand candidates — is done here again, the obvious way. Hysteresis in
particular uses the textbook form (one latch per threshold), the vectorised path the zone
form, so the test also checks that the two agree.
"""

from __future__ import annotations

__all__ = ["ReferenceResult", "reference"]

import bisect
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from edge_agent.analytics.kpis import compute_kpis
from edge_agent.analytics.results import WindowKpis
from edge_agent.analytics.spec import ANALOG_ROLES, COUNTER_ROLES, AssetSpec, EmissionSeries, MachineState
from edge_agent.analytics.sum_columns import (
    CO2_KG,
    COUNTS_IN_STATE,
    GOOD_S,
    INTEGRAL,
    N_COUNT_SUMS,
    PEAK_BLOCK_KWH,
    PEAK_ROLLING_KWH,
    POWER_KWH_IN_STATE,
    RAW_COUNTS,
    ROW_COUNT,
    SECONDS_IN_STATE,
    UNATTRIBUTED_COUNTS,
    USABLE_S,
    empty_sums,
)
from edge_agent.analytics.windows import RollingWindow, bounds
from edge_agent.batch import Quality

UNKNOWN = int(MachineState.UNKNOWN)
NS = 1_000_000_000
KWH = 1 / 3600  # kW·s → kWh
LEVEL_STATE = (int(MachineState.OFF), int(MachineState.IDLE), int(MachineState.PRODUCING))


@dataclass
class ReferenceResult:
    """All windows (as one pass followed by ``flush`` reports them) and the run's totals."""

    windows: list[WindowKpis]
    raw_counts: dict[str, int] = field(default_factory=dict)
    resets: dict[str, int] = field(default_factory=dict)
    rollovers: dict[str, int] = field(default_factory=dict)
    jumps: dict[str, int] = field(default_factory=dict)
    gaps: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    power_kwh: float = 0.0
    power_kwh_by_state: list[float] = field(default_factory=lambda: [0.0] * 6)
    counter_energy_by_state: list[float] = field(default_factory=lambda: [0.0] * 6)  # raw counts
    states: list[int] = field(default_factory=list)  # S at each kept row


class _Book:
    """Sums per window for one scheme, booked one item at a time."""

    def __init__(self, b: list[int]) -> None:
        self.b = b
        n = len(b) - 1
        self.f = [[0.0] * ROWS_PLUS for _ in range(n)]
        self.u = [[0] * U_LEN for _ in range(n)]
        self.m = [[-np.inf, -np.inf] for _ in range(n)]

    def window_of(self, t: int) -> int:
        """Index of the window [b_i, b_i+1) holding instant t."""
        i = bisect.bisect_right(self.b, t) - 1
        assert 0 <= i < len(self.b) - 1, f"{t} outside windows"
        return i

    def span(self, t0: int, t1: int, col: int, amount: object) -> None:
        """Book ``amount(x0, x1)`` for each window overlap [x0, x1] of [t0, t1]."""
        i = self.window_of(t0)
        while i < len(self.b) - 1 and self.b[i] < t1:
            x0, x1 = max(t0, self.b[i]), min(t1, self.b[i + 1])
            if x1 > x0:
                self.f[i][col] += amount(x0, x1)  # type: ignore[operator]
            i += 1

    def point(self, t: int, col: int, w: float) -> None:
        self.f[self.window_of(t)][col] += w

    def upoint(self, t: int, col: int, w: int) -> None:
        self.u[self.window_of(t)][col] += w


ROWS_PLUS = ROW_COUNT + 1
U_LEN = N_COUNT_SUMS


def _usable(q: int, v: float, analog: bool) -> bool:
    if q > Quality.UNCERTAIN:
        return False
    return not (analog and not np.isfinite(v))


def reference(
    spec: AssetSpec,
    ts: np.ndarray,
    signals: Mapping[str, np.ndarray],
    quality: Mapping[str, np.ndarray],
) -> ReferenceResult:
    """KPIs of every window of the whole series, computed with plain loops."""
    G = spec.max_gap_ns()
    L = spec.demand_block_s * NS
    res = ReferenceResult(windows=[])
    # 1. rows in time order; the first row of a timestamp wins
    order = sorted(range(len(ts)), key=lambda i: int(ts[i]))
    rows: list[int] = []
    for i in order:
        if rows and int(ts[rows[-1]]) == int(ts[i]):
            res.duplicates += 1
            continue
        rows.append(i)
    if not rows:
        return res
    t = [int(ts[i]) for i in rows]
    val = {r: [signals[r][i].item() for i in rows] for r in signals}
    qual = {r: [int(quality[r][i]) for i in rows] for r in signals}

    def usable(role: str, k: int) -> bool:
        return role in val and _usable(qual[role][k], float(val[role][k]), role in ANALOG_ROLES)

    # 2. states: textbook hysteresis latches, debounce, PLC precedence
    th = spec.thresholds
    obs: list[tuple[int, int]] = []
    obs_row: list[int] = []
    hint: dict[int, int] = {}  # row → instant a debounced change took effect (its timer expired)
    a1 = a2 = level = run_start = eff = -1  # −1: nothing seen yet
    for k in range(len(t)):
        s = None
        if th is not None and "power" in spec.roles and usable("power", k):
            p = float(val["power"][k])
            h = th.hysteresis_kw / 2.0
            if a1 < 0:
                a1, a2 = int(p >= th.off_below_kw), int(p >= th.idle_below_kw)
            else:
                a1 = 1 if p >= th.off_below_kw + h else 0 if p < th.off_below_kw - h else a1
                a2 = 1 if p >= th.idle_below_kw + h else 0 if p < th.idle_below_kw - h else a2
            new = a1 + a2
            if new != level:
                level, run_start = new, t[k]
            dwell = round(th.min_dwell_s * 1e9)
            if eff < 0 or t[k] - run_start >= dwell:
                if 0 <= eff != level and dwell > 0:
                    hint[k] = run_start + dwell
                eff = level
            s = LEVEL_STATE[eff]
        if "state" in spec.roles and usable("state", k):
            code = float(val["state"][k])
            if code == int(code) and 0 <= code <= int(MachineState.FAULT):
                # a compressor's load/unload tag cannot say "off": its power reading can
                drawn_off = (
                    spec.kind == "compressor"
                    and int(code) == int(MachineState.IDLE)
                    and th is not None
                    and usable("power", k)
                    and float(val["power"][k]) < th.off_below_kw
                )
                s = int(MachineState.OFF) if drawn_off else int(code)
                hint.pop(k, None)  # the PLC's word, not the timer's
        if s is not None:
            obs.append((t[k], s))
            obs_row.append(k)

    obs_t = [o for o, _ in obs]

    def state_at(x: int) -> int:
        """The last observation at or before x, held for at most the max gap."""
        i = bisect.bisect_right(obs_t, x) - 1
        if i < 0 or x - obs[i][0] > G:
            return UNKNOWN
        return obs[i][1]

    res.states = [state_at(x) for x in t]

    # 3. everything as (kind, …) bookings, then per window scheme
    spans: list[tuple[int, int, int, object]] = []  # (t0, t1, column, amount(x0, x1))
    points: list[tuple[int, int, float]] = []
    upoints: list[tuple[int, int, int]] = []

    def const(w: float) -> object:
        return lambda x0, x1: w * (x1 - x0) / NS

    for x in t:
        points.append((x, ROW_COUNT, 1.0))
    p_at = [
        float(val["power"][k]) if spec.power_mode == "instantaneous" and usable("power", k) else float("nan")
        for k in range(len(t))
    ]
    switched: dict[tuple[int, int], int] = {}  # energy interval split at a change → τ

    def ef(x: int) -> float:
        f = spec.emission_factor
        if isinstance(f, EmissionSeries):
            i = int(np.searchsorted(f.ts_ns, x, side="right")) - 1
            return float(f.kg_per_kwh[max(i, 0)])
        return float(f) if f is not None else 0.0

    e_role = spec.energy_role
    demand_samples: list[int] = []
    power_pairs: list[tuple[int, int, float, float]] = []  # short power spans
    count_points: list[tuple[int, int]] = []
    for role in sorted(spec.roles - {"state"}):
        ks = [k for k in range(len(t)) if usable(role, k)]
        if role == e_role:
            demand_samples = [t[k] for k in ks]
        gaps = 0
        counter = role in COUNTER_ROLES
        if counter:
            cs = spec.counters[role]
            M = cs.maximum
            total = resets = rolls = jumps = 0
            fit = [0.0, 0.0, 0.0, 0.0]  # Σw·x₋², Σw·x₋·x, Σw·x², Σw over consecutive residuals
            x_prev = e_prev = math.nan
        for a, b in itertools.pairwise(ks):
            t0, t1 = t[a], t[b]
            short = t1 - t0 <= G
            gaps += not short
            if short:
                g = 1.0 if qual[role][a] == 0 and qual[role][b] == 0 else 0.0
                spans.append((t0, t1, USABLE_S[role], const(1.0)))
                spans.append((t0, t1, GOOD_S[role], const(g)))
            if counter:
                v0, v1 = int(val[role][a]), int(val[role][b])
                # plausible counts in Δt: max rate plus one resolution step (same float ops)
                lim = float(t1 - t0 + cs.slack_ns) * (spec.max_rate(role) / cs.scale) / 1e9 + cs.step_counts
                if v1 >= v0:
                    d = v1 - v0 if v1 - v0 <= lim else 0  # an implausible rise is a jump
                    jumps += d == 0 and v1 != v0
                elif M + 1 - v0 + v1 <= lim:
                    d, rolls = M + 1 - v0 + v1, rolls + 1
                elif v1 <= lim:
                    d, resets = v1, resets + 1
                else:
                    d, jumps = 0, jumps + 1  # a fall to an implausible value: a jump too
                total += d
                at = t0 if short else t1
                st = state_at(t0) if short else UNKNOWN
                upoints.append((at, RAW_COUNTS[role], d))
                if role in UNATTRIBUTED_COUNTS and st == UNKNOWN:
                    upoints.append((at, UNATTRIBUTED_COUNTS[role], d))
                if role == "energy_counter":
                    new_st = state_at(t1)
                    old_part = float(d)
                    one = cs.scale * 3600.0  # kW·s per count
                    trap = (p_at[a] + p_at[b]) * 0.5 * ((t1 - t0) / 1e9)  # P̄·Δt, kW·s
                    rx = math.nan  # relative residual ΔE/(P̄·Δt) − 1: evidence on the time base
                    if short and st != new_st and UNKNOWN not in (st, new_st):
                        rho, scatter = _time_base(fit, x_prev)
                        tau, share = _split(t0, t1, d * one, p_at[a], p_at[b], one, hint.get(b), rho, scatter)
                        old_part = d * share
                        points.append((at, COUNTS_IN_STATE + new_st, d - old_part))
                        res.counter_energy_by_state[new_st] += d - old_part
                        if role == e_role:
                            switched[(t0, t1)] = tau
                    elif short and st == new_st and trap > one:
                        rx = d * one / trap - 1.0
                        if math.isfinite(x_prev):  # a pair of consecutive residuals
                            wx = e_prev * trap
                            fit[0] += wx * x_prev * x_prev
                            fit[1] += wx * x_prev * rx
                            fit[2] += wx * rx * rx
                            fit[3] += wx
                    x_prev, e_prev = rx, trap
                    points.append((at, COUNTS_IN_STATE + st, old_part))
                    res.counter_energy_by_state[st] += old_part
                    if role == e_role:
                        count_points.append((at, d))
                        if spec.emission_factor is not None:
                            points.append((at, CO2_KG, d * cs.scale * ef(at)))
            elif short:
                p0, p1 = float(val[role][a]), float(val[role][b])
                if role == "power" and spec.power_mode == "interval_average":
                    p0 = p1  # the average over (t0, t1], reported at t1

                def lin(
                    x0: int,
                    x1: int,
                    t0: int = t0,
                    t1: int = t1,
                    p0: float = p0,
                    p1: float = p1,
                    w: float = 1.0,
                ) -> float:
                    def v(x: int) -> float:
                        return p0 + (p1 - p0) * (x - t0) / (t1 - t0)

                    return w * (v(x0) + v(x1)) / 2 * (x1 - x0) / NS

                if role == "power":
                    spans.append((t0, t1, INTEGRAL[role], lambda x0, x1, f=lin: f(x0, x1, w=KWH)))
                    whole = (p0 + p1) / 2 * (t1 - t0) / NS / 3600
                    res.power_kwh += whole
                    if role == e_role:
                        st, new_st = state_at(t0), state_at(t1)
                        share = 1.0
                        if st != new_st and UNKNOWN not in (st, new_st):
                            kws = (p0 + p1) * 0.5 * ((t1 - t0) / 1e9)
                            tau, share = _split(
                                t0, t1, kws, p_at[a], p_at[b], math.inf, hint.get(b), 1.0, 0.0
                            )
                            switched[(t0, t1)] = tau
                            w_new = KWH * (1.0 - share)
                            part = POWER_KWH_IN_STATE + new_st
                            spans.append((t0, t1, part, lambda x0, x1, f=lin, w=w_new: f(x0, x1, w=w)))
                            res.power_kwh_by_state[new_st] += whole * (1.0 - share)
                        w_old = KWH * share
                        spans.append(
                            (t0, t1, POWER_KWH_IN_STATE + st, lambda x0, x1, f=lin, w=w_old: f(x0, x1, w=w))
                        )
                        res.power_kwh_by_state[st] += whole * share
                        power_pairs.append((t0, t1, p0, p1))
                        if spec.emission_factor is not None:
                            c = ef(t0) / 3600
                            spans.append((t0, t1, CO2_KG, lambda x0, x1, f=lin, c=c: f(x0, x1, w=c)))
                else:
                    spans.append((t0, t1, INTEGRAL[role], lin))
        res.gaps[role] = gaps
        if counter:
            res.raw_counts[role] = total
            res.resets[role] = resets
            res.rollovers[role] = rolls
            res.jumps[role] = jumps

    # time in state: each observation holds until the next, for at most the max gap; a change
    # between observations on consecutive rows starts where the energy split put it (the same
    # interval), else at the debounce timer's expiry, else half way between them
    starts = [o for o, _ in obs]
    for j in range(1, len(obs)):
        (o0, s0), (o1, s1) = obs[j - 1], obs[j]
        if s0 != s1 and o1 - o0 <= G and obs_row[j] == obs_row[j - 1] + 1:
            if (o0, o1) in switched:
                tau = switched[(o0, o1)]
            elif obs_row[j] in hint:
                tau = min(max(hint[obs_row[j]] - o0, 0), o1 - o0)
            else:
                tau = round(0.5 * (o1 - o0))
            starts[j] = o0 + tau
    if not obs or obs[0][0] > t[0]:
        spans.append((t[0], obs[0][0] if obs else t[-1], SECONDS_IN_STATE + UNKNOWN, const(1.0)))
    for j, (o, s) in enumerate(obs):
        end = starts[j + 1] if j + 1 < len(obs) else t[-1]
        spans.append((starts[j], min(end, o + G), SECONDS_IN_STATE + s, const(1.0)))
        if end > o + G:
            spans.append((o + G, end, SECONDS_IN_STATE + UNKNOWN, const(1.0)))

    # 4. demand: cumulative energy and its candidate instants
    # running totals at each span start / booking, so each lookup is a bisection
    pair_t0 = [p[0] for p in power_pairs]
    pair_cum = [0.0]
    for t0, t1, p0, p1 in power_pairs:
        pair_cum.append(pair_cum[-1] + (p0 + p1) / 2 * (t1 - t0) / NS / 3600)
    count_t = [at for at, _ in count_points]
    count_cum = [0]
    for _, d in count_points:
        count_cum.append(count_cum[-1] + d)

    def energy_before(x: int) -> float:
        """Energy (kWh) booked before instant x."""
        if e_role == "power":
            i = bisect.bisect_left(pair_t0, x)  # spans starting before x: 0 .. i-1
            if i == 0:
                return 0.0
            t0, t1, p0, p1 = power_pairs[i - 1]
            if x >= t1:
                return pair_cum[i]
            px = p0 + (p1 - p0) * (x - t0) / (t1 - t0)
            return pair_cum[i - 1] + (p0 + px) / 2 * (x - t0) / NS / 3600
        scale = spec.counters["energy_counter"].scale
        return count_cum[bisect.bisect_left(count_t, x)] * scale

    cands: list[tuple[int, float, bool]] = []
    if e_role is not None and demand_samples:
        last = demand_samples[-1]
        det = last if t[-1] - last <= G else t[-1]
        first = demand_samples[0]
        seeds = set(demand_samples) | {s + L for s in demand_samples}
        seeds |= set(range((first // L) * L, det + 1, L))
        for e in sorted(seeds):
            if first + L <= e <= det:
                cands.append((e, energy_before(e) - energy_before(e - L), e % L == 0))

    # 5. per window scheme
    for w in spec.windows:
        wb = [int(x) for x in bounds(w, t[0], t[-1])]
        book = _Book(wb)
        for t0, t1, col, amount in spans:
            book.span(t0, t1, col, amount)
        for x, col, wt in points:
            book.point(x, col, wt)
        for x, col, d in upoints:
            book.upoint(x, col, d)
        nw = len(wb) - 1
        if isinstance(w, RollingWindow):
            _emit_rolling(spec, w, book, cands, L, res)
            continue
        for e, kwh, is_block in cands:
            for i in range(nw):
                if wb[i] < e <= wb[i + 1]:
                    book.m[i][PEAK_ROLLING_KWH] = max(book.m[i][PEAK_ROLLING_KWH], kwh)
                    if is_block and e - L >= wb[i]:
                        book.m[i][PEAK_BLOCK_KWH] = max(book.m[i][PEAK_BLOCK_KWH], kwh)
        for i in range(nw):
            _emit(spec, w.name, wb[i], wb[i + 1], book.f[i], book.u[i], book.m[i], res)
    return res


def _time_base(fit: list[float], x_prev: float) -> tuple[float, float]:
    """Expected ρ = D/Δt of a change interval and its scatter: regress each residual on the one
    before (x ≈ a·x₋); with a residual just before the change, predict from it."""
    sxx, sxy, syy, sw = fit
    a = min(max(sxy / sxx, -1.0), 1.0) if sxx > 0 else 0.0
    if math.isfinite(x_prev) and sw > 0:
        return min(max(1.0 + a * x_prev, 0.5), 2.0), math.sqrt(max(syy - a * sxy, 0.0) / sw)
    return 1.0, math.sqrt(max(syy / sw, 0.0)) if sw > 0 else 0.0


def _split(
    t0: int,
    t1: int,
    e: float,
    p0: float,
    p1: float,
    res: float,
    hint: int | None,
    rho: float,
    scatter: float,
) -> tuple[int, float]:
    """Where a change inside (t0, t1] fell (ns after t0) and the old state's share of the
    interval's energy e (kW·s): P0 for a fraction φ of the device time D, P1 for the rest, so
    P0·φ·D + P1·(1 − φ)·D = e; φ is the posterior mean under a uniform prior when that equation
    scatters by ``scatter`` (relative) and by the resolution ``res``; D = Δt·(ρ + scatter²/ρ),
    the length-biased device time, within ½–2 Δt."""
    dt = t1 - t0
    dt_s = dt / 1e9
    phi = 0.5  # no better guess
    dp = p0 - p1
    if math.isfinite(dp) and abs(dp) * dt_s > res:  # the powers differ by more than e resolves
        d = dt_s * min(max(rho + scatter * scatter / rho, 0.5), 2.0)
        lever = dp * d
        mu = (e - p1 * d) / lever
        sd = max(math.sqrt((scatter * e) ** 2 + res * res / 6.0) / abs(lever), 1e-12)
        phi = _truncated_mean(mu, sd)
    tau = round(phi * dt)
    if hint is not None:
        tau = min(max(hint - t0, 0), dt)
    frac = tau / dt
    w0 = p0 * frac
    w = w0 + p1 * (1.0 - frac)
    share = w0 / w if math.isfinite(w) and w > 0 else frac
    return tau, min(max(share, 0.0), 1.0)


def _truncated_mean(mu: float, sd: float) -> float:
    """Mean of N(mu, sd²) restricted to [0, 1]: mirrored so that mu ≤ ½; more than 5 sd below
    the window, in the scaled form (erfcx) that does not underflow."""
    from scipy.special import erfcx

    def cdf(x: float) -> float:
        return 0.5 * math.erfc(-x / math.sqrt(2.0))

    flip = mu > 0.5
    m0 = 1.0 - mu if flip else mu
    a, b = -m0 / sd, (1.0 - m0) / sd
    if a > 5.0:
        lr = 0.5 * (a * a - b * b)
        den = float(erfcx(a / math.sqrt(2.0))) - math.exp(lr) * float(erfcx(b / math.sqrt(2.0)))
        m = m0 + sd * math.sqrt(2.0 / math.pi) * -math.expm1(lr) / den
    else:
        z = cdf(-a) - cdf(-b) if a > 0 else cdf(b) - cdf(a)
        m = m0 + sd * (math.exp(-0.5 * a * a) - math.exp(-0.5 * b * b)) / (math.sqrt(2.0 * math.pi) * z)
    m = 1.0 - m if flip else m
    return min(max(m, 0.0), 1.0)


def _emit_rolling(
    spec: AssetSpec,
    w: RollingWindow,
    book: _Book,
    cands: list[tuple[int, float, bool]],
    L: int,
    res: ReferenceResult,
) -> None:
    b = book.b
    for j in range(len(b) - 1):
        end = b[j + 1]
        start = end - w.length_s * NS
        f = [0.0] * ROWS_PLUS
        u = [0] * U_LEN
        m = [-np.inf, -np.inf]
        for i in range(j + 1):
            if b[i] >= start:
                f = [a + c for a, c in zip(f, book.f[i], strict=True)]
                u = [a + c for a, c in zip(u, book.u[i], strict=True)]
        for e, kwh, is_block in cands:
            if start < e <= end:
                m[PEAK_ROLLING_KWH] = max(m[PEAK_ROLLING_KWH], kwh)
            if is_block and e - L >= start and e <= end:
                m[PEAK_BLOCK_KWH] = max(m[PEAK_BLOCK_KWH], kwh)
        _emit(spec, w.name, start, end, f, u, m, res)


def _emit(
    spec: AssetSpec,
    name: str,
    start: int,
    end: int,
    f: list[float],
    u: list[int],
    m: list[float],
    res: ReferenceResult,
) -> None:
    if f[ROW_COUNT] == 0 and not any(f[c] > 0 for c in USABLE_S.values()):
        return
    fa, ua, ma = empty_sums(1)
    fa[0] = f
    ua[0] = [x % (1 << 64) for x in u]
    ma[0] = m
    length = np.array([(end - start) / NS])
    k = compute_kpis(spec, fa, ua, ma, length)
    role = spec.energy_role or ("power" if "power" in spec.roles else None)
    cov = f[GOOD_S[role]] / length[0] if role is not None else 0.0
    res.windows.append(
        WindowKpis(spec.asset, name, start, end, {n: float(v[0]) for n, v in k.items()}, float(cov))
    )

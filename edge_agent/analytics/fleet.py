"""Many assets at once: one pass over 2-D arrays (assets × time) sharing one time axis.

This is the bulk path (backfills, evaluations, the benchmark). For every asset it returns
exactly what :class:`~edge_agent.analytics.StreamingAnalytics` would report for one window
scheme after ``update`` over the whole series and ``flush`` — the same definitions, summed
differently. The per-sample work is a handful of SIMD passes per signal; everything else
works on the few places where something changes:

* states come from runs of equal hysteresis zone (:func:`states.classify_rows`);
* a *segment* is a stretch of intervals with one state, one window and one emission
  factor; power is integrated per segment with ``np.add.reduceat`` and the trapezoid's
  end terms, counters telescope (``c[end] − c[start]``, plus the exact correction of each
  rollover or reset);
* the rare interval that straddles a window boundary hands the part after the boundary
  over, exactly as the streaming path apportions it;
* trailing demand is a shifted difference of the counter (or of cumulative energy).

Assets whose data is not clean — any sample that is not Good, a counter wider than 32 bit —
take the streaming path instead, so the result never depends on which path ran. The fast
path needs strictly increasing timestamps with no interval longer than the max gap or the
window.
"""

from __future__ import annotations

__all__ = ["FleetKpis", "analyse_fleet"]

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from .arrays import sorted_unique
from .kpis import compute_kpis
from .layout import (
    CE_STATE,
    CO2,
    COV,
    GOOD,
    INT,
    M_BLOCK,
    M_ROLL,
    NF,
    NM,
    NU,
    PE_STATE,
    RAW,
    ROWS,
    T_STATE,
)
from .results import WindowKpis
from .spec import ANALOG_ROLES, COUNTER_ROLES, ROLES, AssetSpec, EmissionSeries, MachineState
from .states import LEVEL_STATE, classify_rows, edges, plain_level, zones
from .streaming import StreamingAnalytics
from .switch import NO_SWITCH, TimeBase, split_interval, time_base_at, time_base_terms
from .windows import CalendarWindow, FixedWindow, bounds

_I = npt.NDArray[np.int64]
_F = npt.NDArray[np.float64]
_NS = 1_000_000_000
_KWH = 1.0 / 3.6e12  # kW·ns → kWh
_UNKNOWN = int(MachineState.UNKNOWN)
QUARTER_HOUR = FixedWindow("15min", 900)


@dataclass(frozen=True, slots=True)
class FleetKpis:
    """KPIs of A assets over W windows of one scheme: ``kpis[name]`` is an A×W array.

    ``reported[a, w]`` says whether asset a would report window w (a row fell in it or a
    signal covered part of it); unreported cells are NaN with coverage 0. ``names[a]`` are
    the KPI keys of asset a's spec. ``fast[a]`` says whether the asset took the vectorised
    fast path (the rest took the streaming path).
    """

    assets: tuple[str, ...]
    window: str
    start_ns: _I
    end_ns: _I
    kpis: Mapping[str, _F]
    coverage: _F
    reported: npt.NDArray[np.bool_]
    names: tuple[tuple[str, ...], ...]
    fast: npt.NDArray[np.bool_]

    def window_kpis(self) -> list[WindowKpis]:
        """The reported windows as :class:`WindowKpis`, asset by asset, oldest first."""
        out = []
        for a, asset in enumerate(self.assets):
            for w in np.flatnonzero(self.reported[a]):
                out.append(
                    WindowKpis(
                        asset=asset,
                        window=self.window,
                        start_ns=int(self.start_ns[w]),
                        end_ns=int(self.end_ns[w]),
                        kpis={n: float(self.kpis[n][a, w]) for n in self.names[a]},
                        coverage=float(self.coverage[a, w]),
                    )
                )
        return out


@dataclass(frozen=True, slots=True)
class _Axis:
    """The shared time axis and what every asset derives from it alone."""

    ts: _I
    b: _I  # window boundaries
    dt_ns: int | None  # constant spacing, or None
    dprev: _F  # Δt before each sample (s), 0 for the first
    dnext: _F  # Δt after each sample (s), 0 for the last
    cuts: _I  # interval indices where a window (or emission factor) changes
    straddle_k: _I  # intervals that cross a window boundary ...
    straddle_b: _I  # ... the boundary they cross ...
    straddle_w: _I  # ... and the window the boundary opens
    rows: _F  # rows per window
    demand: _DemandAxis | None


@dataclass(frozen=True, slots=True)
class _DemandAxis:
    """Demand candidates (see :mod:`demand`) on the shared axis: ends e, their samples."""

    e: _I
    je: _I  # first sample at or after e
    jl: _I  # first sample at or after e − L
    shift: int | None  # je − jl when every candidate is a sample and e − L one too
    wi: _I  # window (start, end] holding e
    starts: _I  # first candidate of each window that has one
    blk: _I  # candidates that are fixed blocks inside their window
    blk_starts: _I  # first of those per window


def _demand_axis(ts: _I, b: _I, dt_ns: int | None, block_ns: int) -> _DemandAxis | None:
    L = block_ns
    first, det = int(ts[0]), int(ts[-1])
    blocks = np.arange((first // L) * L, det + 1, L, dtype=np.int64)
    e = sorted_unique(np.concatenate((ts, ts + L, blocks)))
    e = e[(e >= first + L) & (e <= det)]
    if not e.size:
        return None
    je = np.searchsorted(ts, e, side="left")
    jl = np.searchsorted(ts, e - L, side="left")
    shift = None
    on_grid = dt_ns is not None and bool(np.all(ts[je] == e)) and bool(np.all(ts[jl] == e - L))
    if on_grid and je.size == ts.size - je[0] and bool(np.all(je - jl == je[0] - jl[0])):
        shift = int(je[0] - jl[0])  # candidates are the samples from je[0] on
    wi = np.searchsorted(b, e, side="left") - 1
    starts = np.flatnonzero(np.append(True, wi[1:] != wi[:-1]))
    blk = np.flatnonzero((e % L == 0) & (np.searchsorted(b, e - L, side="right") - 1 == wi))
    bw = wi[blk]
    blk_starts = np.flatnonzero(np.append(True, bw[1:] != bw[:-1])) if blk.size else blk
    return _DemandAxis(e, je, jl, shift, wi, starts, blk, blk_starts)


def _axis(ts: _I, window: FixedWindow | CalendarWindow, ef: EmissionSeries | None, block_ns: int) -> _Axis:
    T = ts.shape[0]
    b = bounds(window, int(ts[0]), int(ts[-1]))
    d = np.diff(ts)
    dt_ns = int(d[0]) if T > 1 and bool(np.all(d == d[0])) else None
    ds = d / 1e9
    dprev = np.concatenate(([0.0], ds))
    dnext = np.concatenate((ds, [0.0]))
    inner = b[1:-1]
    j = np.searchsorted(ts, inner, side="left")
    ok = (j > 0) & (j < T)
    cut_list = [j[ok]]
    if ef is not None:
        cut_list.append(np.searchsorted(ts, ef.ts_ns, side="left"))
    cuts = sorted_unique(np.concatenate([np.zeros(1, np.int64), *cut_list]).astype(np.int64))
    cuts = cuts[cuts < T - 1]
    st = ok & (ts[np.minimum(j, T - 1)] != inner)
    rows = np.bincount(np.searchsorted(b, ts, side="right") - 1, minlength=b.size - 1).astype(np.float64)
    return _Axis(
        ts,
        b,
        dt_ns,
        dprev,
        dnext,
        cuts,
        (j[st] - 1).astype(np.int64),
        inner[st],
        (np.flatnonzero(st) + 1).astype(np.int64),
        rows,
        _demand_axis(ts, b, dt_ns, block_ns),
    )


def _valid_codes(c: np.ndarray) -> npt.NDArray[np.bool_]:
    """Rows whose PLC state codes are all valid states (0..4)."""
    ok = (c.min(axis=1) >= 0) & (c.max(axis=1) <= int(MachineState.FAULT))
    if not np.issubdtype(c.dtype, np.integer):
        ok &= (np.round(c) == c).all(axis=1)
    return np.asarray(ok, np.bool_)


def _runs_from_codes(c: np.ndarray) -> tuple[_I, _I, npt.NDArray[np.int8]]:
    """PLC state codes (all Good and valid) as runs: row, start sample, state."""
    T = c.shape[1]
    cf = c.reshape(-1)
    brk = np.empty(cf.shape[0], np.bool_)
    brk[0] = True
    np.not_equal(cf[1:], cf[:-1], out=brk[1:])
    brk[::T] = True
    k = np.flatnonzero(brk)
    return k // T, k % T, cf[k].astype(np.int8)


def _seg_integral(
    x: np.ndarray, ax: _Axis, keys: _I, row: _I, a: _I, b: _I, last: npt.NDArray[np.bool_], average: bool
) -> _F:
    """Σ over each segment's intervals [a, b) of the trapezoid (or Σ x̄·Δt), in unit·s.

    One ``reduceat`` over the samples, plus the end terms: Σ_{k=a}^{b−1}(x_k + x_{k+1})Δt_k
    = Σ_{k=a}^{b−1} x_k(Δt_{k−1} + Δt_k) − x_a·Δt_{a−1} + x_b·Δt_{b−1}.
    """
    T = ax.ts.shape[0]
    flat = x.reshape(-1)
    xa = flat[row * T + a].astype(np.float64)
    xb = flat[row * T + b].astype(np.float64)
    s: _F
    if ax.dt_ns is not None:
        s = np.add.reduceat(flat, keys, dtype=np.float64)
        s[last] -= xb[last]  # the last segment of a row ran on to the row's last sample
        dt = ax.dt_ns / 1e9
        out: _F = dt * (s - xa + xb) if average else dt * (s - 0.5 * (xa - xb))
        return out
    w = ax.dprev if average else ax.dprev + ax.dnext
    s = np.add.reduceat((x * w).reshape(-1), keys, dtype=np.float64)
    s[last] -= xb[last] * w[b[last]]
    ends: _F = xb * ax.dprev[b] - xa * ax.dprev[a]
    return s + ends if average else 0.5 * (s + ends)


def _straddle_part(x: np.ndarray, ax: _Axis, average: bool) -> _F:
    """Integral (unit·s) of the part after the boundary of each straddling interval (R×S)."""
    k = ax.straddle_k
    t0 = ax.ts[k]
    span = (ax.ts[k + 1] - t0).astype(np.float64)
    f0 = (ax.straddle_b - t0) / span
    x0 = x[:, k].astype(np.float64)
    x1 = x[:, k + 1].astype(np.float64)
    if average:
        return x1 * ((1.0 - f0) * span / 1e9)
    return span / 1e9 * ((1.0 - f0) * x0 + (x1 - x0) * (1.0 - f0 * f0) * 0.5)


class _Scratch:
    """Chunk-sized buffers reused from chunk to chunk.

    Allocating a fresh megabyte-sized temporary per chunk costs page faults every time
    (large blocks are mmapped and returned to the OS on free); reusing them keeps the pass
    on compute and memory bandwidth.
    """

    def __init__(self) -> None:
        self._bufs: dict[tuple[str, tuple[int, ...], np.dtype[Any]], np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: npt.DTypeLike) -> np.ndarray:
        key = (name, shape, np.dtype(dtype))
        buf = self._bufs.get(key)
        if buf is None:
            buf = self._bufs[key] = np.empty(shape, dtype)
        return buf


@dataclass
class _Counter:
    """A counter of R rows: raw values plus the exact correction of every fall."""

    c: np.ndarray
    fkey: _I  # row·T + interval index of each fall
    fcum: _I  # cumulative correction before each fall (leading 0)

    def corr(self, row: _I, x: _I) -> _I:
        """Σ corrections of falls in intervals [0, x) of each row."""
        T = self.c.shape[1]
        if not self.fkey.size:
            return np.zeros(np.broadcast(row, x).shape, np.int64)
        hi = np.searchsorted(self.fkey, row * T + x, side="left")
        lo = np.searchsorted(self.fkey, row * T, side="left")
        out: _I = self.fcum[hi] - self.fcum[lo]
        return out

    def span(self, row: _I, a: _I, b: _I) -> _I:
        """Exact increments over intervals [a, b) of each row."""
        T = self.c.shape[1]
        flat = self.c.reshape(-1)
        d: _I = flat[row * T + b].astype(np.int64) - flat[row * T + a].astype(np.int64)
        return d + self.corr(row, b) - self.corr(row, a)


def _counter(c: np.ndarray, ts: _I, specs: Sequence[AssetSpec], role: str, scratch: _Scratch) -> _Counter:
    T = c.shape[1]
    flat = c.reshape(-1)
    fall = np.less(c[:, 1:], c[:, :-1], out=scratch.get("fall", (c.shape[0], T - 1), np.bool_))
    if not fall.any():
        return _Counter(c, np.zeros(0, np.int64), np.zeros(1, np.int64))
    f = np.flatnonzero(fall)
    row, k = f // (T - 1), f % (T - 1)
    v0 = flat[row * T + k].astype(np.int64)
    v1 = flat[row * T + k + 1].astype(np.int64)
    mx = np.array([specs[r].counters[role].maximum for r in row], np.int64)
    scale = np.array([specs[r].counters[role].scale for r in row])
    rate = np.array([specs[r].max_rate(role) for r in row])
    wrapped = mx + 1 - v0 + v1
    plausible = wrapped * scale <= rate * ((ts[k + 1] - ts[k]) / 1e9)
    true = np.where(plausible, wrapped, v1)
    corr = true - (v1 - v0)
    return _Counter(c, row * T + k, np.concatenate(([0], np.cumsum(corr))))


def _shape_key(spec: AssetSpec) -> tuple[object, ...]:
    """What must be equal for assets to share a chunk (per-asset numbers may differ)."""
    ef = spec.emission_factor
    return (
        spec.roles,
        spec.thresholds is not None,
        spec.power_mode,
        id(ef) if isinstance(ef, EmissionSeries) else ef is not None,
        spec.demand_block_s,
    )


def _kpi_key(spec: AssetSpec) -> tuple[object, ...]:
    """What :func:`compute_kpis` reads from a spec besides cycle time and counter scales
    (passed per window): assets sharing it share one call."""
    return (
        spec.kind,
        spec.roles,
        spec.ideal_cycle_time_s is not None,
        spec.emission_factor is not None,
        spec.planned_states,
        spec.demand_block_s,
        spec.thresholds is not None,
    )


def _check(
    specs: Sequence[AssetSpec],
    ts: _I,
    signals: Mapping[str, np.ndarray],
    quality: Mapping[str, np.ndarray] | None,
) -> tuple[int, int]:
    if not isinstance(ts, np.ndarray) or ts.ndim != 1 or ts.dtype != np.int64:
        raise ValueError("analyse_fleet: ts_ns must be a 1-D int64 array of ns since the epoch")
    A, T = len(specs), ts.shape[0]
    for role, arr in signals.items():
        if role not in ROLES:
            raise ValueError(f"analyse_fleet: unknown role {role!r}; roles are {ROLES}")
        if arr.shape != (A, T):
            raise ValueError(
                f"analyse_fleet: role {role!r} has shape {arr.shape}, expected (assets, time) = {(A, T)}"
            )
        if quality is not None and (
            role not in quality or quality[role].shape != (A, T) or quality[role].dtype != np.uint8
        ):
            raise ValueError(f"analyse_fleet: quality of {role!r} must be a uint8 array of shape {(A, T)}")
        for s in specs:
            if role not in s.roles:
                raise ValueError(f"analyse_fleet: role {role!r} is not configured for asset {s.asset!r}")
    return A, T


def analyse_fleet(
    specs: Sequence[AssetSpec],
    ts_ns: _I,
    signals: Mapping[str, np.ndarray],
    quality: Mapping[str, npt.NDArray[np.uint8]] | None = None,
    *,
    window: FixedWindow | CalendarWindow = QUARTER_HOUR,
    chunk_rows: int = 4,
) -> FleetKpis:
    """KPIs of every asset (row) over one window scheme, in one pass.

    ``signals[role]`` is an assets×time array; ``quality`` likewise (None: all Good).
    Counters stay raw integers. Rows are processed in chunks of ``chunk_rows`` so the
    working set stays in cache.
    """
    A, T = _check(specs, ts_ns, signals, quality)
    if not isinstance(window, FixedWindow | CalendarWindow):
        raise ValueError("analyse_fleet: window must be a FixedWindow or CalendarWindow")
    b = bounds(window, int(ts_ns[0]), int(ts_ns[-1])) if T else np.zeros(2, np.int64)
    W = b.size - 1
    f = np.zeros((A, W, NF))
    u = np.zeros((A, W, NU), np.uint64)
    m = np.full((A, W, NM), -np.inf)
    fast = np.zeros(A, np.bool_)
    if T >= 2 and _axis_ok(specs, ts_ns, window):
        fast = _eligible(specs, signals, quality)
        groups: dict[tuple[object, ...], list[int]] = {}
        for i in np.flatnonzero(fast).tolist():
            groups.setdefault(_shape_key(specs[i]), []).append(i)
        axes: dict[tuple[object, ...], _Axis] = {}
        scratch = _Scratch()
        for idx in groups.values():
            s = specs[idx[0]]
            ef = s.emission_factor if isinstance(s.emission_factor, EmissionSeries) else None
            key = (id(ef), s.demand_block_s)
            if key not in axes:
                axes[key] = _axis(ts_ns, window, ef, s.demand_block_s * _NS)
            rows = np.array(idx)
            for i in range(0, rows.size, chunk_rows):
                _chunk(specs, axes[key], signals, rows[i : i + chunk_rows], f, u, m, fast, scratch)
    slow = _slow_rows(specs, ts_ns, signals, quality, np.flatnonzero(~fast), window)
    return _finish(specs, window, b, f, u, m, fast, slow)


def _axis_ok(specs: Sequence[AssetSpec], ts: _I, window: FixedWindow | CalendarWindow) -> bool:
    d = np.diff(ts)
    if not d.size or int(d.min()) <= 0:
        return False
    shortest = window.length_s * _NS if isinstance(window, FixedWindow) else 3600 * _NS
    return int(d.max()) <= min(min(s.max_gap_ns() for s in specs), shortest)


def _eligible(
    specs: Sequence[AssetSpec], signals: Mapping[str, np.ndarray], quality: Mapping[str, np.ndarray] | None
) -> npt.NDArray[np.bool_]:
    A = len(specs)
    ok = np.array([("power" in s.roles and s.roles <= set(signals)) for s in specs], np.bool_)
    for role, arr in signals.items():
        if role in COUNTER_ROLES:
            if not np.issubdtype(arr.dtype, np.integer) or arr.dtype.itemsize > 4:
                return np.zeros(A, np.bool_)
            if np.issubdtype(arr.dtype, np.signedinteger):
                ok &= arr.min(axis=1) >= 0  # the streaming path raises the proper error
            mx = np.array([s.counters[role].maximum for s in specs], np.float64)
            if (mx < np.iinfo(arr.dtype).max).any():
                ok &= arr.max(axis=1) <= mx
        if quality is not None:
            ok &= ~quality[role].any(axis=1)
    return ok


def _chunk(
    specs: Sequence[AssetSpec],
    ax: _Axis,
    signals: Mapping[str, np.ndarray],
    rows: npt.NDArray[np.intp],
    f: _F,
    u: npt.NDArray[np.uint64],
    m: _F,
    fast: npt.NDArray[np.bool_],
    scratch: _Scratch,
) -> None:
    ts = ax.ts
    T = ts.shape[0]
    R = rows.size
    W = ax.b.size - 1
    sp = [specs[r] for r in rows]
    spec = sp[0]
    contiguous = rows[-1] - rows[0] + 1 == R
    sel = slice(int(rows[0]), int(rows[-1]) + 1) if contiguous else rows

    def get(role: str) -> np.ndarray:
        return signals[role][sel]

    p = get("power")
    # ---- states: PLC codes win, else power thresholds, else unknown -----------------
    if "state" in spec.roles:
        codes = get("state")
        valid = _valid_codes(codes)
        if not valid.all():
            return _retry(specs, ax, signals, rows, scratch, ~valid, f, u, m, fast)
        rrow, rpos, rstate = _runs_from_codes(codes)
        rsw = np.full(rrow.size, NO_SWITCH, np.int64)
    elif spec.thresholds is not None:
        ths = [s.thresholds for s in sp if s.thresholds is not None]
        z = zones(
            p,
            np.array([edges(th) for th in ths]),
            out=scratch.get("zones", p.shape, np.uint8),
            buf=scratch.get("cmp", p.shape, np.bool_),
        )
        init = np.array([plain_level(float(p[i, 0]), th) for i, th in enumerate(ths)], np.int8)
        dwell = np.array([round(th.min_dwell_s * 1e9) for th in ths], np.int64)
        runs, _, _, _ = classify_rows(ts, z, init, dwell, scratch=scratch.get("cmp", p.shape, np.bool_))
        rrow, rpos, rstate, rsw = runs.row, runs.start, LEVEL_STATE[runs.level], runs.switch
    else:
        rrow, rpos = np.arange(R), np.zeros(R, np.intp)
        rstate = np.full(R, _UNKNOWN, np.int8)
        rsw = np.full(R, NO_SWITCH, np.int64)
    rkey = rrow * T + rpos
    # ---- segments: one state, one window, one emission factor -----------------------
    shared = (np.arange(R)[:, None] * T + ax.cuts[None, :]).ravel()
    keys = sorted_unique(np.concatenate((rkey[rpos < T - 1], shared)))
    row = keys // T
    a = keys - row * T
    last = np.append(row[1:] != row[:-1], True)
    bnd = np.append(a[1:], T - 1)
    bnd[last] = T - 1
    state = rstate[np.searchsorted(rkey, keys, side="right") - 1].astype(np.intp)
    win = np.searchsorted(ax.b, ts[a], side="right") - 1
    cell = (row * W + win) * NF
    dur = (ts[bnd] - ts[a]) / 1e9
    average = spec.power_mode == "interval_average"
    pint = _seg_integral(p, ax, keys, row, a, bnd, last, average) / 3600.0  # kWh
    if not np.isfinite(pint).all():  # a NaN power sample: the streaming path skips it
        return _retry(
            specs, ax, signals, rows, scratch, ~np.isfinite(np.bincount(row, pint, R)), f, u, m, fast
        )
    fl = f.reshape(-1)
    off = rows[0] * W * NF if contiguous else None

    def add(idx: _I, w: _F) -> None:
        if off is not None:
            fl[off : off + R * W * NF] += np.bincount(idx, weights=w, minlength=R * W * NF)
        else:
            part = np.bincount(idx, weights=w, minlength=R * W * NF).reshape(R, W, NF)
            f[rows] += part

    add(cell + T_STATE + state, dur)
    add(cell + INT["power"], pint)
    e_role = spec.energy_role
    if e_role == "power":
        add(cell + PE_STATE + state, pint)
    for role in spec.roles - {"state"}:
        add(cell + COV[role], dur)
        add(cell + GOOD[role], dur)
    for role in (r for r in ANALOG_ROLES if r in spec.roles and r != "power"):
        add(cell + INT[role], _seg_integral(get(role), ax, keys, row, a, bnd, last, False))
    ef = spec.emission_factor
    efa: _F | float = 0.0
    if isinstance(ef, EmissionSeries):
        efa = ef.at(ts[a])
    elif ef is not None:
        efa = float(ef)
    # ---- counters: telescoping plus exact corrections --------------------------------
    uc = np.zeros((R, W, NU), np.uint64)
    ucl = uc.reshape(-1)
    ucell = (row * W + win) * NU
    counters: dict[str, _Counter] = {}
    for role in (r for r in COUNTER_ROLES if r in spec.roles):
        cnt = _counter(get(role), ts, sp, role, scratch)
        counters[role] = cnt
        d = cnt.span(row, a, bnd).astype(np.uint64)
        np.add.at(ucl, ucell + RAW[role], d)
        if role == "energy_counter":
            add(cell + CE_STATE + state, d.astype(np.float64))
            if role == e_role and ef is not None:
                scale = np.array([s.counters[role].scale for s in sp])
                add(cell + CO2, d.astype(np.float64) * scale[row] * efa)
    if e_role == "power" and ef is not None:
        add(cell + CO2, pint * efa)
    # ---- intervals straddling a window boundary hand over their later part -----------
    if ax.straddle_k.size:
        S = ax.straddle_k.size
        rr = np.repeat(np.arange(R), S)
        kk = np.tile(ax.straddle_k, R)
        ww = np.tile(ax.straddle_w, R)
        st = rstate[np.searchsorted(rkey, rr * T + kk, side="right") - 1].astype(np.intp)
        tail = np.tile((ax.ts[ax.straddle_k + 1] - ax.straddle_b) / 1e9, R)
        pe = _straddle_part(p, ax, average).reshape(-1) / 3600.0
        moves = [(T_STATE + st, tail), (INT["power"], pe)]
        if e_role == "power":
            moves.append((PE_STATE + st, pe))
        for role in spec.roles - {"state"}:
            moves += [(COV[role], tail), (GOOD[role], tail)]
        for role in (r for r in ANALOG_ROLES if r in spec.roles and r != "power"):
            moves.append((INT[role], _straddle_part(get(role), ax, False).reshape(-1)))
        if e_role == "power" and ef is not None:
            efk: _F | float = ef.at(ax.ts[kk]) if isinstance(ef, EmissionSeries) else float(ef)
            moves.append((CO2, pe * efk))
        for fld, amt in moves:
            add((rr * W + ww - 1) * NF + fld, -amt)
            add((rr * W + ww) * NF + fld, amt)
    # ---- intervals holding a state change: split at the change (see :mod:`switch`) -----
    for idx, amt in _switch_moves(sp, ax, p, counters, average, (rrow, rpos, rstate, rsw), e_role):
        add(idx, amt)
    # ---- rows per window (shared) and demand -------------------------------------------
    f[rows, :, ROWS] += ax.rows
    u[rows] += uc
    if e_role is not None:
        _demand(sp, ax, p, counters.get("energy_counter"), average, m, rows, scratch)


def _switch_moves(
    sp: Sequence[AssetSpec],
    ax: _Axis,
    p: np.ndarray,
    counters: Mapping[str, _Counter],
    average: bool,
    runs: tuple[_I, _I, npt.NDArray[np.int8], _I],
    e_role: str | None,
) -> list[tuple[_I, _F]]:
    """Move the new state's part of each change interval out of the old state (the segments
    booked the whole interval to the state at its start), window by window, exactly as the
    streaming path books it: time split at the change instant, energy by the split share."""
    rrow, rpos, rstate, rsw = runs
    i = np.flatnonzero(rpos > 0)  # every run but a row's first starts with a change
    if not i.size or e_role is None:
        return []
    r, k = rrow[i], rpos[i].astype(np.int64)
    old, new = rstate[i - 1].astype(np.intp), rstate[i].astype(np.intp)
    T, W = ax.ts.shape[0], ax.b.size - 1
    t0, t1 = ax.ts[k - 1], ax.ts[k]
    flat = p.reshape(-1)
    v1 = flat[r * T + k].astype(np.float64)
    v0 = v1 if average else flat[r * T + k - 1].astype(np.float64)
    p0, p1 = (np.full(i.size, np.nan), np.full(i.size, np.nan)) if average else (v0, v1)
    counts = np.zeros(0)
    if e_role == "energy_counter":
        cnt = counters[e_role]
        counts = cnt.span(r, k - 1, k).astype(np.float64)
        ones = np.array([s.counters[e_role].scale for s in sp]) * 3600.0  # kW·s per count
        rho, scatter = _time_base(cnt, p, ax, ones, r, k, rsw[i] == NO_SWITCH)
        tau, share = split_interval(t0, t1, counts * ones[r], p0, p1, ones[r], rsw[i], rho, scatter)
    else:
        energy = (v0 + v1) * 0.5 * ((t1 - t0) / 1e9)
        tau, share = split_interval(t0, t1, energy, p0, p1, np.inf, rsw[i])
    wa = np.searchsorted(ax.b, t0, side="right") - 1
    edge = ax.b[wa + 1]
    x = t0 + tau
    cross = t1 > edge  # the interval runs into the next window
    cell_a = (r * W + wa) * NF
    cell_b = (r[cross] * W + wa[cross] + 1) * NF
    new_a = (np.minimum(t1, edge) - np.minimum(x, edge)) / 1e9
    new_b = ((t1 - np.maximum(x, edge)) / 1e9)[cross]
    moves = [(cell_a, T_STATE, new_a), (cell_b, T_STATE, new_b)]
    if e_role == "energy_counter":
        moves.append((cell_a, CE_STATE, counts - counts * share))
    else:
        span = (t1 - t0).astype(np.float64)
        f0 = (edge - t0)[cross] / span[cross]
        a0, a1 = v0[cross], v1[cross]
        after = span[cross] / 1e9 * ((1.0 - f0) * a0 + (a1 - a0) * (1.0 - f0 * f0) * 0.5)
        before = energy.copy()
        before[cross] -= after
        moves.append((cell_a, PE_STATE, before / 3600.0 * (1.0 - share)))
        moves.append((cell_b, PE_STATE, after / 3600.0 * (1.0 - share[cross])))
    out: list[tuple[_I, _F]] = []
    for cell, col, amt in moves:
        sel = slice(None) if cell is cell_a else cross
        out += [(cell + col + new[sel], amt), (cell + col + old[sel], -amt)]
    return out


def _time_base(
    cnt: _Counter, p: np.ndarray, ax: _Axis, ones: _F, r: _I, k: _I, need: npt.NDArray[np.bool_]
) -> tuple[_F, _F]:
    """ρ and σ of the energy equation at each change (row ``r``, interval k − 1 → k), from the
    intervals without a change before it — the evidence the streaming path has gathered by then
    (:class:`switch.TimeBase`). Only rows with a change to estimate are scanned."""
    rho, sigma = np.ones(r.size), np.zeros(r.size)
    rows = np.unique(r[need])
    if not rows.size:
        return rho, sigma
    T = ax.ts.shape[0]
    d = np.diff(cnt.c[rows].astype(np.int64), axis=1).astype(np.float64)
    if cnt.fkey.size:  # rollovers and resets: the exact increment, as the counter books it
        fr, fk = cnt.fkey // T, cnt.fkey % T
        pos = np.minimum(np.searchsorted(rows, fr), rows.size - 1)
        hit = rows[pos] == fr
        d[pos[hit], fk[hit]] += np.diff(cnt.fcum)[hit]
    p64 = p[rows].astype(np.float64)
    trap = (p64[:, :-1] + p64[:, 1:]) * 0.5 * (np.diff(ax.ts) / 1e9)
    one = ones[rows][:, None]
    steady = np.ones(d.shape, np.bool_)
    own = np.searchsorted(rows, r)
    mine = np.isin(r, rows)
    steady[own[mine], k[mine] - 1] = False  # a change interval is no evidence
    terms = [  # one row at a time: a handful of rows per chunk, each a whole series
        time_base_terms(d[i] * one[i], trap[i], steady[i], float(one[i, 0]), TimeBase())
        for i in range(rows.size)
    ]
    sel = np.flatnonzero(need)
    j = k[sel] - 1
    sums = [np.stack([np.cumsum(t[n]) for t in terms])[own[sel], j] for n in range(4)]
    x_before = np.stack([t[5] for t in terms])[own[sel], j]
    rho[sel], sigma[sel] = time_base_at(sums[0], sums[1], sums[2], sums[3], x_before)
    return rho, sigma


def _retry(
    specs: Sequence[AssetSpec],
    ax: _Axis,
    signals: Mapping[str, np.ndarray],
    rows: npt.NDArray[np.intp],
    scratch: _Scratch,
    drop: npt.NDArray[np.bool_],
    f: _F,
    u: npt.NDArray[np.uint64],
    m: _F,
    fast: npt.NDArray[np.bool_],
) -> None:
    """Send the rows in ``drop`` to the streaming path and redo the chunk without them."""
    fast[rows[drop]] = False
    if (~drop).any():
        _chunk(specs, ax, signals, rows[~drop], f, u, m, fast, scratch)


def _demand(
    sp: Sequence[AssetSpec],
    ax: _Axis,
    p: np.ndarray,
    cnt: _Counter | None,
    average: bool,
    m: _F,
    rows: npt.NDArray[np.intp],
    scratch: _Scratch,
) -> None:
    """Trailing and fixed-block demand maxima per window (see :mod:`demand`)."""
    d = ax.demand
    if d is None:
        return
    R = len(sp)
    L = sp[0].demand_block_s * _NS
    val: np.ndarray
    if cnt is not None:
        scale = np.array([s.counters["energy_counter"].scale for s in sp])[:, None]
        c = cnt.c
        if d.shift is not None and not cnt.fkey.size:
            out = scratch.get("trail", (R, c.shape[1] - d.shift), c.dtype)
            val = np.subtract(c[:, d.shift :], c[:, : -d.shift], out=out)  # rows never fall: exact
        else:
            rr = np.arange(R)[:, None]
            val = (
                c[:, d.je].astype(np.int64)
                - c[:, d.jl].astype(np.int64)
                + cnt.corr(rr, d.je[None, :])
                - cnt.corr(rr, d.jl[None, :])
            )
    else:
        scale = np.ones((R, 1))
        ecum = _cum_energy(p, ax, average)
        if d.shift is not None:
            val = ecum[:, d.shift :] - ecum[:, : -d.shift]
        else:
            val = _energy_at(ecum, p, ax, d.e, average) - _energy_at(ecum, p, ax, d.e - L, average)
    w = d.wi[d.starts]
    m[rows[:, None], w[None, :], M_ROLL] = np.maximum.reduceat(val, d.starts, axis=1) * scale
    if d.blk.size:
        bw = d.wi[d.blk][d.blk_starts]
        bv = np.maximum.reduceat(val[:, d.blk], d.blk_starts, axis=1)
        m[rows[:, None], bw[None, :], M_BLOCK] = bv * scale


def _cum_energy(p: np.ndarray, ax: _Axis, average: bool) -> _F:
    """Cumulative kWh at each sample (R×T) — only needed when power is the energy source."""
    p64 = p.astype(np.float64)
    dt = np.diff(ax.ts) * _KWH
    seg = p64[:, 1:] * dt if average else (p64[:, 1:] + p64[:, :-1]) * (0.5 * dt)
    out = np.zeros(p.shape)
    np.cumsum(seg, axis=1, out=out[:, 1:])
    return out


def _energy_at(ecum: _F, p: np.ndarray, ax: _Axis, x: _I, average: bool) -> _F:
    """Cumulative kWh at arbitrary instants (within the axis), interpolating the trapezoid."""
    ts = ax.ts
    j = np.searchsorted(ts, x, side="left")
    on = ts[np.minimum(j, ts.size - 1)] == x
    out = ecum[:, np.minimum(j, ts.size - 1)].copy()
    k = j[~on] - 1
    if k.size:
        t0 = ts[k]
        span = (ts[k + 1] - t0).astype(np.float64)
        f = (x[~on] - t0) / span
        p0 = p[:, k].astype(np.float64)
        p1 = p[:, k + 1].astype(np.float64)
        part = p1 * f if average else f * p0 + (p1 - p0) * f * f * 0.5
        out[:, ~on] = ecum[:, k] + part * span * _KWH
    return out


def _slow_rows(
    specs: Sequence[AssetSpec],
    ts: _I,
    signals: Mapping[str, np.ndarray],
    quality: Mapping[str, np.ndarray] | None,
    slow: npt.NDArray[np.intp],
    window: FixedWindow | CalendarWindow,
) -> list[list[WindowKpis]]:
    """The streaming path for the assets the fast path cannot take."""
    out = []
    for a in slow:
        sa = StreamingAnalytics(replace(specs[a], windows=(window,)))
        sig = {r: v[a] for r, v in signals.items()}
        q = {r: (quality[r][a] if quality is not None else np.zeros(ts.size, np.uint8)) for r in signals}
        out.append(sa.update(ts, sig, q) + sa.flush())
    return out


def _finish(
    specs: Sequence[AssetSpec],
    window: FixedWindow | CalendarWindow,
    b: _I,
    f: _F,
    u: npt.NDArray[np.uint64],
    m: _F,
    fast: npt.NDArray[np.bool_],
    slow: list[list[WindowKpis]],
) -> FleetKpis:
    A, W = f.shape[0], f.shape[1]
    length = (b[1:] - b[:-1]) / 1e9
    cov_cols = f[:, :, min(COV.values()) : max(COV.values()) + 1]
    reported = fast[:, None] & ((f[:, :, ROWS] > 0) | (cov_cols > 0).any(axis=2))
    groups: dict[tuple[object, ...], list[int]] = {}
    for i, s in enumerate(specs):
        groups.setdefault(_kpi_key(s), []).append(i)
    kpis: dict[str, _F] = {}

    def column(name: str) -> _F:
        if name not in kpis:
            kpis[name] = np.full((A, W), np.nan)
        return kpis[name]

    coverage = np.zeros((A, W))
    names: list[tuple[str, ...]] = [()] * A
    for idx in groups.values():
        s = specs[idx[0]]
        sel = np.array(idx)
        group = [specs[i] for i in idx]
        pru = None
        if s.ideal_cycle_time_s is not None:
            pru = np.repeat([g.ideal_cycle_time_s for g in group], W).astype(np.float64)
        scales = {r: np.repeat([g.counters[r].scale for g in group], W) for r in s.counters}
        k = compute_kpis(
            s,
            f[sel].reshape(-1, NF),
            u[sel].reshape(-1, NU),
            m[sel].reshape(-1, NM),
            np.tile(length, sel.size),
            pru=pru,
            scales=scales,
        )
        for i in idx:
            names[i] = tuple(k)
        for name, v in k.items():
            column(name)[sel] = v.reshape(sel.size, W)
        role = s.energy_role or ("power" if "power" in s.roles else None)
        if role is not None:
            coverage[sel] = f[sel, :, GOOD[role]] / length
    for a, wins in zip(np.flatnonzero(~fast), slow, strict=True):
        for wk in wins:
            w = int(np.searchsorted(b, wk.start_ns))
            reported[a, w] = True
            coverage[a, w] = wk.coverage
            for name, x in wk.kpis.items():
                column(name)[a, w] = x
    for col in kpis.values():
        col[~reported] = np.nan
    coverage[~reported] = 0.0
    return FleetKpis(
        assets=tuple(s.asset for s in specs),
        window=window.name,
        start_ns=b[:-1].copy(),
        end_ns=b[1:].copy(),
        kpis=kpis,
        coverage=coverage,
        reported=reported,
        names=tuple(names),
        fast=fast,
    )

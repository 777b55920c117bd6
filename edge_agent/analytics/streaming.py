"""Streaming analytics of one asset: batches in, KPIs of closed windows out.

The per-asset state is small — the carry of :mod:`batch_contributions`, one demand block of history, the
sums of the windows still open — so KPIs computed batch by batch equal KPIs computed over
the whole series at once, for any split. A window closes as soon as nothing that arrives
later can change it: the stream has reached its end and every signal has either reported
past its end or fallen silent for longer than the max gap.
"""

from __future__ import annotations

__all__ = ["StreamingAnalytics"]

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from itertools import accumulate, pairwise

import numpy as np
import numpy.typing as npt

from .apportion import Booked, book, totals
from .arrays import sorted_unique
from .batch_contributions import Carry, Contributions, batch_contributions, validate_batch
from .demand import Candidates, DemandTracker
from .kpis import compute_kpis, part_quantities
from .reorder import ReorderBuffer, Rows
from .results import Totals, WindowKpis
from .spec import AssetSpec, MachineState
from .sum_columns import (
    COUNTS_IN_STATE,
    GOOD_S,
    N_COUNT_SUMS,
    N_FLOAT_SUMS,
    PEAK_BLOCK_KWH,
    PEAK_ROLLING_KWH,
    POWER_KWH_IN_STATE,
    RAW_COUNTS,
    ROW_COUNT,
    USABLE_S,
    empty_sums,
)
from .windows import RollingWindow, WindowSpec, bounds

_F = npt.NDArray[np.float64]
_U = npt.NDArray[np.uint64]
_I = npt.NDArray[np.int64]
_NS = 1_000_000_000


@dataclass
class _Sums:
    """Sums of consecutive windows ``[start[i], end[i])``."""

    start: _I
    end: _I
    f: _F
    u: _U
    m: _F

    @classmethod
    def empty(cls) -> _Sums:
        """No windows: one shared, read-only instance (sums are never written in place)."""
        return _NO_SUMS

    def __reduce__(self) -> tuple[type[_Sums], tuple[_I, _I, _F, _U, _F]]:
        """Pickled as its five arrays (a dataclass's generic reduce costs twice as much)."""
        return _Sums, (self.start, self.end, self.f, self.u, self.m)

    @staticmethod
    def pack(sums: list[_Sums]) -> tuple[list[int], _Sums]:
        """Several sets of windows as one (and their sizes): one array per field to pickle."""
        return [s.start.size for s in sums], _Sums(
            *(np.concatenate([getattr(s, a) for s in sums]) for a in ("start", "end", "f", "u", "m"))
        )

    def unpack(self, sizes: list[int]) -> list[_Sums]:
        """The sets :meth:`pack` joined (views: sums are never written in place)."""
        return [self.take(slice(a, b)) for a, b in pairwise(accumulate(sizes, initial=0))]

    def take(self, sel: slice | npt.NDArray[np.bool_]) -> _Sums:
        return _Sums(self.start[sel], self.end[sel], self.f[sel], self.u[sel], self.m[sel])

    def then(self, other: _Sums) -> _Sums:
        """These windows followed by ``other``'s, in new arrays (neither's are kept alive)."""
        return _Sums(
            np.concatenate((self.start, other.start)),
            np.concatenate((self.end, other.end)),
            np.concatenate((self.f, other.f)),
            np.concatenate((self.u, other.u)),
            np.concatenate((self.m, other.m)),
        )


def _no_sums() -> _Sums:
    f, u, m = empty_sums(0)
    out = _Sums(np.zeros(0, np.int64), np.zeros(0, np.int64), f, u, m)
    for a in (out.start, out.end, out.f, out.u, out.m):
        a.flags.writeable = False
    return out


_NO_SUMS = _no_sums()


@cache
def _no_open_windows(schemes: int) -> tuple[tuple[int, ...], _Sums]:
    """No open window in any of ``schemes``, packed: one shared, read-only instance (a plant
    builds 5,000 streams at start-up)."""
    sizes, sums = _Sums.pack([_NO_SUMS] * schemes)
    for a in (sums.start, sums.end, sums.f, sums.u, sums.m):
        a.flags.writeable = False
    return tuple(sizes), sums


@dataclass
class _Rolling:
    """Closed step buckets (one row each, in time order) and fixed-block energies still inside
    the rolling length. Buckets are stacked in one set of arrays, not an object per bucket."""

    buckets: _Sums = field(default_factory=_Sums.empty)
    blocks: deque[tuple[int, float]] = field(default_factory=deque)


def _emittable(f: _F) -> npt.NDArray[np.bool_]:
    """A window is reported if a row fell in it or any signal covered part of it."""
    cov = f[:, min(USABLE_S.values()) : max(USABLE_S.values()) + 1]
    return (f[:, ROW_COUNT] > 0) | (cov > 0).any(axis=1)


class StreamingAnalytics:
    """Efficiency KPIs of one asset, fed batch by batch.

    >>> sa = StreamingAnalytics(spec)
    >>> closed = sa.update(ts_ns, {"power": kw}, {"power": q})   # KPIs of windows closed
    >>> sa.totals.energy_kwh                                      # running totals
    >>> tail = sa.flush()                                         # open windows, as they stand

    ``update`` accepts rows in any order; rows older than the newest row already booked are
    dropped and counted (``totals.late``), repeated timestamps keep the first row. With
    ``reorder_s`` > 0 the newest ``reorder_s`` of rows are held back and booked in time
    order, so rows that arrive up to that late (e.g. from a second device feeding the same
    asset) are not lost — at the price of that much latency.
    ``flush`` does not discard anything: if data for an open window arrives afterwards, the
    window is reported again, complete, when it closes (same start, so stores overwrite).
    """

    def __init__(self, spec: AssetSpec, *, reorder_s: float = 0.0) -> None:
        self.spec = spec
        self._reorder = ReorderBuffer(round(reorder_s * 1e9)) if reorder_s > 0 else None
        self._carry = Carry()
        # every scheme's open windows as one set of arrays (names, sizes, sums): see _advance_windows
        names = [w.name for w in spec.windows]
        sizes, no_sums = _no_open_windows(len(names))
        self._open: tuple[list[str], list[int], _Sums] = (names, list(sizes), no_sums)
        self._closed_until: dict[str, int] = {}  # end of the last closed window, per scheme
        self._rolling: dict[str, _Rolling] = {
            w.name: _Rolling() for w in spec.windows if isinstance(w, RollingWindow)
        }
        role = spec.energy_role
        scale = spec.counters[role].scale if role is not None and role in spec.counters else None
        self._block_ns = spec.demand_block_s * _NS
        self._demand = DemandTracker(self._block_ns, scale) if role is not None else None
        self._tf = np.zeros(N_FLOAT_SUMS)
        self._tu = [0] * N_COUNT_SUMS
        self._counts: dict[str, dict[str, int]] = {"resets": {}, "rollovers": {}, "gaps": {}, "jumps": {}}
        self._dup = self._late = self._invalid = 0
        cov_role = role or ("power" if "power" in spec.roles else None)
        if cov_role is None:
            cov_role = sorted(spec.roles - {"state"})[0] if spec.roles - {"state"} else None
        self._cov_col = GOOD_S[cov_role] if cov_role is not None else None

    # ---- public -------------------------------------------------------------------
    def resumed(self) -> None:
        """This state was restored after an agent restart: whatever the counters made while
        the agent was down goes to the unattributed (unknown) state, as a gap."""
        self._carry = replace(self._carry, resumed=frozenset({*self._carry.roles, "state"}))

    def __getstate__(self) -> dict[str, object]:
        """Everything but the spec, which comes from the config: whoever restores the state
        sets ``spec`` again from the same config (the state store checks each asset's config
        digest). Pickling the spec was a third of every state save."""
        state = dict(self.__dict__)
        del state["spec"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        opens = state["_open"]
        if isinstance(opens, dict):  # saved by an earlier version: a dict of sums
            state["_open"] = (list(opens), *_Sums.pack(list(opens.values())))
        self.__dict__.update(state)

    def update(
        self,
        ts_ns: npt.NDArray[np.int64],
        signals: Mapping[str, np.ndarray],
        quality: Mapping[str, npt.NDArray[np.uint8]],
    ) -> list[WindowKpis]:
        """Feed one batch; return the KPIs of every window it closed, oldest first."""
        if self._reorder is None:
            return self._update(ts_ns, signals, quality)
        validate_batch(self.spec, ts_ns, signals, quality)
        rows = self._reorder.push(Rows(ts_ns, dict(signals), {r: quality[r] for r in signals}))
        return [] if rows is None else self._update(rows.ts, rows.signals, rows.quality)

    def _update(
        self,
        ts_ns: npt.NDArray[np.int64],
        signals: Mapping[str, np.ndarray],
        quality: Mapping[str, npt.NDArray[np.uint8]],
    ) -> list[WindowKpis]:
        res = batch_contributions(self.spec, self._carry, ts_ns, signals, quality)
        self._count(res)
        self._carry = res.carry
        if res.lo_ns is None:
            return []
        latest = res.carry.latest_ns
        assert latest is not None
        cands = self._advance_demand(res)
        limit = min([latest, *(self._determined(r) for r in self.spec.roles - {"state"})])
        # every scheme's boundaries over the batch; cut once at all of them, sum per scheme
        lo = res.lo_ns
        if cands is not None and cands.e.size:
            lo = min(lo, int(cands.e[0]) - 1)  # the window (start, end] holding e must exist
        _, sizes, open_sums = self._open
        starts = open_sums.start.tolist()
        b_of = [
            bounds(w, min(lo, starts[at]) if size else lo, latest)
            for w, size, at in zip(self.spec.windows, sizes, accumulate(sizes, initial=0), strict=False)
        ]
        lo_all = min(int(b[0]) for b in b_of) if b_of else lo
        cuts = sorted_unique(np.concatenate([np.array([lo_all, latest + 1], np.int64), *b_of]))
        booked = book(cuts, res.spans, res.fpoints, res.upoints)
        self._add_totals(booked)
        closed = self._advance_windows(b_of, booked, cands, limit)
        return self._kpis(closed)

    def flush(self) -> list[WindowKpis]:
        """KPIs of the windows still open, as they stand (partial windows have low coverage).

        Rows held back for reordering are booked first.
        """
        out: list[WindowKpis] = []
        held = self._reorder.drain() if self._reorder is not None else None
        if held is not None:
            out.extend(self._update(held.ts, held.signals, held.quality))
        open_: list[tuple[str, _Sums]] = []
        opens = self._open_sets()
        for w in self.spec.windows:
            op = opens[w.name]
            if isinstance(w, RollingWindow):
                roll = self._rolling[w.name]
                ends = range(1, op.start.size + 1)
                open_.extend(self._rolling_sums(w, roll, op.take(slice(0, i))) for i in ends)
            else:
                open_.append((w.name, op))
        return out + self._kpis(open_)

    @property
    def totals(self) -> Totals:
        """Running totals since start (energy, parts, current state, event counts)."""
        spec = self.spec
        tf = self._tf
        names = [s.name.lower() for s in MachineState]

        def qty(role: str) -> float:
            return self._tu[RAW_COUNTS[role]] * spec.counters[role].scale if role in spec.counters else np.nan

        role = spec.energy_role
        if role == "energy_counter":
            scale = spec.counters[role].scale
            energy = self._tu[RAW_COUNTS[role]] * scale
            by_state = {n: float(tf[COUNTS_IN_STATE + i]) * scale for i, n in enumerate(names)}
        elif role == "power":
            from .sum_columns import INTEGRAL

            energy = float(tf[INTEGRAL["power"]])
            by_state = {n: float(tf[POWER_KWH_IN_STATE + i]) for i, n in enumerate(names)}
        else:
            energy, by_state = np.nan, {}
        has = spec.counters.keys()
        quantities = part_quantities(
            *(qty(r) if r in has else None for r in ("part_counter", "good_part_counter", "scrap_counter"))
        )
        pq, gq, sq = (np.nan if q is None else q for q in quantities)
        c = self._carry
        state = MachineState.UNKNOWN
        if c.obs_t is not None and c.latest_ns is not None and c.latest_ns - c.obs_t <= spec.max_gap_ns():
            state = MachineState(c.obs_state)
        pw = c.roles.get("power")
        return Totals(
            energy_kwh=float(energy),
            energy_by_state_kwh=by_state,
            reactive_energy_kvarh=qty("reactive_energy_counter"),
            produced_quantity=pq,
            good_quantity=gq,
            scrap_quantity=sq,
            consumed_material=qty("material_counter"),
            kwh_per_good_part=float(energy / gq) if gq and np.isfinite(gq) else np.nan,
            state=state,
            last_power_kw=float(pw.v) if pw is not None else np.nan,
            last_ts_ns=c.latest_ns,
            raw_counts={r: self._tu[RAW_COUNTS[r]] for r in spec.counters},
            resets=dict(self._counts["resets"]),
            rollovers=dict(self._counts["rollovers"]),
            gaps=dict(self._counts["gaps"]),
            duplicates=self._dup,
            late=self._late,
            invalid_state_codes=self._invalid,
            jumps=dict(self._counts["jumps"]),
        )

    # ---- internals ----------------------------------------------------------------
    def _open_sets(self) -> dict[str, _Sums]:
        """Each scheme's open windows (views of the packed arrays: sums are never written in place)."""
        names, sizes, sums = self._open
        return dict(zip(names, sums.unpack(sizes), strict=True))

    def _count(self, res: Contributions) -> None:
        self._dup += res.duplicates
        self._late += res.late
        self._invalid += res.invalid_state
        for key, d in (
            ("resets", res.resets),
            ("rollovers", res.rollovers),
            ("gaps", res.gaps),
            ("jumps", res.jumps),
        ):
            acc = self._counts[key]
            for role, k in d.items():
                acc[role] = acc.get(role, 0) + k

    def _determined(self, role: str) -> int:
        """Up to when a role's contributions can no longer change."""
        latest = self._carry.latest_ns
        assert latest is not None
        rc = self._carry.roles.get(role)
        if rc is None or latest - rc.t > self.spec.max_gap_ns():
            return latest
        return rc.t

    def _advance_demand(self, res: Contributions) -> Candidates | None:
        d = self._demand
        role = self.spec.energy_role
        if d is None or role is None:
            return None
        d.add_samples(res.energy_samples)
        if res.power_spans is not None:
            d.add_power(*res.power_spans)
        if res.energy_counts is not None:
            d.add_counts(*res.energy_counts)
        return d.advance(self._determined(role) if role in self._carry.roles else None)

    def _add_totals(self, booked: Booked) -> None:
        f, u = totals(booked)
        self._tf += f
        for i in np.flatnonzero(u).tolist():
            self._tu[i] += int(u[i])

    def _advance_windows(
        self,
        b_of: list[npt.NDArray[np.int64]],
        booked: Booked,
        cands: Candidates | None,
        limit: int,
    ) -> list[tuple[str, _Sums]]:
        """Book this batch into every scheme's windows (bounds ``b_of``, in the spec's order),
        keep the ones still open and return the sums of those it closed (per scheme, oldest
        first; a rolling window's, one per closed bucket).

        All schemes' windows are summed as one stack: a window is a run of cells of the cuts,
        so cell → window (one row per scheme) maps every contribution, candidate and open
        window in one gather each, where a pass per scheme cost six times the calls.
        """
        windows = self.spec.windows
        names, sizes, op = self._open
        offs = list(accumulate((b.size - 1 for b in b_of), initial=0))
        total = offs[-1]
        cells = booked.cuts[:-1]
        # window (stack row) of each cell in each scheme; every contribution falls in a cell
        # inside every scheme's bounds (they reach from the batch's start to past its end)
        cw = np.stack(
            [b.searchsorted(cells, side="right") - 1 + o for b, o in zip(b_of, offs[:-1], strict=True)]
        )
        f, u, m = empty_sums(total)
        if booked.fc.size:
            idx = cw[:, booked.fc] * N_FLOAT_SUMS + booked.ff
            f += np.bincount(
                idx.ravel(), weights=np.tile(booked.fw, len(b_of)), minlength=total * N_FLOAT_SUMS
            ).reshape(total, N_FLOAT_SUMS)
        if booked.uc.size:
            idx = cw[:, booked.uc] * N_COUNT_SUMS + booked.uf
            np.add.at(u.reshape(-1), idx.ravel(), np.tile(booked.uw, len(b_of)))
        if cands is not None and cands.e.size:
            self._book_peaks(windows, cw, booked.cuts, cands, m)
        if op.start.size:  # the open windows' sums so far, each onto its window's row
            scheme = np.repeat(np.arange(len(sizes)), sizes)
            pos = cw[scheme, booked.cuts.searchsorted(op.start)]
            f[pos] += op.f
            u[pos] += op.u
            m[pos] = np.maximum(m[pos], op.m)
        ends = np.concatenate([b[1:] for b in b_of])
        allw = _Sums(np.concatenate([b[:-1] for b in b_of]), ends, f, u, m)
        still_open = np.zeros(total, np.bool_)
        open_sizes: list[int] = []
        out: list[tuple[str, _Sums]] = []
        for w, b, (a, z) in zip(windows, b_of, pairwise(offs), strict=True):
            end = ends[a:z]
            # windows closed by an earlier batch: nothing may have been booked into them again
            done = a + int(end.searchsorted(self._closed_until.get(w.name, int(b[0])), side="right"))
            if done > a:
                assert not f[a:done].any() and not u[a:done].any(), "booked into a closed window"
            k = max(done, a + int(end.searchsorted(limit, side="right")))
            if k > done:
                self._closed_until[w.name] = int(ends[k - 1])
            still_open[k:z] = True
            open_sizes.append(z - k)
            closed = allw.take(slice(done, k))
            if isinstance(w, RollingWindow):
                out.extend(self._close_buckets(w, closed))
            else:
                out.append((w.name, closed))
        # copied by the mask: no array of the batch stays alive through a view
        self._open = (names, open_sizes, allw.take(still_open))
        return out

    def _book_peaks(
        self,
        windows: tuple[WindowSpec, ...],
        cw: npt.NDArray[np.intp],
        cuts: npt.NDArray[np.int64],
        cands: Candidates,
        m: _F,
    ) -> None:
        """Demand candidates into the windows' maxima: the trailing peak of the window that
        holds each candidate instant ``e`` (``(start, end]``), the fixed-block peak where the
        whole block lies in it; a rolling scheme keeps its block candidates for its buckets."""
        cell = cuts.searchsorted(cands.e, side="left") - 1  # cuts[cell] < e <= cuts[cell + 1]
        i = cw[:, cell]
        np.maximum.at(m[:, PEAK_ROLLING_KWH], i.ravel(), np.tile(cands.kwh, len(windows)))
        if not cands.block.any():
            return
        e, kwh = cands.e[cands.block], cands.kwh[cands.block]
        fixed = [s for s, w in enumerate(windows) if not isinstance(w, RollingWindow)]
        if fixed:
            start_cell = cuts.searchsorted(e - self._block_ns, side="right") - 1  # the block's start
            j = np.where(start_cell >= 0, cw[np.ix_(np.array(fixed), np.maximum(start_cell, 0))], -1)
            ib = i[fixed][:, cands.block]
            sel = j == ib
            np.maximum.at(m[:, PEAK_BLOCK_KWH], ib[sel], np.broadcast_to(kwh, ib.shape)[sel])
        blocks = list(zip(e.tolist(), kwh.tolist(), strict=True))
        for w in windows:
            if isinstance(w, RollingWindow):
                self._rolling[w.name].blocks.extend(blocks)

    def _close_buckets(self, w: RollingWindow, closed: _Sums) -> list[tuple[str, _Sums]]:
        """A rolling scheme's buckets just closed, each ending a rolling window: the sums of those."""
        roll = self._rolling[w.name]
        out: list[tuple[str, _Sums]] = []
        for j in range(closed.start.size):
            end = int(closed.end[j])
            # the buckets this window holds: the ones from its start on, and the one just closed
            keep = int(roll.buckets.start.searchsorted(end - w.length_s * _NS))
            roll.buckets = roll.buckets.take(slice(keep, None)).then(closed.take(slice(j, j + 1)))
            out.append(self._rolling_sums(w, roll, _Sums.empty()))
            horizon = end + w.step_s * _NS - w.length_s * _NS  # next window's start
            while roll.blocks and roll.blocks[0][0] - self._block_ns < horizon:
                roll.blocks.popleft()
        return out

    def _rolling_sums(self, w: RollingWindow, roll: _Rolling, extra: _Sums) -> tuple[str, _Sums]:
        """The rolling window ending at the last bucket (closed buckets, then ``extra``)."""
        parts = [p for p in (roll.buckets, extra) if p.start.size]
        if not parts:
            return w.name, _Sums.empty()
        end = int(parts[-1].end[-1])
        start = end - w.length_s * _NS
        f, u, m = empty_sums(1)
        for p in parts:
            sel = p.start >= start
            f[0] += p.f[sel].sum(axis=0)
            u[0] += p.u[sel].sum(axis=0, dtype=np.uint64)
            if sel.any():
                m[0, PEAK_ROLLING_KWH] = max(m[0, PEAK_ROLLING_KWH], float(p.m[sel, PEAK_ROLLING_KWH].max()))
        blocks = [v for e, v in roll.blocks if e - self._block_ns >= start and e <= end]
        if blocks:
            m[0, PEAK_BLOCK_KWH] = max(blocks)
        return w.name, _Sums(np.array([start]), np.array([end]), f, u, m)

    def _kpis(self, closed: list[tuple[str, _Sums]]) -> list[WindowKpis]:
        """KPIs of the windows in ``closed`` (in that order), the ones with data only: one
        vectorised pass for all of them, since a pass costs about the same for one window or
        many and an update closes several (the live window, a rolling bucket, …)."""
        parts = [(name, s) for name, s in closed if s.start.size]
        if not parts:
            return []
        names = [name for name, s in parts for _ in range(s.start.size)]
        s = _Sums.pack([p for _, p in parts])[1] if len(parts) > 1 else parts[0][1]
        sel = _emittable(s.f)
        if not sel.all():
            s = s.take(sel)
            names = [n for n, keep in zip(names, sel.tolist(), strict=True) if keep]
        if not names:
            return []
        length = (s.end - s.start) / 1e9
        k = compute_kpis(self.spec, s.f, s.u, s.m, length)
        cov = s.f[:, self._cov_col] / length if self._cov_col is not None else np.zeros(length.size)
        keys = list(k)
        cols = [k[n].tolist() for n in keys]
        starts, ends, covs = s.start.tolist(), s.end.tolist(), cov.tolist()
        return [
            WindowKpis(
                asset=self.spec.asset,
                window=name,
                start_ns=starts[i],
                end_ns=ends[i],
                kpis=dict(zip(keys, (c[i] for c in cols), strict=True)),
                coverage=covs[i],
            )
            for i, name in enumerate(names)
        ]

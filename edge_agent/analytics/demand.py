"""Peak demand: the largest energy in a demand block (15 min), fixed and trailing.

Fixed blocks are epoch-aligned ``[b − L, b)``; the peak of a window is the largest block
inside it. The trailing (rolling) demand at instant ``e`` is the energy in ``[e − L, e)``;
a window's rolling peak is the largest over instants ``e`` in ``(start, end]``, evaluated
at every sample instant of the energy signal, every sample instant + L and every block end
(so a fixed block is always among the candidates and rolling ≥ fixed). Instants whose block
reaches back before the first sample are skipped: they never saw a full block. Demand in kW
is ``3600/L`` × the block's kWh (4× for 15 min).

The tracker keeps just enough history (one block) to evaluate candidates batch by batch
exactly as one pass would; a candidate is evaluated only once the energy before it can no
longer change (``determined``).
"""

from __future__ import annotations

__all__ = ["Candidates", "DemandTracker"]

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .arrays import sorted_unique

_I64 = npt.NDArray[np.int64]
_F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Candidates:
    """Demand-window ends ``e`` with the energy (kWh) in ``[e − L, e)``."""

    e: _I64
    kwh: _F64
    block: npt.NDArray[np.bool_]  # True where e is a fixed block end


class DemandTracker:
    """Cumulative energy of one asset with one block of history.

    Energy is either power spans (trapezoid, continuous) or counter increments booked at
    instants (exact integers × ``counter_scale``).
    """

    def __init__(self, block_ns: int, counter_scale: float | None) -> None:
        self.block_ns = block_ns
        self.scale = counter_scale
        self._first: int | None = None
        self._det: int | None = None
        self._samples = np.zeros(0, np.int64)
        # power history: contiguous spans and the cumulative kWh at each span start
        self._t0 = np.zeros(0, np.int64)
        self._t1 = np.zeros(0, np.int64)
        self._v0 = np.zeros(0, np.float64)
        self._v1 = np.zeros(0, np.float64)
        self._ok = np.zeros(0, np.bool_)
        self._cum0 = np.zeros(0, np.float64)
        self._total = 0.0
        # counter history, on the sample instants: the raw count booked at or before each
        # instant, relative to ``_base`` (all booked before the first); a count is booked at a
        # sample instant of the energy signal, so one array of instants serves both the
        # candidates and the counts. ``_seed`` is False at an instant that only holds a booking.
        self._seed = np.zeros(0, np.bool_)
        self._cum: npt.NDArray[np.unsignedinteger[Any]] = np.zeros(0, np.uint32)
        self._base = 0

    def add_samples(self, t: _I64) -> None:
        """Usable sample instants of the energy signal (candidate seeds), after those before."""
        if t.size:
            if self._first is None:
                self._first = int(t[0])
            self._samples = np.concatenate((self._samples, t))
            if self.scale is not None:  # nothing booked at them yet
                last = self._cum[-1:] if self._cum.size else np.zeros(1, self._cum.dtype)
                self._cum = np.concatenate((self._cum, np.repeat(last, t.size)))
                self._seed = np.concatenate((self._seed, np.ones(t.size, np.bool_)))

    def add_power(self, t0: _I64, t1: _I64, v0: _F64, v1: _F64, ok: npt.NDArray[np.bool_]) -> None:
        """Consecutive power spans (kW); spans with ``ok`` False are gaps worth nothing."""
        if not t0.size:
            return
        kwh = np.where(ok, (v0 + v1) * 0.5 * ((t1 - t0) / 3.6e12), 0.0)
        run = np.cumsum(kwh)
        self._cum0 = np.concatenate((self._cum0, self._total + run - kwh))
        self._total += float(run[-1])
        self._t0 = np.concatenate((self._t0, t0))
        self._t1 = np.concatenate((self._t1, t1))
        self._v0 = np.concatenate((self._v0, v0))
        self._v1 = np.concatenate((self._v1, v1))
        self._ok = np.concatenate((self._ok, ok))

    def add_counts(self, tb: _I64, delta: npt.NDArray[np.uint64]) -> None:
        """Counter increments booked at instants ``tb`` (non-decreasing): sample instants
        (added before), else kept as instants that are no candidate."""
        if not tb.size:
            return
        s = self._samples
        i = np.searchsorted(s, tb)
        absent = i >= s.size
        absent[~absent] = s[i[~absent]] != tb[~absent]
        if absent.any():  # not expected (counts are booked at samples), but kept exact
            self._insert(np.unique(tb[absent]))
            i = np.searchsorted(self._samples, tb)
        booked = np.zeros(self._samples.size, np.uint64)
        np.add.at(booked, i, delta.astype(np.uint64, copy=False))
        cum = self._cum + np.cumsum(booked, dtype=np.uint64)
        # 4 bytes an instant while the history's counts fit (almost always: 2³² counts in 15 min)
        self._cum = cum.astype(np.uint32) if cum[-1] < 2**32 else cum

    def _insert(self, t: _I64) -> None:
        """Instants that hold a booking but are no candidate, in time order among the others."""
        at = np.searchsorted(self._samples, t)
        before = np.concatenate((np.zeros(1, self._cum.dtype), self._cum))[at]  # booked up to them
        self._samples = np.insert(self._samples, at, t)
        self._cum = np.insert(self._cum, at, before)
        self._seed = np.insert(self._seed, at, False)

    def _energy_power(self, x: _I64) -> _F64:
        i = np.searchsorted(self._t1, x, side="left")
        out = np.full(x.shape, self._total)
        inside = i < self._t1.size
        j = i[inside]
        xi = x[inside]
        t0 = self._t0[j]
        span = (self._t1[j] - t0).astype(np.float64)
        f = np.clip((xi - t0) / span, 0.0, 1.0)
        v0 = self._v0[j]
        part = span / 3.6e12 * (f * v0 + (self._v1[j] - v0) * f * f * 0.5)
        out[inside] = self._cum0[j] + np.where(self._ok[j], part, 0.0)
        return out

    def _count(self, x: _I64) -> npt.NDArray[np.uint64]:
        """Raw count booked before each ``x``, relative to ``_base``."""
        j = np.searchsorted(self._samples, x, side="left")
        before = np.concatenate((np.zeros(1, np.uint64), self._cum.astype(np.uint64, copy=False)))
        out: npt.NDArray[np.uint64] = before[j]
        return out

    def advance(self, determined: int | None) -> Candidates:
        """Evaluate every candidate in ``(previous determined, determined]``."""
        L = self.block_ns
        empty = Candidates(np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.bool_))
        if determined is None or self._first is None or (self._det is not None and determined <= self._det):
            return empty
        lo = self._first + L - 1  # exclusive: a full block must fit after the first sample
        if self._det is not None:
            lo = max(lo, self._det)
        s = self._samples  # sorted: take only the seeds that land in (lo, determined]
        if self.scale is not None and not self._seed.all():
            s = s[self._seed]
        near = s[s.searchsorted(lo, side="right") : s.searchsorted(determined, side="right")]
        early = s[s.searchsorted(lo - L, side="right") : s.searchsorted(determined - L, side="right")]
        blocks = np.arange((lo // L + 1) * L, determined + 1, L, dtype=np.int64)
        e = sorted_unique(np.concatenate((near, early + L, blocks)))
        if self.scale is None:
            kwh = self._energy_power(e) - self._energy_power(e - L)
        else:
            kwh = (self._count(e) - self._count(e - L)).astype(np.float64) * self.scale
        self._det = determined
        self._trim(determined - L)
        return Candidates(e, kwh, e % L == 0)

    def _trim(self, keep_from: int) -> None:
        """Forget what no later candidate needs: every later one evaluates instants after
        ``keep_from`` (a count booked at or before it is in ``_base``)."""
        k = int(self._samples.searchsorted(keep_from, side="right"))
        if k and self.scale is not None:
            dropped = int(self._cum[k - 1])
            self._base += dropped
            cum = self._cum[k:] - self._cum.dtype.type(dropped)
            self._cum = cum.astype(np.uint32) if cum.size and cum[-1] < 2**32 else cum
            self._seed = self._seed[k:]
        self._samples = self._samples[k:]
        i = int(self._t1.searchsorted(keep_from, side="right"))
        if i:
            self._t0, self._t1, self._ok = self._t0[i:], self._t1[i:], self._ok[i:]
            self._v0, self._v1, self._cum0 = self._v0[i:], self._v1[i:], self._cum0[i:]

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A tracker saved before its counts moved onto the sample instants (booking instants
        ``_tb`` and counts ``_cum`` after each) is converted: the same counts at every instant."""
        if "_tb" in state:
            tb, cum, base = state.pop("_tb"), state["_cum"], int(state["_base"])
            samples = state["_samples"]
            instants = np.union1d(samples, tb).astype(np.int64)
            after = np.concatenate(([np.uint64(base)], cum.astype(np.uint64)))
            at = after[np.searchsorted(tb, instants, side="right")] - np.uint64(base)
            state["_samples"], state["_cum"], state["_base"] = instants, at, base
            state["_seed"] = np.isin(instants, samples)
        self.__dict__.update(state)

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
        # counter history: booking instants and the cumulative raw count after each
        self._tb = np.zeros(0, np.int64)
        self._cum = np.zeros(0, np.uint64)
        self._base = np.uint64(0)

    def add_samples(self, t: _I64) -> None:
        """Usable sample instants of the energy signal (candidate seeds)."""
        if t.size:
            if self._first is None:
                self._first = int(t[0])
            self._samples = np.concatenate((self._samples, t))

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
        """Counter increments booked at instants ``tb`` (non-decreasing)."""
        if not tb.size:
            return
        last = self._cum[-1] if self._cum.size else self._base
        self._cum = np.concatenate((self._cum, last + np.cumsum(delta, dtype=np.uint64)))
        self._tb = np.concatenate((self._tb, tb))

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
        j = np.searchsorted(self._tb, x, side="left")
        before = np.concatenate(([self._base], self._cum))
        return before[j]

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
        self._samples = self._samples[self._samples.searchsorted(keep_from, side="right") :]
        i = int(self._t1.searchsorted(keep_from, side="right"))
        if i:
            self._t0, self._t1, self._ok = self._t0[i:], self._t1[i:], self._ok[i:]
            self._v0, self._v1, self._cum0 = self._v0[i:], self._v1[i:], self._cum0[i:]
        j = int(self._tb.searchsorted(keep_from, side="left"))
        if j:
            self._base = self._cum[j - 1]
            self._tb = self._tb[j:]
            self._cum = self._cum[j:]

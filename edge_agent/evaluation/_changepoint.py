"""Balance-point grid search for change-point models, all candidates solved at once.

The degree-day columns of every candidate are projected off the constants and linear terms
(Frisch–Waugh–Lovell), their Gram matrix is formed with one matrix product, and each
candidate's small normal equations are gathered into a stack and solved by one batched
``np.linalg.solve``. A coarse grid between the 10th and 90th temperature percentiles is
followed by a fine grid around the best coarse point.
"""

from __future__ import annotations

__all__ = ["ChangePointBank", "NoChangePoint", "find_balance_points"]

from dataclasses import dataclass

import numpy as np

from edge_agent.evaluation._absorb import GroupAbsorber
from edge_agent.evaluation._arrays import FloatArray, IntArray
from edge_agent.evaluation._channels import Role
from edge_agent.evaluation._frame import Frame
from edge_agent.evaluation._spec import Shape

COARSE_CANDIDATES = 41
FINE_CANDIDATES = 21
_LOW_Q, _HIGH_Q = 0.10, 0.90


class NoChangePoint(Exception):
    """The data hold no usable change point for this shape; the message says why."""


@dataclass(frozen=True, slots=True)
class ChangePointBank:
    """The coarse grid and its degree-day columns for one frame (reused by every candidate)."""

    grid: FloatArray  # (K,) °C
    hdd: FloatArray  # (n, K)
    cdd: FloatArray  # (n, K)

    @classmethod
    def for_frame(cls, frame: Frame, n_candidates: int = COARSE_CANDIDATES) -> ChangePointBank:
        if frame.degree_days is None or Role.TEMPERATURE not in frame.variables:
            raise NoChangePoint("no outdoor temperature data")
        lo, hi = np.quantile(frame.variables[Role.TEMPERATURE], [_LOW_Q, _HIGH_Q])
        if not hi - lo > 0.5:
            raise NoChangePoint(f"outdoor temperature barely varies ({lo:.1f}–{hi:.1f} °C)")
        grid = np.linspace(lo, hi, n_candidates)
        return cls(grid, frame.degree_days.hdd(grid), frame.degree_days.cdd(grid))

    def take(self, rows: IntArray) -> ChangePointBank:
        return ChangePointBank(self.grid, self.hdd[rows], self.cdd[rows])


def _candidate_sets(shape: Shape, grid_h: FloatArray, grid_c: FloatArray) -> IntArray:
    """Column indices into [hdd columns | cdd columns] for every candidate of ``shape``."""
    kh, kc = grid_h.shape[0], grid_c.shape[0]
    if shape is Shape.HEATING_3P:
        return np.asarray(np.arange(kh, dtype=np.int64)[:, None])
    if shape is Shape.COOLING_3P:
        return np.asarray((kh + np.arange(kc, dtype=np.int64))[:, None])
    if shape is Shape.FOUR_P:  # both columns share one change point (grids are equal)
        k = np.arange(kh, dtype=np.int64)
        return np.stack([k, kh + k], axis=1)
    i, j = np.meshgrid(np.arange(kh), np.arange(kc), indexing="ij")
    ok = grid_h[i] <= grid_c[j]  # heating balance point at or below the cooling one
    return np.stack([i[ok], kh + j[ok]], axis=1).astype(np.int64)


def _search(
    yr: FloatArray,
    q: FloatArray | None,
    hdd_t: FloatArray,
    cdd_t: FloatArray,
    shape: Shape,
    grid_h: FloatArray,
    grid_c: FloatArray,
) -> IntArray:
    """Best candidate (column indices) by residual sum of squares; -1 entries if none is valid."""
    bank = np.concatenate([hdd_t, cdd_t], axis=1)
    if q is not None:
        bank = bank - q @ (q.T @ bank)
    gram = bank.T @ bank
    rhs = bank.T @ yr
    sets = _candidate_sets(shape, grid_h, grid_c)
    a = gram[sets[:, :, None], sets[:, None, :]]  # (M, s, s)
    b = rhs[sets]  # (M, s)
    scale = np.prod(np.diagonal(a, axis1=1, axis2=2), axis=1)
    ok = np.abs(np.linalg.det(a)) > 1e-10 * np.maximum(scale, 1e-300)
    a[~ok] = np.eye(sets.shape[1])
    beta = np.linalg.solve(a, b[:, :, None])[:, :, 0]  # one batched call for all candidates
    reduction = np.einsum("ms,ms->m", beta, b)  # SSE = yr·yr - reduction
    if shape is not Shape.FOUR_P:
        ok &= np.all(beta > 0, axis=1)  # heating/cooling energy must rise with degree-days
    if not ok.any():
        return np.full(sets.shape[1], -1, dtype=np.int64)
    reduction[~ok] = -np.inf
    return np.asarray(sets[int(np.argmax(reduction))], dtype=np.int64)


def _fine_grid(grid: FloatArray, k: int, n: int) -> FloatArray:
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, grid.shape[0] - 1)]
    return np.linspace(lo, hi, n)


def find_balance_points(
    shape: Shape,
    frame: Frame,
    absorber: GroupAbsorber,
    yt: FloatArray,
    xt: FloatArray,
    bank: ChangePointBank,
) -> tuple[float, ...]:
    """Balance point(s) minimising the residual sum of squares, given constants and linear terms.

    ``yt`` and ``xt`` are already group-demeaned. Raises :class:`NoChangePoint` when the best
    candidate sits on the edge of the temperature range (no change point inside the data)
    or no candidate has physically plausible slopes.
    """
    basis = frame.degree_days
    assert basis is not None
    q: FloatArray | None = None
    yr = yt
    if xt.shape[1]:
        q = np.linalg.qr(xt)[0]
        yr = yt - q @ (q.T @ yt)
    grid = bank.grid
    kc = grid.shape[0]
    best = _search(yr, q, absorber.demean(bank.hdd), absorber.demean(bank.cdd), shape, grid, grid)
    if best[0] < 0:
        raise NoChangePoint("no balance point gives rising heating/cooling energy")
    picks = [int(best[0])] if shape is not Shape.FIVE_P else [int(best[0]), int(best[1]) - kc]
    if shape is Shape.COOLING_3P:
        picks = [int(best[0]) - kc]
    if any(k in (0, kc - 1) for k in picks):
        raise NoChangePoint(
            "best balance point lies at the edge of the observed temperatures "
            f"({grid[0]:.1f} or {grid[-1]:.1f} °C): no change point inside the data"
        )
    if shape is Shape.FIVE_P:
        fh = _fine_grid(grid, picks[0], FINE_CANDIDATES // 2 + 1)
        fc = _fine_grid(grid, picks[1], FINE_CANDIDATES // 2 + 1)
    else:
        fh = fc = _fine_grid(grid, picks[0], FINE_CANDIDATES)
    fine = _search(yr, q, absorber.demean(basis.hdd(fh)), absorber.demean(basis.cdd(fc)), shape, fh, fc)
    if fine[0] < 0:  # cannot happen when the coarse best is inside the fine grid; kept defensive
        raise NoChangePoint("fine balance-point search found no valid candidate")
    kh = fh.shape[0]
    if shape is Shape.HEATING_3P or shape is Shape.FOUR_P:
        return (float(fh[fine[0]]),)
    if shape is Shape.COOLING_3P:
        return (float(fc[fine[0] - kh]),)
    return float(fh[fine[0]]), float(fc[fine[1] - kh])

"""Balance-point grid search for change-point models, all candidates solved at once.

The degree-day columns of every candidate are projected off the constants and linear terms
(Frisch–Waugh–Lovell), their Gram matrix is formed with one matrix product, and each
candidate's small normal equations are gathered into a stack and solved by one batched
``np.linalg.solve``. A coarse grid between the 10th and 90th temperature percentiles is
followed by a fine grid around the best coarse point.
"""

from __future__ import annotations

__all__ = [
    "ChangePointBank",
    "GridSearch",
    "NoChangePoint",
    "candidate_sets",
    "find_balance_points",
    "two_stage_search",
]

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edge_agent.evaluation._absorb import GroupAbsorber
from edge_agent.evaluation._arrays import FloatArray, IntArray
from edge_agent.evaluation._channels import Role
from edge_agent.evaluation._degree_days import DegreeDayBasis
from edge_agent.evaluation._frame import Frame
from edge_agent.evaluation._spec import Shape

COARSE_CANDIDATES = 41
_FINE_CACHE = 16
FINE_CANDIDATES = 21
_LOW_Q, _HIGH_Q = 0.10, 0.90


class NoChangePoint(Exception):
    """The data hold no usable change point for this shape; the message says why."""


@dataclass(frozen=True, slots=True)
class ChangePointBank:
    """The coarse grid and its degree-day columns for one frame (reused by every candidate).

    Projected columns and their Gram matrices are cached per constant structure (intercept
    or time of week) and grid, so the n × K work is done once per frame, not per candidate.
    """

    grid: FloatArray  # (K,) °C
    hdd: FloatArray  # (n, K)
    cdd: FloatArray  # (n, K)
    basis: DegreeDayBasis
    _cache: dict[tuple[bytes, bytes], tuple[FloatArray, FloatArray]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def for_frame(cls, frame: Frame, n_candidates: int = COARSE_CANDIDATES) -> ChangePointBank:
        if frame.degree_days is None or Role.TEMPERATURE not in frame.variables:
            raise NoChangePoint("no outdoor temperature data")
        # the samples, not the bucket means: a daily bucket's cold night carries heating even
        # when its mean is above the balance point, so such a point is inside the data
        lo, hi = np.quantile(frame.degree_days.temps, [_LOW_Q, _HIGH_Q])
        if not hi - lo > 0.5:
            raise NoChangePoint(f"outdoor temperature barely varies ({lo:.1f}–{hi:.1f} °C)")
        grid = np.linspace(lo, hi, n_candidates)
        basis = frame.degree_days
        return cls(grid, basis.hdd(grid), basis.cdd(grid), basis)

    def take(self, rows: IntArray) -> ChangePointBank:
        return ChangePointBank(self.grid, self.hdd[rows], self.cdd[rows], self.basis.take(rows))

    def projected(
        self, absorber: GroupAbsorber, gh: FloatArray, gc: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Group-demeaned [hdd(gh) | cdd(gc)] columns and their Gram matrix, cached.

        The coarse pair is the same for every candidate with these constants; fine grids repeat
        too (candidates that agree on the coarse point), so the last few are kept as well.
        """
        coarse = gh is self.grid and gc is self.grid
        key = (absorber.index.tobytes(), b"" if coarse else gh.tobytes() + gc.tobytes())
        hit = self._cache.get(key)
        if hit is None:
            h = self.hdd if coarse else self.basis.hdd(gh)
            c = self.cdd if coarse else self.basis.cdd(gc)
            bank = absorber.demean(np.concatenate([h, c], axis=1))
            hit = (bank, bank.T @ bank)
            fine = [k for k in self._cache if k[1]]
            if not coarse and len(fine) >= _FINE_CACHE:
                del self._cache[fine[0]]  # oldest first: bounded memory on hourly data
            self._cache[key] = hit
        return hit


def candidate_sets(shape: Shape, grid_h: FloatArray, grid_c: FloatArray) -> IntArray:
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


def _normal_equations(
    projected: tuple[FloatArray, FloatArray], yt: FloatArray, q: FloatArray | None
) -> tuple[FloatArray, FloatArray]:
    """Gram matrix and right-hand side of the degree-day columns with the linear terms projected off.

    With Q an orthonormal basis of the linear terms, (I−QQᵀ)B gives BᵀB − (QᵀB)ᵀ(QᵀB): only
    the thin QᵀB product is needed per candidate, the big BᵀB comes from the cache.
    """
    bank, gram = projected
    rhs = bank.T @ yt
    if q is not None:
        qb = q.T @ bank
        gram = gram - qb.T @ qb
        rhs = rhs - qb.T @ (q.T @ yt)
    return np.asarray(gram, dtype=np.float64), np.asarray(rhs, dtype=np.float64)


def _search(
    gram: FloatArray, rhs: FloatArray, shape: Shape, grid_h: FloatArray, grid_c: FloatArray
) -> IntArray:
    """Best candidate (column indices) by residual sum of squares; -1 entries if none is valid."""
    sets = candidate_sets(shape, grid_h, grid_c)
    a = gram[sets[:, :, None], sets[:, None, :]]  # (M, s, s)
    b = rhs[sets]  # (M, s)
    diag = np.prod(np.diagonal(a, axis1=1, axis2=2), axis=1)
    det = a[:, 0, 0] if sets.shape[1] == 1 else a[:, 0, 0] * a[:, 1, 1] - a[:, 0, 1] * a[:, 1, 0]
    ok = det > 1e-10 * np.maximum(diag, 1e-300)  # Gram matrices are PSD: det ≈ 0 means collinear
    a[~ok] = np.eye(sets.shape[1])
    beta = np.linalg.solve(a, b[:, :, None])[:, :, 0]  # one batched call for all candidates
    reduction = np.einsum("ms,ms->m", beta, b)  # SSE = ‖y_r‖² − reduction
    if shape is not Shape.FOUR_P:
        ok &= np.all(beta > 0, axis=1)  # heating/cooling energy must rise with degree-days
    if not ok.any():
        return np.full(sets.shape[1], -1, dtype=np.int64)
    reduction[~ok] = -np.inf
    return np.asarray(sets[int(np.argmax(reduction))], dtype=np.int64)


def _fine_grid(grid: FloatArray, k: int, n: int) -> FloatArray:
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, grid.shape[0] - 1)]
    return np.linspace(lo, hi, n)


#: Finds the best candidate of a shape on (heating grid, cooling grid): returns its column
#: indices into [hdd columns | cdd columns], or -1 entries when no candidate is valid.
GridSearch = Callable[[FloatArray, FloatArray], IntArray]


def two_stage_search(shape: Shape, grid: FloatArray, search: GridSearch) -> tuple[float, ...]:
    """Coarse grid, edge check, then a fine grid around the best point(s): the balance point(s).

    Raises :class:`NoChangePoint` when the best candidate sits on the edge of the temperature
    range (no change point inside the data) or no candidate has physically plausible slopes.
    """
    kc = grid.shape[0]
    best = search(grid, grid)
    if best[0] < 0:
        raise NoChangePoint("no balance point gives rising heating/cooling energy")
    if shape is Shape.FIVE_P:
        picks = [int(best[0]), int(best[1]) - kc]
    else:
        picks = [int(best[0]) - (kc if shape is Shape.COOLING_3P else 0)]
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
    fine = search(fh, fc)
    if fine[0] < 0:  # cannot happen when the coarse best is inside the fine grid; kept defensive
        raise NoChangePoint("fine balance-point search found no valid candidate")
    kh = fh.shape[0]
    if shape is Shape.HEATING_3P or shape is Shape.FOUR_P:
        return (float(fh[fine[0]]),)
    if shape is Shape.COOLING_3P:
        return (float(fc[fine[0] - kh]),)
    return float(fh[fine[0]]), float(fc[fine[1] - kh])


def find_balance_points(
    shape: Shape, absorber: GroupAbsorber, yt: FloatArray, xt: FloatArray, bank: ChangePointBank
) -> tuple[float, ...]:
    """Batched search: every candidate's normal equations solved in one call per grid.

    ``yt`` and ``xt`` (energy and linear terms) are already group-demeaned.
    """
    q = np.linalg.qr(xt)[0] if xt.shape[1] else None

    def search(gh: FloatArray, gc: FloatArray) -> IntArray:
        eq = _normal_equations(bank.projected(absorber, gh, gc), yt, q)
        return _search(*eq, shape, gh, gc)

    return two_stage_search(shape, bank.grid, search)

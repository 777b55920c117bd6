"""The obvious, slow balance-point search: one ``np.linalg.lstsq`` per candidate.

It builds each candidate's full design matrix (dummy columns for time-of-week bins
included) and solves it on its own. Same grids, same sign rules, same edge check as the
batched search, so the two must agree; tests check that, and the benchmark times both.
"""

from __future__ import annotations

__all__ = ["loop_search"]

import numpy as np

from edge_agent.evaluation._absorb import GroupAbsorber
from edge_agent.evaluation._arrays import FloatArray, IntArray
from edge_agent.evaluation._changepoint import ChangePointBank, candidate_sets, two_stage_search
from edge_agent.evaluation._frame import Frame
from edge_agent.evaluation._model import linear_design
from edge_agent.evaluation._spec import ModelSpec, Shape


def loop_search(
    spec: ModelSpec, frame: Frame, absorber: GroupAbsorber, bank: ChangePointBank
) -> tuple[float, ...]:
    """Balance point(s) of ``spec`` by looping over candidates; a drop-in for ``batched_search``."""
    y = frame.energy
    dummies = np.eye(absorber.n_groups)[absorber.index]
    fixed = np.column_stack(
        [
            dummies,
            linear_design(ModelSpec(spec.dense, on_off=spec.on_off, weekend_on=spec.weekend_on), frame, ()),
        ]
    )

    def search(gh: FloatArray, gc: FloatArray) -> IntArray:
        cols = np.concatenate([bank.basis.hdd(gh), bank.basis.cdd(gc)], axis=1)
        best, best_sse = None, np.inf
        for cand in candidate_sets(spec.shape, gh, gc):
            x = np.column_stack([fixed, cols[:, cand]])
            beta, _, rank, _ = np.linalg.lstsq(x, y, rcond=None)
            if rank < x.shape[1]:
                continue
            if spec.shape is not Shape.FOUR_P and not np.all(beta[-cand.shape[0] :] > 0):
                continue
            e = y - x @ beta
            sse = float(e @ e)
            if sse < best_sse:
                best, best_sse = cand, sse
        if best is None:
            return np.full(2 if spec.shape in (Shape.FOUR_P, Shape.FIVE_P) else 1, -1, dtype=np.int64)
        return np.asarray(best, dtype=np.int64)

    return two_stage_search(spec.shape, bank.grid, search)

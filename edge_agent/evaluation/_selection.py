"""Choosing the baseline model: every plausible candidate is fitted, screened and ranked.

A candidate is valid when each slope is significant (|t| ≥ 2), production and operating-hour
slopes are positive, and any change point lies inside the data. Valid candidates are ranked
by adjusted R² (default) or by blocked k-fold cross-validation, which leaves out contiguous
stretches of time so autocorrelated neighbours cannot leak into the test fold.
"""

from __future__ import annotations

__all__ = [
    "MIN_DOF",
    "Candidate",
    "Selection",
    "SelectionMethod",
    "candidate_specs",
    "force_model",
    "out_of_sample_rmse",
    "select_model",
    "weak_terms",
]

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np
from scipy.stats import f as f_dist

from edge_agent.evaluation._changepoint import ChangePointBank, NoChangePoint
from edge_agent.evaluation._channels import ACTIVITY_ROLES, LINEAR_ROLES, Role
from edge_agent.evaluation._errors import EvaluationError
from edge_agent.evaluation._frame import Frame
from edge_agent.evaluation._model import (
    BalancePointSearch,
    Coefficient,
    FittedModel,
    Unfittable,
    batched_search,
    fit_model,
)
from edge_agent.evaluation._spec import ModelSpec, Shape
from edge_agent.evaluation._stats import FitStatistics, effective_n, fit_statistics

MIN_T = 2.0
#: The weekend operating constant is a design term (it keeps weekend days off the slope),
#: not a claim to prove, so it is exempt from the |t| screen.
WEEKEND_TERM = "weekend change"
MIN_DOF = 5


class SelectionMethod(StrEnum):
    ADJ_R2 = "adj-r2"
    CV = "cv"

    @property
    def label(self) -> str:
        return "adjusted R²" if self is SelectionMethod.ADJ_R2 else "cross-validation"


@dataclass(frozen=True)
class Candidate:
    """One candidate model and the verdict on it."""

    spec: ModelSpec
    model: FittedModel | None
    stats: FitStatistics | None
    cv_rmse_out_of_sample: float | None  # blocked k-fold CV RMSE / mean, when method is cv
    rejected: str  # empty when valid

    @property
    def valid(self) -> bool:
        return not self.rejected


@dataclass(frozen=True)
class Selection:
    """The chosen model, every candidate considered, and why the choice was made."""

    method: SelectionMethod
    chosen: Candidate
    candidates: tuple[Candidate, ...]
    reason: str

    @property
    def model(self) -> FittedModel:
        assert self.chosen.model is not None
        return self.chosen.model

    @property
    def stats(self) -> FitStatistics:
        assert self.chosen.stats is not None
        return self.chosen.stats


def candidate_specs(frame: Frame) -> list[ModelSpec]:
    """All combinations of the variables present: linear terms × temperature shape × time of week."""
    linear = [r for r in LINEAR_ROLES if r in frame.variables]
    dense_sets = [tuple(c) for k in range(len(linear) + 1) for c in itertools.combinations(linear, k)]
    active = [r for r in ACTIVITY_ROLES if r in frame.variables]
    on_offs: list[tuple[Role | None, bool]] = [(None, False)]
    if active:  # only when the baseline has both idle and working buckets
        on = frame.variables[active[0]] > 0
        if on.any() and not on.all():
            # Weekend work in the baseline always gets its own constant: even a single short
            # Saturday shift, pooled with weekdays, tilts the production slope (it soaks up the
            # shorter fixed load) and overstates savings once production rises.
            on_offs.append((active[0], _weekend_work(frame, on)))
    shapes = list(Shape) if Role.TEMPERATURE in frame.variables else [Shape.NONE]
    tows = [False, True] if frame.hour_of_week is not None else [False]
    return [
        # time-of-week constants tell weekends from weekdays, not working weekends from idle ones
        ModelSpec(d, s, t, o, w)
        for t in tows
        for s in shapes
        for o, w in on_offs
        for d in dense_sets
        # an on/off step alone is a poor man's production term
        if not (o is not None and not any(r in ACTIVITY_ROLES for r in d))
    ]


def _weekend_work(frame: Frame, on: np.ndarray) -> bool:
    """Operating weekend buckets present, and at least two operating weekday buckets."""
    weekend = frame.weekend
    if weekend is None:
        return False
    return bool((on & weekend).any()) and int((on & ~weekend).sum()) >= 2


def weak_terms(model: FittedModel) -> list[Coefficient]:
    """Slopes below |t| = MIN_T that the screen and the significance gate refuse.

    The weekday and weekend operating constants are one design term, kept when either value
    is significant: a plant whose weekday shifts hardly ever stand still leaves the weekday
    constant weak while the weekend one is strong. Refusing the pair for the weak half left
    a model without it, whose production slope soaked up the working Saturdays against the
    idle ones and overstated savings once production rose (calibration harness).
    """
    on = len(model.spec.dense) if model.spec.on_off is not None else None
    pair_strong = (
        on is not None and model.spec.weekend_on and any(abs(c.t) >= MIN_T for c in model.slopes[on : on + 2])
    )
    return [
        c
        for k, c in enumerate(model.slopes)
        if abs(c.t) < MIN_T and not c.name.startswith(WEEKEND_TERM) and not (pair_strong and k == on)
    ]


def _screen(model: FittedModel) -> str:
    for c in weak_terms(model):
        return f"{c.name} not significant (t = {c.t:.1f})"
    for k, role in enumerate(model.spec.dense):
        if model.slopes[k].value <= 0:
            return f"{role.label} slope is negative (physically implausible)"
    if model.spec.on_off is not None:
        on = model.slopes[len(model.spec.dense)]
        if on.value <= 0 and abs(on.t) >= MIN_T:
            return "energy is lower while operating than while not (physically implausible)"
    if model.n - model.p < MIN_DOF:
        return f"only {model.n - model.p} degrees of freedom left"
    return ""


@dataclass(frozen=True)
class _Fold:
    """One blocked cross-validation split, built once and shared by every candidate."""

    train: Frame
    test: Frame
    bank: ChangePointBank | None


def _folds(frame: Frame, bank: ChangePointBank | None, k: int) -> list[_Fold]:
    n = len(frame)
    out = []
    for test in np.array_split(np.arange(n, dtype=np.int64), k):
        train = np.setdiff1d(np.arange(n, dtype=np.int64), test)
        out.append(_Fold(frame.take(train), frame.take(test), None if bank is None else bank.take(train)))
    return out


def _cross_validate(spec: ModelSpec, frame: Frame, folds: list[_Fold], search: BalancePointSearch) -> float:
    """Blocked k-fold out-of-sample RMSE as a fraction of the mean."""
    sq = 0.0
    for f in folds:
        model = fit_model(spec, f.train, f.bank if spec.shape.change_point else None, search=search)
        err = f.test.energy - model.predict(f.test)
        sq += float(err @ err)
    return math.sqrt(sq / len(frame)) / float(frame.energy.mean())


def _evaluate(
    spec: ModelSpec,
    frame: Frame,
    bank: ChangePointBank | None,
    folds: list[_Fold] | None,
    search: BalancePointSearch,
) -> Candidate:
    try:
        model = fit_model(spec, frame, bank if spec.shape.change_point else None, search=search)
    except Unfittable as exc:
        return Candidate(spec, None, None, None, str(exc))
    stats = fit_statistics(frame.energy, model.fitted, model.p, frame.adjacent)
    rejected = _screen(model)
    cv = None
    if not rejected and folds is not None:
        try:
            cv = _cross_validate(spec, frame, folds, search)
        except Unfittable as exc:
            rejected = f"cannot be refitted on every cross-validation fold: {exc}"
    return Candidate(spec, model, stats, cv, rejected)


#: A temperature term joins a process-load model (one with production or hours terms) only
#: when an F-test against the same model without it is significant at this level: on machine
#: tools a spurious change point with t ≈ 2 fits the baseline's season and then extrapolates.
WEATHER_P_MAX = 0.01


def _weather_must_earn_its_place(cands: tuple[Candidate, ...]) -> tuple[Candidate, ...]:
    by_spec = {c.spec: c for c in cands}
    out = []
    for c in cands:
        if c.valid and c.spec.dense and c.spec.shape is not Shape.NONE and c.model is not None:
            plain = by_spec.get(replace(c.spec, shape=Shape.NONE))
            if plain is not None and plain.model is not None:
                p_value = _f_test(plain.model, c.model, c.stats.rho if c.stats is not None else 0.0)
                if p_value > WEATHER_P_MAX:
                    why = (
                        f"temperature terms do not earn their place in a process-load model "
                        f"(F-test against '{plain.spec.name}': p = {p_value:.3f} > {WEATHER_P_MAX:g})"
                    )
                    c = replace(c, rejected=why)
        out.append(c)
    return tuple(out)


def _f_test(small: FittedModel, big: FittedModel, rho: float) -> float:
    """p-value of the extra parameters of ``big`` over the nested ``small``.

    Autocorrelated residuals carry less information than their count: with n′ = n(1−ρ)/(1+ρ)
    effective points the F statistic shrinks by n′/n and has n′ − p denominator degrees of
    freedom. Without this, thousands of autocorrelated hours make any seasonal drift look like
    a significant weather term.
    """
    n_eff = effective_n(big.n, rho)
    extra, dof = big.p - small.p, n_eff - big.p
    if extra <= 0 or dof <= 1 or big.sse <= 0:
        return 0.0 if big.sse < small.sse and dof > 1 else 1.0
    f = ((small.sse - big.sse) / extra) / (big.sse / (big.n - big.p)) * n_eff / big.n
    return float(f_dist.sf(max(f, 0.0), extra, dof))


def _score(c: Candidate, method: SelectionMethod) -> float:
    assert c.stats is not None
    if method is SelectionMethod.CV:
        assert c.cv_rmse_out_of_sample is not None
        return -c.cv_rmse_out_of_sample
    return c.stats.adj_r2


def _reason(
    chosen: Candidate,
    ranked: list[Candidate],
    cands: Sequence[Candidate],
    method: SelectionMethod,
    folds: int,
) -> str:
    assert chosen.stats is not None
    what = (
        f"lowest cross-validated CV(RMSE) ({100 * (chosen.cv_rmse_out_of_sample or 0):.1f} %, "
        f"blocked {folds}-fold)"
        if method is SelectionMethod.CV
        else f"highest adjusted R² ({chosen.stats.adj_r2:.3f})"
    )
    text = f"'{chosen.spec.name}' has the {what} of {len(ranked)} valid candidate(s)"
    if len(ranked) > 1:
        r = ranked[1]
        assert r.stats is not None
        val = (
            f"{100 * (r.cv_rmse_out_of_sample or 0):.1f} %"
            if method is SelectionMethod.CV
            else f"{r.stats.adj_r2:.3f}"
        )
        text += f"; runner-up '{r.spec.name}' ({val})"
    n_rej = sum(1 for c in cands if not c.valid)
    if n_rej:
        text += (
            f". {n_rej} candidate(s) were rejected (a slope not significant at |t| ≥ {MIN_T:g}, an "
            "implausible sign, or a change point outside the data); see the candidate table"
        )
    return text + "."


def select_model(
    frame: Frame,
    method: SelectionMethod = SelectionMethod.ADJ_R2,
    *,
    folds: int = 5,
    specs: Sequence[ModelSpec] | None = None,
    search: BalancePointSearch = batched_search,
) -> Selection:
    """Fit every candidate to ``frame`` and pick one; the mean model is always a fallback.

    ``search`` finds balance points; the default solves all candidates at once, and the
    benchmark swaps in a per-candidate loop to measure what that saves.
    """
    if len(frame) < 3:
        raise EvaluationError(
            f"the baseline period has only {len(frame)} usable bucket(s); at least 3 are needed to fit "
            "any model. Use a finer --resolution, a longer baseline, or a lower --coverage-threshold."
        )
    specs = list(specs) if specs is not None else candidate_specs(frame)
    if ModelSpec() not in specs:
        specs.insert(0, ModelSpec())
    bank = None
    if any(s.shape.change_point for s in specs):
        try:
            bank = ChangePointBank.for_frame(frame)
        except NoChangePoint:
            bank = None
    splits = _folds(frame, bank, folds) if method is SelectionMethod.CV else None
    cands = _weather_must_earn_its_place(tuple(_evaluate(s, frame, bank, splits, search) for s in specs))
    ranked = sorted(
        (c for c in cands if c.valid), key=lambda c: (-_score(c, method), c.stats.p if c.stats else 0)
    )
    if not ranked:  # the mean model is only rejected when there are fewer than MIN_DOF + 1 buckets
        mean = next(c for c in cands if c.spec == ModelSpec())
        if mean.model is None:
            raise EvaluationError(f"no model could be fitted to the baseline: {mean.rejected}")
        why = f"no candidate passed the screening; falling back to the mean model ({mean.rejected})"
        return Selection(method, mean, cands, why)
    chosen = ranked[0]
    return Selection(method, chosen, cands, _reason(chosen, ranked, cands, method, folds))


def force_model(frame: Frame, spec: ModelSpec) -> Selection:
    """Use ``spec`` as the baseline model (``--model``); its screening verdict becomes a note."""
    try:
        model = fit_model(spec, frame)
    except Unfittable as exc:
        raise EvaluationError(f"--model '{spec.name}' cannot be fitted to the baseline: {exc}") from None
    stats = fit_statistics(frame.energy, model.fitted, model.p, frame.adjacent)
    screened = _screen(model)
    chosen = Candidate(spec, model, stats, None, "")
    why = f"'{spec.name}' was forced by the evaluator (--model or the plan)"
    if screened:
        why += f"; the selection would have rejected it: {screened}"
    return Selection(SelectionMethod.ADJ_R2, chosen, (chosen,), why + ".")


def out_of_sample_rmse(spec: ModelSpec, frame: Frame, folds: int = 5) -> float | None:
    """Blocked k-fold out-of-sample RMSE of ``spec`` [kWh per bucket], None when a fold cannot be fitted.

    The in-sample scatter of a model chosen from many candidates understates its prediction
    error (the selection fits noise); held-out contiguous blocks of time do not.
    """
    if len(frame) < 2 * folds:
        return None
    bank = None
    if spec.shape.change_point:
        try:
            bank = ChangePointBank.for_frame(frame)
        except NoChangePoint:
            return None
    try:
        cv = _cross_validate(spec, frame, _folds(frame, bank, folds), batched_search)
    except Unfittable:
        return None
    return cv * float(frame.energy.mean())

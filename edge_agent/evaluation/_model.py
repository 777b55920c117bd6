"""Fitting one baseline model: least squares with standard errors, and prediction.

Constants (one intercept, or 168 hour-of-week bins) are absorbed by group demeaning; the
remaining linear terms are solved with ``np.linalg.lstsq``. Standard errors come from the
Jacobian of the full model, balance points included, so a balance point's SE reflects how
sharply the fit depends on it (the usual asymptotic result for nonlinear least squares).
"""

from __future__ import annotations

__all__ = [
    "BalancePointSearch",
    "Coefficient",
    "FittedModel",
    "Unfittable",
    "batched_search",
    "fit_model",
    "linear_design",
]

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edge_agent.evaluation._absorb import GroupAbsorber
from edge_agent.evaluation._arrays import BoolArray, FloatArray, IntArray
from edge_agent.evaluation._changepoint import ChangePointBank, NoChangePoint, find_balance_points
from edge_agent.evaluation._channels import ACTIVITY_ROLES, Role
from edge_agent.evaluation._frame import Frame
from edge_agent.evaluation._spec import ModelSpec, Shape

_SLOPE_UNITS = {Role.PRODUCTION: "kWh/unit", Role.OPERATING_HOURS: "kWh/h", Role.IDLE_HOURS: "kWh/h"}


_N_TEMPERATURE_TERMS = {
    Shape.NONE: 0,
    Shape.TWO_P: 1,
    Shape.HEATING_3P: 1,
    Shape.COOLING_3P: 1,
    Shape.FOUR_P: 2,
    Shape.FIVE_P: 2,
}
_COLLINEAR = "the variables are collinear (one is a multiple of another) or constant"


class Unfittable(Exception):
    """This candidate cannot be fitted to these data; the message says why."""


@dataclass(frozen=True, slots=True)
class Coefficient:
    """One fitted parameter with its standard error."""

    name: str
    value: float
    se: float
    unit: str

    @property
    def t(self) -> float:
        return self.value / self.se if self.se > 0 else float("inf")


@dataclass(frozen=True)
class FittedModel:
    """A fitted baseline model: parameters, fit residuals and a ``predict`` for other periods."""

    spec: ModelSpec
    absorber: GroupAbsorber
    constants: FloatArray  # one per group (a single intercept without time-of-week terms)
    constants_se: FloatArray
    slopes: tuple[Coefficient, ...]  # linear terms, in design-column order
    balance_points: tuple[Coefficient, ...]
    n: int
    p: int  # parameters incl. constants and balance points
    fitted: FloatArray
    residuals: FloatArray
    #: Covariance of the linear slopes and balance points (σ² included) and the baseline's
    #: per-group means of their Jacobian columns: what the variance of a sum of predictions needs.
    param_cov: FloatArray
    jac_group_means: FloatArray
    #: Whether the baseline had operating weekend buckets. Without any, a working weekend day
    #: in the reporting period is a day type the model never saw; see :meth:`_unseen_weekend`.
    weekend_work_seen: bool = True

    @property
    def sigma2(self) -> float:
        return self.sse / (self.n - self.p)

    def sum_variance(self, frame: Frame) -> float:
        """Variance of Σ predict(frame) from parameter error alone (exact for least squares).

        Σŷ = Σ_g a_g ȳ_g + d'β with d = Σ x_i − Σ_g a_g x̄_g, and the group means ȳ_g are
        uncorrelated with the demeaned slopes, so Var = σ² Σ_g a_g²/n_g + d' Cov(β) d. It grows
        when the reporting conditions lie away from the baseline's means, which ASHRAE 14's
        2m/n′ term ignores. Rows in unseen time-of-week bins use the count-weighted average.
        """
        n = len(frame)
        a = self._group_totals(frame)
        var = self.sigma2 * float(np.sum(a * a / self.absorber.counts)) + self._unseen_weekend_variance(frame)
        k = self.param_cov.shape[0]
        if k:
            bps = tuple(b.value for b in self.balance_points)
            beta = np.array([c.value for c in self.slopes])
            n_temperature = _N_TEMPERATURE_TERMS[self.spec.shape]
            cols = [
                self.design(frame),
                *(
                    c[:, None]
                    for c in _derivative_columns(self.spec, frame, bps, beta[beta.size - n_temperature :])
                ),
            ]
            jac = np.column_stack(cols) if n else np.zeros((0, k))
            d = jac.sum(axis=0) - a @ self.jac_group_means
            var += float(d @ self.param_cov @ d)
        return var

    @property
    def sse(self) -> float:
        return float(self.residuals @ self.residuals)

    @property
    def coefficients(self) -> tuple[Coefficient, ...]:
        """Everything estimated; time-of-week bins are listed as ``constant[how=Mon 00h]``."""
        if not self.spec.time_of_week:
            head: tuple[Coefficient, ...] = (
                Coefficient("intercept", float(self.constants[0]), float(self.constants_se[0]), "kWh"),
            )
        else:
            head = tuple(
                Coefficient(f"constant[{_how(int(lab))}]", float(c), float(s), "kWh")
                for lab, c, s in zip(self.absorber.labels, self.constants, self.constants_se, strict=True)
            )
        return head + self.slopes + self.balance_points

    def design(self, frame: Frame) -> FloatArray:
        """The model's linear columns for ``frame`` (linear terms, then temperature terms)."""
        x = linear_design(self.spec, frame, tuple(b.value for b in self.balance_points))
        half = self._half_operating_constant(frame)
        if half is not None:
            x[:, len(self.spec.dense)] = np.where(half, 0.5, x[:, len(self.spec.dense)])
        return x

    def _unseen_weekend(self, frame: Frame) -> BoolArray | None:
        """Operating weekend buckets of ``frame`` when the baseline had none, else None.

        Such a bucket is a day type the baseline never showed: a Saturday shift's fixed load
        is not a weekday's. Predicting it with the weekday's operating constant overstated
        daily savings, and with the weekend's idle time-of-week constants understated hourly
        ones (the calibration harness's largest bias, both signs).
        """
        working = _working(self.spec, frame)
        if self.weekend_work_seen or working is None or frame.weekend is None:
            return None
        rows = working & frame.weekend
        return rows if rows.any() else None

    def unseen_weekend_buckets(self, frame: Frame) -> int:
        """How many buckets of ``frame`` are working weekend buckets the baseline never had."""
        rows = self._unseen_weekend(frame)
        return 0 if rows is None else int(rows.sum())

    def _half_operating_constant(self, frame: Frame) -> BoolArray | None:
        """Daily buckets of an unseen working weekend day, in a model with one operating constant.

        Their fixed load lies somewhere between none and a full working weekday's; with
        nothing in the baseline to say where, the middle of that range is predicted and its
        spread is added to the uncertainty (:meth:`_unseen_weekend_variance`).
        """
        if self.spec.time_of_week or frame.hour_of_week is not None or self.spec.on_off is None:
            return None
        return self._unseen_weekend(frame)

    def _unseen_weekend_variance(self, frame: Frame) -> float:
        """Variance of the guess for unseen working weekend days: uniform over [0, constant] per day,
        the same unknown on every such day (so it adds up linearly, not in quadrature)."""
        half = self._half_operating_constant(frame)
        if half is None:
            return 0.0
        const = self.slopes[len(self.spec.dense)].value
        return float((half.sum() * const) ** 2 / 12.0)

    def _group_weights(self, frame: Frame) -> tuple[IntArray, list[tuple[BoolArray, FloatArray]]]:
        """Which group constants make each bucket's prediction: a group per row (−1 where
        another rule applies), and those rules as (rows, weights over the groups).

        A seen time-of-week bin contributes 1; an unseen bin takes the count-weighted average
        of all. An operating weekend hour in a model whose baseline had no weekend work takes
        the average of the same hour on the working weekdays: a working Saturday hour looks
        like a working weekday hour, not like the idle Saturday bins the baseline saw.
        """
        how = frame.hour_of_week if self.spec.time_of_week else None
        groups, unknown = self.absorber.lookup(how, len(frame))
        groups = np.where(unknown, -1, groups)
        rules: list[tuple[BoolArray, FloatArray]] = []
        if unknown.any():
            rules.append((unknown, self.absorber.counts / self.absorber.counts.sum()))
        borrowed = self._unseen_weekend(frame) if how is not None else None
        if how is not None and borrowed is not None:
            labels = self.absorber.labels
            for hour in np.unique(how[borrowed] % 24):
                donors = (labels % 24 == hour) & (labels < 5 * 24)
                if donors.any():
                    rows = borrowed & (how % 24 == hour)
                    groups = np.where(rows, -1, groups)
                    rules.append((rows, np.where(donors, 1.0 / donors.sum(), 0.0)))
        return groups, rules

    def _group_totals(self, frame: Frame) -> FloatArray:
        """(G,): each group constant's total weight in Σ predict(frame)."""
        groups, rules = self._group_weights(frame)
        a = np.bincount(groups[groups >= 0], minlength=self.absorber.n_groups).astype(np.float64)
        for rows, w in rules:
            a += rows.sum() * w
        return a

    def predict(self, frame: Frame) -> FloatArray:
        """Modelled energy per bucket (see :meth:`_group_weights` for the constants used)."""
        groups, rules = self._group_weights(frame)
        const = self.constants[np.maximum(groups, 0)]
        for rows, w in rules:
            const = np.where(rows, float(w @ self.constants), const)
        beta = np.array([c.value for c in self.slopes])
        out = const + (self.design(frame) @ beta if beta.size else 0.0)
        return np.asarray(out, dtype=np.float64)

    def contributions(self, frame: Frame) -> dict[Role, FloatArray]:
        """Each variable's share of the modelled energy (for partial-fit plots)."""
        out: dict[Role, FloatArray] = {}
        bps = tuple(b.value for b in self.balance_points)
        for term, coef in zip(_terms(self.spec, frame, bps), self.slopes, strict=True):
            out[term.role] = out.get(term.role, np.zeros(len(frame))) + coef.value * term.values
        return out


def _how(label: int) -> str:
    day = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[label // 24]
    return f"{day} {label % 24:02d}h"


def _require(frame: Frame, spec: ModelSpec) -> None:
    for role in spec.roles:
        if role not in frame.variables:
            raise Unfittable(f"no {role.label} data")
    if spec.time_of_week and frame.hour_of_week is None:
        raise Unfittable("time-of-week terms need hourly data")
    if spec.shape.change_point and frame.degree_days is None:
        raise Unfittable("no outdoor temperature samples")


@dataclass(frozen=True, slots=True)
class _Term:
    """One linear column of a model, and the variable it belongs to (for plots)."""

    name: str
    unit: str
    role: Role
    values: FloatArray


def _temperature_terms(spec: ModelSpec, frame: Frame, bps: tuple[float, ...]) -> list[_Term]:
    shape, basis, t = spec.shape, frame.degree_days, Role.TEMPERATURE
    if shape is Shape.NONE:
        return []
    if shape is Shape.TWO_P:
        return [_Term("temperature slope", "kWh/°C", t, frame.variables[t])]
    assert basis is not None
    h = "heating slope", "kWh/°C·d"
    c = "cooling slope", "kWh/°C·d"
    if shape is Shape.HEATING_3P:
        return [_Term(*h, t, basis.hdd(np.array(bps))[:, 0])]
    if shape is Shape.COOLING_3P:
        return [_Term(*c, t, basis.cdd(np.array(bps))[:, 0])]
    if shape is Shape.FOUR_P:
        return [
            _Term("slope below change point", "kWh/°C·d", t, basis.hdd(np.array(bps))[:, 0]),
            _Term("slope above change point", "kWh/°C·d", t, basis.cdd(np.array(bps))[:, 0]),
        ]
    return [
        _Term(*h, t, basis.hdd(np.array(bps[:1]))[:, 0]),
        _Term(*c, t, basis.cdd(np.array(bps[1:]))[:, 0]),
    ]


def _terms(spec: ModelSpec, frame: Frame, bps: tuple[float, ...]) -> list[_Term]:
    """Linear columns in a fixed order: linear variables, on/off constant, temperature terms."""
    terms = [_Term(f"{r.label} slope", _SLOPE_UNITS[r], r, frame.variables[r]) for r in spec.dense]
    if spec.on_off is not None:
        on = (frame.variables[spec.on_off] > 0).astype(np.float64)
        terms.append(_Term(f"extra constant while {spec.on_off.label} > 0", "kWh", spec.on_off, on))
        if spec.weekend_on:
            weekend = frame.weekend
            if weekend is None:
                raise Unfittable("a day-type constant needs hourly or daily buckets")
            terms.append(
                _Term("weekend change of that constant", "kWh", spec.on_off, on * weekend.astype(np.float64))
            )
    return terms + _temperature_terms(spec, frame, bps)


def _stack(terms: list[_Term], n: int) -> FloatArray:
    if not terms:
        return np.zeros((n, 0))
    return np.column_stack([t.values for t in terms]).astype(np.float64)


def linear_design(spec: ModelSpec, frame: Frame, bps: tuple[float, ...]) -> FloatArray:
    """The linear columns of ``spec`` at balance points ``bps`` (constants not included)."""
    return _stack(_terms(spec, frame, bps), len(frame))


def _balance_point_names(shape: Shape) -> list[str]:
    if shape is Shape.FIVE_P:
        return ["heating balance point", "cooling balance point"]
    if shape is Shape.FOUR_P:
        return ["change point"]
    if shape.change_point:
        return ["balance point"]
    return []


def _derivative_columns(
    spec: ModelSpec, frame: Frame, bps: tuple[float, ...], beta_t: FloatArray
) -> list[FloatArray]:
    """d(model)/d(balance point) for each balance point."""
    basis, shape = frame.degree_days, spec.shape
    if not shape.change_point:
        return []
    assert basis is not None
    if shape is Shape.HEATING_3P:
        return [beta_t[0] * basis.dhdd(bps[0])]
    if shape is Shape.COOLING_3P:
        return [beta_t[0] * basis.dcdd(bps[0])]
    if shape is Shape.FOUR_P:
        return [beta_t[0] * basis.dhdd(bps[0]) + beta_t[1] * basis.dcdd(bps[0])]
    return [beta_t[0] * basis.dhdd(bps[0]), beta_t[1] * basis.dcdd(bps[1])]


#: Balance-point search for a change-point spec: (spec, frame, constants, coarse bank) -> points.
BalancePointSearch = Callable[[ModelSpec, Frame, GroupAbsorber, ChangePointBank], tuple[float, ...]]


def batched_search(
    spec: ModelSpec, frame: Frame, absorber: GroupAbsorber, bank: ChangePointBank
) -> tuple[float, ...]:
    """The fast search: group-demean, project off the linear terms, solve all candidates at once."""
    yt = absorber.demean(frame.energy)
    xt = absorber.demean(linear_design(_linear_part(spec), frame, ()))
    return find_balance_points(spec.shape, absorber, yt, xt, bank)


def _linear_part(spec: ModelSpec) -> ModelSpec:
    """``spec`` without its temperature shape: the columns projected off before a balance-point search."""
    return ModelSpec(spec.dense, on_off=spec.on_off, weekend_on=spec.weekend_on)


def fit_model(
    spec: ModelSpec,
    frame: Frame,
    bank: ChangePointBank | None = None,
    *,
    search: BalancePointSearch = batched_search,
) -> FittedModel:
    """Fit ``spec`` to ``frame``. Raises :class:`Unfittable` with a reason a person can act on."""
    _require(frame, spec)
    n = len(frame)
    absorber = GroupAbsorber.of(frame.hour_of_week if spec.time_of_week else None, n)
    if spec.time_of_week and absorber.counts.min() < 2:
        raise Unfittable("some time-of-week bins have fewer than two hours of baseline data")
    y = frame.energy
    yt = absorber.demean(y)
    xt = absorber.demean(linear_design(_linear_part(spec), frame, ()))
    if xt.shape[1] and np.linalg.matrix_rank(xt) < xt.shape[1]:  # before any balance-point search
        raise Unfittable(_COLLINEAR)
    bps: tuple[float, ...] = ()
    if spec.shape.change_point:
        try:
            bank = bank if bank is not None else ChangePointBank.for_frame(frame)
            bps = search(spec, frame, absorber, bank)
        except NoChangePoint as exc:
            raise Unfittable(str(exc)) from None
    terms = _terms(spec, frame, bps)
    lin = _stack(terms, n)
    lt = absorber.demean(lin)
    q = lin.shape[1]
    p = absorber.n_groups + q + len(bps)
    if n - p < 1:
        raise Unfittable(f"{n} buckets are too few for {p} parameters")
    if q:
        sol, _, rank, _ = np.linalg.lstsq(lt, yt, rcond=None)
        beta = np.asarray(sol, dtype=np.float64)
        if rank < q:
            raise Unfittable(_COLLINEAR)
    else:
        beta = np.zeros(0)
    rest = y - lin @ beta
    constants = absorber.means(rest)
    fitted = constants[absorber.index] + lin @ beta
    residuals = y - fitted
    sigma2 = float(residuals @ residuals) / (n - p)
    n_temperature = sum(1 for t in terms if t.role is Role.TEMPERATURE)
    jac = (
        np.column_stack([lin, *_derivative_columns(spec, frame, bps, beta[q - n_temperature :])])
        if (q or bps)
        else np.zeros((n, 0))
    )
    jt = absorber.demean(jac)
    cov = sigma2 * np.linalg.pinv(jt.T @ jt) if jac.shape[1] else np.zeros((0, 0))
    se = np.sqrt(np.maximum(np.diag(cov), 0.0))
    mg = absorber.means(jac)
    const_var = sigma2 / absorber.counts + np.einsum("gi,ij,gj->g", mg, cov, mg)
    slopes = tuple(Coefficient(t.name, float(beta[k]), float(se[k]), t.unit) for k, t in enumerate(terms))
    bp_coefs = tuple(
        Coefficient(nm, bps[k], float(se[q + k]), "°C")
        for k, nm in enumerate(_balance_point_names(spec.shape))
    )
    return FittedModel(
        spec=spec,
        absorber=absorber,
        constants=constants,
        constants_se=np.sqrt(np.maximum(const_var, 0.0)),
        slopes=slopes,
        balance_points=bp_coefs,
        n=n,
        p=p,
        fitted=fitted,
        residuals=residuals,
        param_cov=cov,
        jac_group_means=mg if jac.shape[1] else np.zeros((absorber.n_groups, 0)),
        weekend_work_seen=_weekend_work_seen(spec, frame),
    )


def _working(spec: ModelSpec, frame: Frame) -> BoolArray | None:
    """Buckets in operation by the model's own drivers (its on/off variable, else its first slope)."""
    active = [r for r in spec.dense if r in ACTIVITY_ROLES]
    role = spec.on_off if spec.on_off is not None else (active[0] if active else None)
    return None if role is None else np.asarray(frame.variables[role] > 0, dtype=np.bool_)


def _weekend_work_seen(spec: ModelSpec, frame: Frame) -> bool:
    """True unless the model has a production or hours driver and the baseline never operated
    on a weekend."""
    working, weekend = _working(spec, frame), frame.weekend
    if working is None or weekend is None:
        return True
    return bool((working & weekend).any())

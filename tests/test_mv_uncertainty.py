"""The two causes the calibration harness found behind biased and over-confident manufacturing
claims, each pinned on a small hand-built case:

- a working weekend day the baseline never saw (daily models overstated it with a weekday's
  operating constant, hourly ones understated it with the idle weekend's time-of-week bins);
- a reporting period whose day-to-day scatter is far larger than the baseline's (a machine
  left idling overnight, never seen in the baseline), which the stated interval ignored.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.evaluation._channels import Role
from edge_agent.evaluation._frame import Frame
from edge_agent.evaluation._model import fit_model
from edge_agent.evaluation._savings import compute_savings
from edge_agent.evaluation._spec import ModelSpec
from edge_agent.evaluation._stats import MIN_SCATTER_DAYS, day_sum_variance, fit_statistics

DAILY = ModelSpec((Role.PRODUCTION,), on_off=Role.PRODUCTION)
HOURLY = ModelSpec((Role.PRODUCTION,), time_of_week=True, on_off=Role.PRODUCTION)


def _daily(days: int, first_weekday: int, production: np.ndarray, rng: np.random.Generator) -> Frame:
    weekday = (first_weekday + np.arange(days)) % 7
    on = production > 0
    energy = 5.0 + np.where(on, 50.0, 0.0) + 1.0 * production + rng.normal(0, 0.5, days)
    return Frame.from_arrays(energy, production=production, weekday=weekday)


def test_daily_unseen_working_weekend_day_gets_half_the_operating_constant_and_its_spread() -> None:
    rng = np.random.default_rng(1)
    weekday = np.arange(28) % 7
    base = _daily(28, 0, np.where(weekday < 5, rng.uniform(60, 100, 28), 0.0), rng)
    model = fit_model(DAILY, base)
    assert not model.weekend_work_seen
    on_constant = model.slopes[1].value
    assert on_constant == pytest.approx(50.0, abs=3.0)

    rep = Frame.from_arrays(
        np.zeros(2), production=np.array([40.0, 40.0]), weekday=np.array([4, 5])
    )  # a Friday and a working Saturday with the same output
    friday, saturday = model.predict(rep)
    assert friday - saturday == pytest.approx(on_constant / 2)
    # the guess's spread (uniform over [0, constant]) is part of the variance of the sum
    weekday_only = model.sum_variance(rep.take(np.array([0])))
    both = model.sum_variance(rep)
    assert both - weekday_only >= on_constant**2 / 12


def test_daily_weekend_work_in_the_baseline_is_used_as_seen() -> None:
    rng = np.random.default_rng(2)
    weekday = np.arange(28) % 7
    prod = np.where(weekday < 5, rng.uniform(60, 100, 28), 0.0)
    prod[5] = 70.0  # one working Saturday
    model = fit_model(DAILY, _daily(28, 0, prod, rng))
    assert model.weekend_work_seen
    rep = Frame.from_arrays(np.zeros(2), production=np.array([40.0, 40.0]), weekday=np.array([4, 5]))
    friday, saturday = model.predict(rep)
    assert friday == pytest.approx(saturday)  # one operating constant: the model says so itself


def test_hourly_unseen_working_weekend_hour_borrows_the_working_weekdays_constant() -> None:
    rng = np.random.default_rng(3)
    hours = 28 * 24
    how = np.arange(hours) % 168
    day, hod = how // 24, how % 24
    shift = (day < 5) & (hod >= 6) & (hod < 14)
    waiting = rng.random(hours) < 0.15  # whole shift hours without output: idle, not off
    prod = np.where(shift & ~waiting, rng.uniform(20, 40, hours), 0.0)
    idle = np.where(shift, 9.0, 0.1)  # idle power while in shift, off outside
    energy = idle + 0.5 * prod + rng.normal(0, 0.05, hours)
    base = Frame.from_arrays(energy, production=prod, hour_of_week=how, weekday=day, bucket_ns=3600 * 10**9)
    model = fit_model(HOURLY, base)
    assert not model.weekend_work_seen
    # Friday 08:00 and a working Saturday 08:00 with the same output cost the same
    rep = Frame.from_arrays(
        np.zeros(2),
        production=np.array([30.0, 30.0]),
        hour_of_week=np.array([4 * 24 + 8, 5 * 24 + 8]),
        weekday=np.array([4, 5]),
        bucket_ns=3600 * 10**9,
    )
    friday, saturday = model.predict(rep)
    truth = 9.0 + 0.5 * 30.0
    assert saturday == pytest.approx(truth, abs=0.5)
    # the weekdays' average at that hour, not Friday's alone
    assert saturday == pytest.approx(friday, abs=0.5)
    assert model.sum_variance(rep) > 0


def test_day_sum_variance_is_the_variance_of_a_sum_of_independent_days() -> None:
    rng = np.random.default_rng(4)
    sums = [day_sum_variance(rng.normal(3.0, 2.0, 28)) for _ in range(400)]
    assert np.mean(sums) == pytest.approx(28 * 4.0, rel=0.15)
    assert day_sum_variance(np.ones(MIN_SCATTER_DAYS - 1)) == 0.0
    # positively autocorrelated days carry less information: a wider sum
    ar = np.zeros(400)
    for k in range(1, 400):
        ar[k] = 0.7 * ar[k - 1] + rng.normal()
    assert day_sum_variance(ar) > 3 * 400 * ar.var()


def test_reporting_scatter_widens_the_interval_and_never_narrows_it() -> None:
    rng = np.random.default_rng(5)
    y = 100 + rng.normal(0, 1.0, 56)
    stats = fit_statistics(y, np.full(56, y.mean()), 1)
    adjusted = np.full(28, 100.0)
    measured = adjusted - 1.0 + rng.normal(0, 1.0, 28)
    quiet = compute_savings(stats, adjusted, measured, (0.9,), 1.0, day_gaps=adjusted - measured)
    plain = compute_savings(stats, adjusted, measured, (0.9,), 1.0)
    assert quiet.at(0.9).kwh == pytest.approx(plain.at(0.9).kwh, rel=0.35)
    assert quiet.at(0.9).kwh >= plain.at(0.9).kwh
    # three reporting days with a machine idling overnight: 40 kWh each the baseline never saw
    measured_events = measured.copy()
    measured_events[[3, 11, 19]] += 40.0
    events = compute_savings(
        stats, adjusted, measured_events, (0.9,), 1.0, day_gaps=adjusted - measured_events
    )
    error = abs(events.savings_kwh - (28 * 1.0 - 120.0))
    assert plain.at(0.9).kwh < 120.0 - 28
    assert events.at(0.9).kwh > 2 * plain.at(0.9).kwh
    assert error <= events.at(0.9).kwh

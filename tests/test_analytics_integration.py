"""Energy from power: trapezoid (exact on ramps, within its error bound on a sine), interval
averages (exact Σ P̄·Δt), gaps never integrated, window boundaries split exactly."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.analytics import AssetSpec, FixedWindow, StreamingAnalytics, WindowKpis
from edge_agent.batch import Quality

NS = 1_000_000_000
T0 = 1_700_006_400 * NS  # UTC midnight


def meter(**kw: object) -> AssetSpec:
    base: dict[str, object] = {
        "asset": "feeder-3",
        "kind": "meter",
        "rated_power_kw": 100.0,
        "max_gap_s": 60.0,
        "windows": (FixedWindow("1min", 60), FixedWindow("1h", 3600)),
    }
    base.update(kw)
    return AssetSpec(**base)  # type: ignore[arg-type]


def run(
    spec: AssetSpec, t_s: np.ndarray, p: np.ndarray, q: np.ndarray | None = None
) -> tuple[dict[tuple[str, int], WindowKpis], StreamingAnalytics]:
    ts = T0 + np.round(t_s * NS).astype(np.int64)
    qq = np.zeros(ts.size, np.uint8) if q is None else q
    sa = StreamingAnalytics(spec)
    out = sa.update(ts, {"power": p}, {"power": qq}) + sa.flush()
    return {(w.window, (w.start_ns - T0) // NS): w for w in out}, sa


def test_trapezoid_is_exact_on_a_ramp_and_splits_windows_exactly() -> None:
    rng = np.random.default_rng(3)
    t = np.concatenate(([0.0], np.sort(rng.uniform(0, 600, 300)), [600.0]))
    p = 3 + 0.5 * t  # kW
    out, sa = run(meter(), t, p)

    def exact(a: float, b: float) -> float:  # ∫ (3 + t/2) dt in kWh
        return (3 * (b - a) + 0.25 * (b * b - a * a)) / 3600

    assert sa.totals.energy_kwh == pytest.approx(exact(0, 600), rel=1e-12)
    assert out[("1h", 0)].kpis["energy_kwh"] == pytest.approx(exact(0, 600), rel=1e-12)
    for i in range(10):  # boundaries fall inside intervals: the split must still be exact
        assert out[("1min", 60 * i)].kpis["energy_kwh"] == pytest.approx(
            exact(60 * i, 60 * i + 60), rel=1e-11
        )


@pytest.mark.parametrize("h", [5.0, 10.0])
def test_trapezoid_error_on_a_sine_is_within_its_bound(h: float) -> None:
    w = 2 * np.pi / 120.0
    t = np.arange(0, 1000 + h / 2, h)
    p = 10 + 5 * np.sin(w * t)
    _, sa = run(meter(), t, p)
    exact = (10 * 1000 + 5 / w * (1 - np.cos(w * 1000))) / 3600
    err = abs(sa.totals.energy_kwh - exact)
    bound = 1000 * h * h * 5 * w * w / 12 / 3600  # (b − a)·h²·max|P''|/12
    assert err <= bound
    assert err > bound / 100  # it really is the trapezoid, not something exact by accident


def test_trapezoid_error_is_second_order() -> None:
    w = 2 * np.pi / 120.0
    exact = (10 * 1000 + 5 / w * (1 - np.cos(w * 1000))) / 3600
    errs = []
    for h in (10.0, 5.0):
        t = np.arange(0, 1000 + h / 2, h)
        _, sa = run(meter(), t, 10 + 5 * np.sin(w * t))
        errs.append(abs(sa.totals.energy_kwh - exact))
    assert 3.5 < errs[0] / errs[1] < 4.5  # halving h quarters the error


def test_interval_averages_sum_exactly() -> None:
    rng = np.random.default_rng(5)
    t = np.concatenate(([0.0], np.cumsum(rng.uniform(0.5, 20, 100))))
    pbar = rng.uniform(0, 50, t.size)  # pbar[k] = average power over (t[k-1], t[k]]
    _, sa = run(meter(power_mode="interval_average"), t, pbar)
    dt = np.diff(np.round(t * NS)) / NS  # the timestamps as stamped, to the ns
    assert sa.totals.energy_kwh == pytest.approx(float(np.sum(pbar[1:] * dt)) / 3600, rel=1e-12)


def test_gaps_are_not_integrated_and_are_counted() -> None:
    t = np.array([0, 10, 20, 110, 120.0])  # 90 s silence > max gap 60 s
    p = np.full(5, 36.0)
    out, sa = run(meter(), t, p)
    assert sa.totals.energy_kwh == pytest.approx(36 * 30 / 3600)  # 20 s + 10 s, not 120 s
    assert sa.totals.gaps["power"] == 1
    # [0, 60): 20 s covered; [60, 120): [110, 120] covered
    assert out[("1min", 0)].kpis["coverage_power"] == pytest.approx(20 / 60)
    assert out[("1min", 60)].kpis["coverage_power"] == pytest.approx(10 / 60)
    assert out[("1min", 0)].coverage == pytest.approx(20 / 60)


def test_bad_samples_are_bridged_within_the_max_gap() -> None:
    t = np.array([0, 10, 20, 30.0])
    p = np.array([10.0, 1000.0, np.nan, 40.0])  # garbage behind Bad quality, NaN behind Good
    q = np.array([0, Quality.BAD, 0, 0], np.uint8)
    out, sa = run(meter(), t, p, q)
    assert sa.totals.energy_kwh == pytest.approx((10 + 40) / 2 * 30 / 3600)
    assert sa.totals.gaps["power"] == 0
    assert out[("1min", 0)].kpis["coverage_power"] == pytest.approx(30 / 60)


def test_uncertain_samples_count_but_not_as_good_coverage() -> None:
    t = np.array([0, 10, 20.0])
    q = np.array([0, Quality.UNCERTAIN, 0], np.uint8)
    out, sa = run(meter(), t, np.array([6.0, 6.0, 6.0]), q)
    assert sa.totals.energy_kwh == pytest.approx(6 * 20 / 3600)
    assert out[("1min", 0)].kpis["coverage_power"] == 0.0  # both intervals touch the Uncertain sample
    assert out[("1min", 0)].kpis["mean_power_kw"] == pytest.approx(6.0)

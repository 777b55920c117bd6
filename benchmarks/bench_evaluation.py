"""Benchmark of the before/after evaluator: fit, select and evaluate one year of data.

    python benchmarks/bench_evaluation.py           # one year daily + one year hourly
    python benchmarks/bench_evaluation.py --quick   # fewer repeats

"Evaluate" is the whole pure computation: resampling with coverage, every candidate model
(constants or 168 time-of-week bins × production/hours terms × 2P/3P/4P/5P temperature
shapes, each change-point shape with its coarse + fine balance-point grid search), the
selection, the adjusted baseline, savings, ASHRAE 14 uncertainty and gates. Goals: < 0.5 s
daily, < 3 s hourly.

The baseline in the same process is the obvious path: the same candidates and grids, but
every balance-point candidate solved on its own with ``np.linalg.lstsq`` on its full design
matrix (dummy columns for time-of-week bins). Both paths must choose the same model and the
same balance points; the script exits 1 if they do not. With 168 dummy columns the loop
needs minutes for the full hourly candidate set, so for hourly data both paths are timed on
the same subset (all constant-intercept candidates plus one time-of-week change-point model).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta

import numpy as np

from edge_agent.evaluation import (
    EvaluationOptions,
    ModelSpec,
    Period,
    Resolution,
    Role,
    Selection,
    SelectionMethod,
    Shape,
    candidate_specs,
    evaluate,
    render_html,
    resample_period,
    select_model,
    synthetic_site,
)
from edge_agent.evaluation._reference import loop_search

GOALS = {Resolution.DAY: 0.5, Resolution.HOUR: 3.0}


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Best and median wall time of ``repeat`` runs (after one warm-up run)."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def _signature(sel: Selection) -> tuple[str, tuple[float, ...]]:
    return sel.chosen.spec.name, tuple(round(b.value, 9) for b in sel.model.balance_points)


def _agree(fast: Selection, slow: Selection) -> bool:
    """Same chosen model, and every candidate's balance points identical."""
    ok = _signature(fast) == _signature(slow)
    for a, b in zip(fast.candidates, slow.candidates, strict=True):
        if a.model is None or b.model is None:
            ok &= a.model is None and b.model is None and a.rejected == b.rejected
            continue
        pa = [x.value for x in a.model.balance_points]
        pb = [x.value for x in b.model.balance_points]
        ok &= bool(np.allclose(pa, pb, rtol=0, atol=1e-9))
    return ok


def bench(resolution: Resolution, repeat: int) -> bool:
    interval = 900 if resolution is Resolution.DAY else 3600
    site = synthetic_site(days=365 + 90, interval_s=interval, seed=11, retrofit_day=365)
    s = site.start
    options = EvaluationOptions(
        baseline=Period(s, s + timedelta(days=364)),
        reporting=Period(s + timedelta(days=365), s + timedelta(days=454)),
        resolution=resolution,
    )
    result = evaluate(site.data, options)
    n = result.stats.n
    specs = candidate_specs(result.baseline.frame)
    n_cp = sum(sp.shape.change_point for sp in specs)
    print(f"\n== one year of {resolution.adjective} data: {n} baseline buckets from "
          f"{site.data.channels[Role.ENERGY].values.size:,} readings, {len(specs)} candidates "
          f"({n_cp} with a balance-point search)")  # fmt: skip
    print(
        f"   chosen: {result.model.spec.name}; "
        + ", ".join(f"{b.name} {b.value:.2f} ± {b.se:.2f} °C" for b in result.model.balance_points)
    )
    print(f"   savings {result.savings.savings_kwh:,.0f} kWh ± {result.savings.at(0.9).kwh:,.0f} (90 %), "
          f"true {site.true_savings_kwh:,.0f} kWh; {result.verdict.headline[:60]}…")  # fmt: skip

    best, med = timed(lambda: evaluate(site.data, options), repeat)
    goal = GOALS[resolution]
    verdict = "meets" if med < goal else "MISSES"
    print(
        f"   evaluate (adj. R²):           best {best:6.3f} s  median {med:6.3f} s   "
        f"goal < {goal} s: {verdict}"
    )
    cv_opts = EvaluationOptions(**{**options.__dict__, "selection": SelectionMethod.CV})
    best_cv, med_cv = timed(lambda: evaluate(site.data, cv_opts), max(1, repeat // 2))
    print(f"   evaluate (5-fold blocked CV): best {best_cv:6.3f} s  median {med_cv:6.3f} s   (information)")

    frame = resample_period(
        "baseline", options.baseline, resolution, site.data.timezone, site.data.channels
    ).frame
    if resolution is Resolution.HOUR:
        specs = [sp for sp in specs if not sp.time_of_week]
        specs.append(ModelSpec((Role.PRODUCTION,), Shape.HEATING_3P, time_of_week=True))
        label = f"{len(specs)}-candidate subset"
    else:
        label = f"all {len(specs)} candidates"
    fast_sel = select_model(frame, specs=specs)
    t0 = time.perf_counter()
    slow_sel = select_model(frame, specs=specs, search=loop_search)
    slow = time.perf_counter() - t0
    fast, _ = timed(lambda: select_model(frame, specs=specs), repeat)
    agree = _agree(fast_sel, slow_sel)
    print(f"   selection, {label}:")
    print(f"     batched search (one solve per grid): {fast:7.3f} s")
    print(f"     loop of lstsq per candidate:         {slow:7.3f} s   ratio {slow / fast:5.1f}×   "
          f"same models and balance points: {'yes' if agree else 'NO'}")  # fmt: skip

    t0 = time.perf_counter()
    html = render_html(result)
    print(f"   HTML report with {html.count('<img')} embedded plots: {time.perf_counter() - t0:.2f} s, "
          f"{len(html) / 1e6:.2f} MB (information)")  # fmt: skip
    return agree


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    args = ap.parse_args()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"numpy {np.__version__}, {os.cpu_count()} cores, load average {load} (other users' jobs included)")
    ok = True
    for res in (Resolution.DAY, Resolution.HOUR):
        ok &= bench(res, 3 if args.quick else 7)
    print(f"\nload average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Programme portfolio end to end: 35 projects × 1 year of hourly data, and 1,000 evaluations.

    python benchmarks/bench_portfolio.py                 # 35 projects, 365 days
    python benchmarks/bench_portfolio.py --projects 8 --days 120   # quicker

1. Simulates one plant history per project (seeds and retrofit sizes differ; not timed) and
   writes its CSV and an M&V plan (hourly resolution, 8-week baseline).
2. Times ``edge-agent evaluate portfolio DIR`` on all cores: every plan evaluated and its
   report written, then the portfolio. The baseline in the same process tree is the same
   command with ``--workers 1``. Goal (issue #10): under 60 s for 35 × 1 year on this machine.
3. Times aggregating 1,000 finished ``evaluation.json`` files (copies of the real ones).
   Goal: under 10 s.

Prints the load average with each figure; the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from edge_agent.evaluation import cli_main
from edge_agent_simulators.config import RetrofitConfig
from edge_agent_simulators.history import generate_history

BASELINE_DAYS = 56


def _load() -> str:
    return f"load average {os.getloadavg()[0]:.2f}"


def _write_projects(root: Path, projects: int, days: int) -> Path:
    plans = root / "plans"
    plans.mkdir()
    start = date(2024, 1, 1)
    for i in range(projects):
        size = 0.1 + 0.4 * (i % 5) / 4
        h = generate_history(
            days,
            BASELINE_DAYS,
            3600,
            1000 + i,
            root / f"data{i:02d}",
            retrofit=RetrofitConfig(idle_power_factor=1 - size, scrap_factor=1 - size * 2 / 3),
            progress=False,
        )
        b_end = start + timedelta(days=BASELINE_DAYS - 1)
        r_end = start + timedelta(days=days - 1)
        (plans / f"p{i:02d}.yaml").write_text(
            f"""project: {{name: Project {i:02d}, id: P-{i:03d}, site: Plant {i}, measure: idle standby,
  boundary: IPMVP Option B (cnc1 + imm1), evaluator: Bench}}
data: {{csv: {h.csv_path}, asset: cnc1+imm1}}
periods: {{baseline: {start}/{b_end}, reporting: {b_end + timedelta(days=1)}/{r_end}}}
resolution: hour
co2e_kg_per_kwh: 0.38
""",
            encoding="utf-8",
        )
    return plans


def _time_portfolio(plans: Path, out: Path, workers: int) -> float:
    t0 = time.perf_counter()
    code = cli_main(["portfolio", str(plans), "--out", str(out), "--workers", str(workers)])
    dt = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"portfolio exited {code}")
    return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--projects", type=int, default=35)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--aggregate", type=int, default=1000)
    ap.add_argument("--skip-serial", action="store_true", help="no --workers 1 baseline run")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        plans = _write_projects(root, args.projects, args.days)
        sim_s = time.perf_counter() - t0
        print(f"simulated {args.projects} × {args.days} days hourly in {sim_s:.1f} s (not timed)")
        cores = os.cpu_count() or 1
        par = _time_portfolio(plans, root / "par", cores)
        print(f"portfolio end to end, {cores} workers: {par:.1f} s ({_load()}); goal < 60 s")
        if not args.skip_serial:
            ser = _time_portfolio(plans, root / "ser", 1)
            print(f"baseline, 1 worker: {ser:.1f} s ({_load()}); speed-up ×{ser / par:.2f}")
        doc = json.loads((root / "par" / "portfolio.json").read_text(encoding="utf-8"))
        print(f"claimed total {doc['totals']['claimed']['savings_kwh']:,.0f} ± "
              f"{doc['totals']['claimed']['uncertainty_kwh']:,.0f} kWh")  # fmt: skip

        evals = sorted((root / "par" / "projects").glob("*/evaluation.json"))
        many = root / "many"
        for k in range(args.aggregate):
            d = many / f"e{k:04d}"
            d.mkdir(parents=True)
            shutil.copyfile(evals[k % len(evals)], d / "evaluation.json")
        t0 = time.perf_counter()
        code = cli_main(["portfolio", str(many), "--out", str(root / "agg")])
        agg = time.perf_counter() - t0
        print(f"aggregating {args.aggregate} evaluation.json: {agg:.2f} s ({_load()}); goal < 10 s")
        ok = code == 0 and agg < 10 and (args.days < 365 or args.projects < 35 or par < 60)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

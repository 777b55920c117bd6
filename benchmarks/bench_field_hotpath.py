"""Analytics hot path per row, before and after issue #12, in one process tree.

    python benchmarks/bench_field_hotpath.py [--baseline /work/main] [--batches 40]

What is timed is the production path of one device batch, end to end inside the agent:
``Agent._handle`` (non-finite check, routing, state-code mapping, the streaming KPIs,
the analytics state save, engineering units for delivery) with a sink that drops
everything. One batch = 1,000 rows of the simulator's cnc1 over Modbus (power, five
counters, a PLC state; 250 s at 4 Hz). The script runs itself twice: once with this
checkout's ``edge_agent`` and once with the baseline checkout's on ``PYTHONPATH``, and
prints µs per row for both and the ratio, with the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]
ROWS = 1000


def measure(batches: int, state: bool = True) -> dict[str, Any]:
    import numpy as np

    import edge_agent
    from edge_agent.batch import SampleBatch
    from edge_agent.config import build_config_model
    from edge_agent.demo.plant_config import demo_config
    from edge_agent.plugins import driver_registry
    from edge_agent.runtime.service import Agent

    class Drop:
        async def submit(self, *a: Any, **k: Any) -> None:
            return None

    tmp = Path(tempfile.mkdtemp())
    raw = demo_config(
        modbus_port=5020, opcua_endpoint="opc.tcp://127.0.0.1:4840/", mqtt_port=None, data_dir=tmp
    )
    raw["analytics"]["emission_factor_kg_per_kwh"] = 0.4
    config = build_config_model([d.config_model for d in driver_registry().values()]).model_validate(raw)
    agent = Agent(config, sink=Drop()) if state else Agent(config, sink=Drop(), persist_state=False)
    rng = np.random.default_rng(1)
    t0 = 1_700_006_400 * 10**9
    step = 250_000_000
    power = np.where(rng.random(ROWS * batches) < 0.6, 18.0, 6.0) + rng.normal(0, 0.3, ROWS * batches)
    energy = 10**6 + np.cumsum(np.round(power * 0.25 / 3600 / 0.0001)).astype(np.int64)
    state = np.where(power > 10, 3.0, 1.0)

    def batch(k: int) -> SampleBatch:
        sl = slice(k * ROWS, (k + 1) * ROWS)
        n = ROWS
        values = {
            "power_kw": power[sl],
            "energy_kwh": energy[sl],
            "reactive_energy_kvarh": energy[sl] // 3,
            "good_parts": np.arange(k * n, (k + 1) * n, dtype=np.int64) // 120,
            "scrap_parts": np.arange(k * n, (k + 1) * n, dtype=np.int64) // 2400,
            "material_kg": np.arange(k * n, (k + 1) * n, dtype=np.int64) * 3,
            "state": state[sl],
        }
        ts = t0 + np.arange(k * n, (k + 1) * n, dtype=np.int64) * step
        return SampleBatch("cnc1-modbus", ts, values, {t: np.zeros(n, np.uint8) for t in values})

    prepared = [batch(k) for k in range(batches)]

    # the processing task's per-device-round entry point (``_on_batch`` before the queue runtime)
    handle = getattr(agent, "_handle", None) or agent._on_batch

    async def run() -> float:
        await handle(prepared[0])  # warm-up (first windows, imports)
        start = time.perf_counter()
        for b in prepared[1:]:
            await handle(b)
        return time.perf_counter() - start

    elapsed = asyncio.run(run())
    return {
        "us_per_row": elapsed / ((batches - 1) * ROWS) * 1e6,
        "edge_agent": str(Path(edge_agent.__file__).parent),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", default="/work/main", help="checkout of the code before the change")
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--no-state", action="store_true", help="after: without the analytics state saves")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.batches, state=not args.no_state)))
        return
    results: dict[str, dict[str, Any]] = {}
    runs = (
        ("before", Path(args.baseline), []),
        ("after", HERE, []),
        ("after, no state", HERE, ["--no-state"]),
    )
    for label, root, extra in runs:
        env = {**os.environ, "PYTHONPATH": str(root)}
        out = subprocess.run(
            [sys.executable, __file__, "--child", "--batches", str(args.batches), *extra],
            env=env,
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        )
        results[label] = json.loads(out.stdout.strip().splitlines()[-1])
    before, after = results["before"]["us_per_row"], results["after"]["us_per_row"]
    load = os.getloadavg()
    print(f"analytics hot path, 1,000-row batches of one polled machine (load {load[0]:.2f} {load[1]:.2f})")
    print(f"  before ({results['before']['edge_agent']}): {before:7.2f} µs/row")
    print(f"  after  ({results['after']['edge_agent']}): {after:7.2f} µs/row")
    bare = results["after, no state"]["us_per_row"]
    print(f"  after without state saves: {bare:7.2f} µs/row (every such batch closes windows: one save each)")
    print(f"  ratio after/before: {after / before:.2f}; without state saves {bare / before:.2f}")


if __name__ == "__main__":
    main()

"""What coalescing buys on the delivery path: CPU per sample, one-row records vs. coalesced ones.

The same 100 assets x 10 tags x 60 polls go through the production path — ``Delivery.submit``
(SQLite buffer, one transaction per record), the MQTT sink (encode, publish QoS 1, PUBACK,
confirm) to a real Mosquitto — once as one record per poll (what every poll cost before the
runtime coalesced) and then as records of 5 and 50 rows (``buffer.linger`` 0.5 s and 5 s at
10 Hz polling). CPU is this process's, all threads, from /proc (``time.process_time``).

Run: ``.venv/bin/python benchmarks/bench_runtime_batching.py`` (needs mosquitto).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from servers import MosquittoServer, delivery_config

from edge_agent.batch import SampleBatch
from edge_agent.config import AssetConfig
from edge_agent.delivery import Delivery

ASSETS, TAGS, POLLS = 100, 10, 60


def poll_rows(asset: int, first: int, rows: int) -> SampleBatch:
    ts = 1_700_000_000_000_000_000 + (first + np.arange(rows, dtype=np.int64)) * 100_000_000
    vals = {f"t{j}": np.full(rows, 50.0 + asset + j) for j in range(TAGS)}
    return SampleBatch(f"plc{asset}", ts, vals, {t: np.zeros(rows, np.uint8) for t in vals})


async def run(broker: MosquittoServer, workdir: Path, rows: int) -> float:
    """CPU seconds per sample for all ASSETS x POLLS rows submitted as records of ``rows`` rows."""
    cfg = delivery_config(workdir, mqtt=broker, prefix=f"bench{time.time_ns()}")
    base = cfg.assets[0]
    assets = [AssetConfig(**dict(base.model_dump(), id=f"a{i}")) for i in range(ASSETS)]
    async with Delivery(cfg) as d:
        cpu = time.process_time()
        for first in range(0, POLLS, rows):
            for i, asset in enumerate(assets):
                await d.submit("raw", asset, poll_rows(i, first, rows))
        assert await d.flush(120), "not delivered within 120 s"
        cpu = time.process_time() - cpu
    return cpu / (ASSETS * POLLS * TAGS)


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "mqtt").mkdir()
        broker = MosquittoServer(Path(tmp) / "mqtt")
        broker.start()
        try:
            results = {}
            for rows in (1, 5, 50):
                results[rows] = await run(broker, Path(tmp) / f"r{rows}", rows)
        finally:
            broker.stop()
    load = os.getloadavg()
    print(f"delivery CPU per sample, {ASSETS} assets x {TAGS} tags x {POLLS} polls (load {load[0]:.1f})")
    for rows, s in results.items():
        ratio = s / results[1]
        print(f"  {rows:3d} row(s) per record: {s * 1e6:6.2f} us/sample   ratio to 1 row: {ratio:.2f}")


if __name__ == "__main__":
    asyncio.run(main())

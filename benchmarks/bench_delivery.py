"""Delivery benchmarks: line protocol, buffer, and producer -> Mosquitto -> ingest -> InfluxDB 1.x.

Run: ``.venv/bin/python benchmarks/bench_delivery.py`` (needs mosquitto and influxd for the
end-to-end part). Every figure is printed next to a baseline measured in the same run.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from servers import InfluxServer, MosquittoServer, delivery_config

from edge_agent.batch import SampleBatch
from edge_agent.config import BufferConfig
from edge_agent.delivery import Delivery, IngestStats, Placement, batch_lines, run_ingest
from edge_agent.delivery.buffer import SyncBuffer

PLACE = Placement("s1", "a1", "l1", "press1")
TAGS = {"site": "s1", "area": "a1", "line": "l1", "asset": "press1", "device": "plc1"}


def batch(n: int, k: int, t0: int = 1_700_000_000_000_000_000, realistic: bool = True) -> SampleBatch:
    rng = np.random.default_rng(0)
    ts = t0 + np.arange(n, dtype=np.int64) * 100_000_000
    vals = {}
    for j in range(k):
        v = rng.normal(50, 10, n)
        vals[f"t{j}"] = np.round(v, 3) if realistic else v
    return SampleBatch("plc1", ts, vals, {t: np.zeros(n, np.uint8) for t in vals})


def best(fn, repeat: int = 3) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_line_protocol() -> None:
    from influxdb_client.client.write.point import Point
    from influxdb_client.domain.write_precision import WritePrecision

    print("== line protocol from SampleBatch ==")
    for realistic in (True, False):
        b = batch(100_000, 10, realistic=realistic)
        pts = len(b) * len(b.values)
        ours = best(lambda b=b: batch_lines("raw", TAGS, b))
        small = batch(10_000, 10, realistic=realistic)
        cols = {t: v.tolist() for t, v in small.values.items()}
        ts = small.ts.tolist()

        def points(cols=cols, ts=ts) -> str:  # type: ignore[no-untyped-def]
            out = []
            for i, t in enumerate(ts):
                p = Point("raw")  # type: ignore[no-untyped-call]
                for k, v in TAGS.items():
                    p = p.tag(k, v)  # type: ignore[no-untyped-call]
                for name, col in cols.items():
                    p = p.field(name, col[i])  # type: ignore[no-untyped-call]
                out.append(p.time(t, WritePrecision.NS).to_line_protocol())  # type: ignore[no-untyped-call]
            return "\n".join(out)

        theirs = best(points, 1)
        ours_rate = pts / ours
        their_rate = len(small) * len(small.values) / theirs
        label = "3-decimal values" if realistic else "full-precision random floats"
        print(
            f"  {label:30s}: ours {ours_rate / 1e6:5.2f} M fields/s, influxdb-client Point "
            f"{their_rate / 1e6:5.2f} M fields/s, ratio {ours_rate / their_rate:4.1f}x"
        )


def bench_buffer(tmp: Path) -> None:
    print("== SQLite WAL buffer ==")
    n_batches, rows, k = 200, 1000, 5
    b = batch(rows, k)
    samples = n_batches * rows * k
    buf = SyncBuffer(BufferConfig(path=tmp / "bench.db", max_bytes=2**31), ["mqtt"], {})
    buf.open()
    t = time.perf_counter()
    for _ in range(n_batches):
        buf.append("raw", PLACE, b)
    w = time.perf_counter() - t
    size = buf.refresh_file_bytes()
    t = time.perf_counter()
    got = 0
    while True:
        recs = buf.fetch("mqtt", 100, 10**9)
        if not recs:
            break
        buf.confirm("mqtt", [r.id for r in recs])
        got += sum(r.samples for r in recs)
    r = time.perf_counter() - t
    buf.close()
    raw_bytes = samples * (8 + 1) + n_batches * rows * 8  # float64 + quality + ts, uncompressed numpy
    print(f"  write  {samples / w / 1e6:5.2f} M samples/s ({n_batches / w:7.0f} batches/s of {rows}x{k})")
    print(f"  replay {got / r / 1e6:5.2f} M samples/s (fetch + decode + confirm + delete)")
    print(
        f"  on disk {size / samples * 1e6 / 2**20:5.2f} MiB per million samples "
        f"(raw numpy {raw_bytes / samples * 1e6 / 2**20:5.2f} MiB; ratio {size / raw_bytes:4.2f})"
    )


async def bench_end_to_end(tmp: Path) -> None:
    print("== producer -> Mosquitto -> ingest -> InfluxDB 1.x (loopback) ==")
    (tmp / "m").mkdir()
    (tmp / "i").mkdir()
    mosq, influx = MosquittoServer(tmp / "m"), InfluxServer(tmp / "i")
    mosq.start()
    influx.start()
    try:
        db = "bench"
        influx.create_database(db)
        cfg = delivery_config(
            tmp, mqtt=mosq, influx=influx, database=db, prefix="bench", influx_extra={"batch_size": 20_000}
        )
        stats, stop, ready = IngestStats(), asyncio.Event(), asyncio.Event()
        ingest = asyncio.create_task(run_ingest(cfg, client_id="bench", stop=stop, ready=ready, stats=stats))
        await ready.wait()
        rows, k, n_batches = 1000, 10, 200
        total = rows * k * n_batches
        t0 = time.time_ns() - total // k * 100_000_000  # ends now: ingest quarantines stamps > 1 h ahead
        latencies: list[float] = []
        async with Delivery(cfg.model_copy(update={"influxdb": None})) as d:
            start = time.perf_counter()
            for i in range(n_batches):
                await d.submit("raw", cfg.assets[0], batch(rows, k, t0 + i * rows * 100_000_000))
            submitted = time.perf_counter() - start
            while stats.samples < total:  # noqa: ASYNC110  (polling a counter is the measurement)
                await asyncio.sleep(0.005)
            elapsed = time.perf_counter() - start
            # latency: one small poll at a time, submit -> visible in an InfluxDB query
            for i in range(30):
                ts = time.time_ns()
                t = time.perf_counter()
                await d.submit("raw", cfg.assets[0], SampleBatch.single("lat", ts, {"p": float(i)}))
                while not influx.query(  # noqa: ASYNC110
                    f"SELECT p FROM raw WHERE device='lat' AND time = {ts}", db
                ):
                    await asyncio.sleep(0.001)
                latencies.append(time.perf_counter() - t)
        stop.set()
        await ingest
        stored = influx.count(db)
        print(
            f"  sustained {total / elapsed / 1e3:6.1f} k samples/s end to end "
            f"({total} samples in {n_batches} messages; submit alone {total / submitted / 1e3:6.1f} k/s)"
        )
        print(
            f"  poll-to-queryable latency p50 {np.percentile(latencies, 50) * 1e3:5.1f} ms, "
            f"p99 {np.percentile(latencies, 99) * 1e3:5.1f} ms (includes the query poll)"
        )
        print(f"  stored {stored} of {total + 30} samples")
    finally:
        mosq.stop()
        influx.stop()


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        bench_line_protocol()
        bench_buffer(tmp)
        asyncio.run(bench_end_to_end(tmp))


if __name__ == "__main__":
    main()

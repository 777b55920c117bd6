"""Cost of the Sparkplug sink against the UNS MQTT sink on the same batches.

    python benchmarks/bench_sparkplug.py        # needs mosquitto for the end-to-end part

Both are measured on the production path (``EdgeNode.data`` builds and serialises the
DDATA; ``encode_payload`` the UNS message) for the same buffered batches: 10 Modbus-like
tags (8 float64, 2 int64 counters) × 100 rows per batch, a few Uncertain/Bad samples.
The UNS JSON encoder is the baseline: the ratio says how many times more CPU a sample
costs on the Sparkplug path. End to end: the same batches submitted to ``Delivery`` with
only the UNS ``mqtt`` sink (baseline), then only the ``sparkplug`` sink, each timed until
the buffer is drained, i.e. every batch was confirmed by Mosquitto's PUBACK.
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

from edge_agent.batch import Quality, SampleBatch
from edge_agent.delivery import Delivery
from edge_agent.delivery.payload import encode_payload
from edge_agent.delivery.record import Placement, Record
from edge_agent.delivery.sparkplug.session import EdgeNode
from edge_agent.delivery.sparkplug.topics import NodeTopics

ROWS, BATCHES = 100, 200


def _records() -> list[Record]:
    rng = np.random.default_rng(1)
    out = []
    for i in range(BATCHES):
        ts = 1_700_000_000_000_000_000 + (i * ROWS + np.arange(ROWS, dtype=np.int64)) * 250_000_000
        values: dict[str, np.ndarray] = {f"f{j}": rng.normal(50, 5, ROWS) for j in range(8)}
        values |= {f"c{j}": np.cumsum(rng.integers(0, 9, ROWS)).astype(np.int64) for j in range(2)}
        quality = {t: np.zeros(ROWS, np.uint8) for t in values}
        quality["f0"][::17] = Quality.UNCERTAIN
        quality["f1"][::23] = Quality.BAD
        batch = SampleBatch(device="m1", ts=ts, values=values, quality=quality)
        out.append(Record(i, "raw", Placement("s", "a", "l", "press1"), batch))
    return out


def _time(fn: object, records: list[Record]) -> tuple[float, int]:
    best, size = float("inf"), 0
    for _ in range(3):
        t0 = time.perf_counter()
        size = 0
        for r in records:
            size += fn(r)  # type: ignore[operator]
        best = min(best, time.perf_counter() - t0)
    return best, size


async def _drain(cfg: object, records: list[Record]) -> float:
    async with Delivery(cfg) as d:  # type: ignore[arg-type]
        start = time.perf_counter()
        for r in records:
            await d.submit("raw", d.config.assets[0], r.batch)
        assert await d.flush(300), "not drained"
        return time.perf_counter() - start


async def end_to_end(tmp: Path, records: list[Record]) -> None:
    mosq = MosquittoServer(tmp)
    mosq.start()
    try:
        base = delivery_config(tmp, mqtt=mosq, prefix="bench")
        samples = len(records) * ROWS * 10
        uns = await _drain(
            base.model_copy(update={"buffer": base.buffer.model_copy(update={"path": tmp / "uns.db"})}),
            records,
        )
        doc = base.model_dump(mode="json")
        doc.update(mqtt=None, sparkplug={"host": mosq.host, "port": mosq.port, "group_id": "bench"})
        doc["buffer"]["path"] = str(tmp / "spb.db")
        spb = await _drain(type(base).model_validate(doc), records)
        print(f"end to end, submit -> Mosquitto PUBACK (load average {os.getloadavg()[0]:.2f})")
        for label, secs in (("UNS sink (baseline)", uns), ("Sparkplug sink", spb)):
            print(f"{label:20} {samples / secs / 1e3:7.1f} k samples/s  ({secs:.2f} s)")
        print(f"ratio: the Sparkplug sink takes {spb / uns:.1f}x the UNS sink's time")
    finally:
        mosq.stop()


def main() -> None:
    records = _records()
    samples = BATCHES * ROWS * 10
    node = EdgeNode(NodeTopics("g", "n"), {})
    node.new_session()
    node.birth()
    spb, spb_bytes = _time(lambda r: sum(len(m.payload) for m in node.data(r)), records)
    uns, uns_bytes = _time(lambda r: len(encode_payload(r.kind, r.placement, r.batch)), records)
    load = os.getloadavg()[0]
    print(f"{samples} samples in {BATCHES} batches of {ROWS} rows x 10 tags (load average {load:.2f})")
    for label, secs, size in (("UNS JSON (baseline)", uns, uns_bytes), ("Sparkplug DDATA", spb, spb_bytes)):
        print(f"{label:20} {samples / secs / 1e6:6.2f} M samples/s  {size / samples:5.1f} bytes/sample")
    print(f"ratio: Sparkplug costs {spb / uns:.1f}x the CPU per sample of UNS JSON")
    with tempfile.TemporaryDirectory() as d:
        asyncio.run(end_to_end(Path(d), records))


if __name__ == "__main__":
    main()

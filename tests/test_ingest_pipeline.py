"""Producer -> Mosquitto -> ingest -> InfluxDB 1.x, on real servers."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest
from servers import InfluxServer, MosquittoServer, delivery_config, synthetic_batch

from edge_agent.delivery import Delivery, IngestStats, run_ingest

pytestmark = pytest.mark.servers
_ids = itertools.count()


def _names() -> tuple[str, str]:
    n = next(_ids)
    return f"db_pipe{n}_{time.time_ns()}", f"pipe{n}x{time.time_ns()}"


async def _until(pred, within: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def test_batches_reach_influx_through_mqtt_and_ingest(
    tmp_path: Path, mosquitto_server: MosquittoServer, influxdb_server: InfluxServer
) -> None:
    db, prefix = _names()
    influxdb_server.create_database(db)
    cfg = delivery_config(tmp_path, mqtt=mosquitto_server, influx=influxdb_server, database=db, prefix=prefix)
    producer_cfg = cfg.model_copy(update={"influxdb": None})
    stop, ready, stats = asyncio.Event(), asyncio.Event(), IngestStats()
    ingest = asyncio.create_task(
        run_ingest(cfg, client_id=f"ing-{prefix}", stop=stop, ready=ready, stats=stats)
    )
    await asyncio.wait_for(ready.wait(), 10)
    asset = cfg.assets[0]
    t0 = time.time_ns()
    async with Delivery(producer_cfg) as d:
        for i in range(20):
            await d.submit("raw", asset, synthetic_batch("plc1", t0 + i * 10**9, 500))
        assert await d.flush(20)
        assert d.stats.sinks["mqtt"].delivered == 20 * 500 * 4
    await _until(lambda: stats.samples >= 40_000)
    stop.set()
    await ingest
    assert influxdb_server.count(db) == 40_000
    assert stats.rejected == 0

"""Per-sink isolation: an InfluxDB sink whose server is blackholed for 60 s (a TCP listener that
accepts and never answers) does not slow the MQTT sink publishing to a real Mosquitto, nor the
submitting side; past its own backlog limit the dead sink alone skips its oldest batches."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from servers import MosquittoServer, delivery_config, synthetic_batch

from edge_agent.config import InfluxConfig, SinkLimits
from edge_agent.delivery import Delivery
from edge_agent.delivery.payload import decode_payload

ROWS = 200  # rows per batch: 800 samples, about 2 kB stored
PERIOD = 0.1  # one batch every 100 ms


@contextlib.contextmanager
def blackhole() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung server, a dropped route)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                held.append(srv.accept()[0])

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        t.join()
        for c in held:
            c.close()
        srv.close()


class Arrivals:
    """When each batch (keyed by its first timestamp) reached the broker."""

    def __init__(self, server: MosquittoServer, topic: str) -> None:
        self.q: queue.Queue[tuple[float, bytes]] = queue.Queue()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.c.on_message = lambda c, u, m: self.q.put((time.monotonic(), bytes(m.payload)))
        self.c.connect(server.host, server.port)
        self.c.subscribe(topic, qos=1)
        self.c.loop_start()
        self.at: dict[int, float] = {}

    def drain(self) -> dict[int, float]:
        while True:
            try:
                t, payload = self.q.get_nowait()
            except queue.Empty:
                return self.at
            self.at.setdefault(int(decode_payload(payload).batch.ts[0]), t)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


async def _run(delivery: Delivery, seconds: float, arrivals: Arrivals) -> tuple[list[float], list[float]]:
    """Submit a batch every PERIOD s; return submit durations and submit→broker latencies."""
    asset = delivery.config.assets[0]
    sent: dict[int, float] = {}
    submit_s: list[float] = []
    t0 = time.time_ns()
    loop = asyncio.get_running_loop()
    start = loop.time()
    i = 0
    while loop.time() - start < seconds:
        ts = t0 + i * 10**9
        before = time.monotonic()
        await delivery.submit("raw", asset, synthetic_batch("plc1", ts, ROWS))
        submit_s.append(time.monotonic() - before)
        sent[ts] = before
        i += 1
        await asyncio.sleep(max(0.0, start + i * PERIOD - loop.time()))
    deadline = time.monotonic() + 20
    while len(arrivals.drain().keys() & sent.keys()) < len(sent) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    at = arrivals.drain()
    assert sent.keys() <= at.keys(), f"{len(sent.keys() - at.keys())} of {len(sent)} batches never arrived"
    return submit_s, [at[ts] - sent[ts] for ts in sent]


@pytest.mark.slow
async def test_a_blackholed_sink_does_not_slow_the_other(
    tmp_path: Path, mosquitto_server: MosquittoServer
) -> None:
    prefix = f"iso{time.time_ns()}"
    arrivals = Arrivals(mosquitto_server, f"{prefix}/+/+/+/+/raw")
    try:
        # baseline: MQTT alone
        cfg = delivery_config(tmp_path / "alone", mqtt=mosquitto_server, prefix=prefix)
        async with Delivery(cfg) as d:
            _, base = await _run(d, 5.0, arrivals)

        limit = 256 * 1024
        with blackhole() as port:
            base_cfg = delivery_config(tmp_path / "both", mqtt=mosquitto_server, prefix=prefix)
            influx = InfluxConfig(
                url=f"http://127.0.0.1:{port}",
                database="blackholed",
                timeout=5,
                backoff_max=1,
                limits=SinkLimits(max_backlog_bytes=limit, when_full="drop_oldest"),
            )
            # flush_timeout: don't wait for the dead sink at exit (its backlog stays for a restart)
            buffer = base_cfg.buffer.model_copy(update={"flush_timeout": 1.0})
            cfg = base_cfg.model_copy(update={"influxdb": influx, "buffer": buffer})
            async with Delivery(cfg) as d:
                submit_s, lat = await _run(d, 60.0, arrivals)
                dead, mq = d.stats.sinks["influxdb"], d.stats.sinks["mqtt"]
                assert dead.delivered == 0 and dead.retried >= 3  # it really was dead all along
                assert dead.last_error and f"127.0.0.1:{port}" in dead.last_error
                assert dead.dropped > 0 and dead.backlog_bytes <= limit  # its own limit, its own loss
                assert mq.dropped == 0 and mq.backlog == 0 and d.stats.buffer.dropped == 0
                assert d.stats.buffer.file_bytes <= cfg.buffer.max_bytes
    finally:
        arrivals.close()
    p95_base, p95 = float(np.percentile(base, 95)), float(np.percentile(lat, 95))
    # The other sink's latency stays where it was without the dead one (a loaded 2-core CI box
    # adds noise, hence the floor), and submitting never waits for the dead sink.
    assert p95 <= max(3 * p95_base, 0.5), (p95, p95_base)
    assert float(np.percentile(submit_s, 99)) < 0.5, max(submit_s)

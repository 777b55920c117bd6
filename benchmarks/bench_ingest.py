"""Ingest at scale: samples/s and CPU per message for 1, 2 and 4 `edge-agent ingest` workers.

Run: ``.venv/bin/python benchmarks/bench_ingest.py [small] [large]`` (needs mosquitto and influxd).

The production path end to end: real worker processes (``edge-agent ingest --group``) on a
real Mosquitto and InfluxDB 1.x, fed by a producer process publishing pre-encoded UNS
messages at QoS 1. Two shapes: small (1 row x 10 tags, what a gateway publishing every
poll sends) and large (1,000 rows x 10 tags, what the agent's MQTT sink batches). The
baseline, measured in the same run against the same producer, is a bare paho subscriber
that acknowledges and discards (the broker + network floor). CPU is read from
/proc per process and per thread: the main thread runs asyncio (decode, validation, line
protocol, acks); the other threads are paho's network loop and the InfluxDB writer.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from servers import InfluxServer, MosquittoServer

TAGS = 10
SHAPES = {"small": (1, 20_000), "large": (1000, 200)}  # rows per message, messages
WORKERS = (1, 2, 4)
TICK = os.sysconf("SC_CLK_TCK")

PRODUCER = r"""
import json, sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
host, port, topic, rows, tags, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], *map(int, sys.argv[4:7])
t0 = time.time_ns() - count * rows * 1_000_000
payloads = []
for m in range(count):
    ts = [t0 + (m * rows + r) * 1_000_000 for r in range(rows)]
    values = {f"t{j}": [round(0.5 + j + r * 0.001, 3) for r in range(rows)] for j in range(tags)}
    doc = {"v": 1, "kind": "raw", "site": "s1", "area": "a1", "line": "l1", "asset": "press1",
           "device": "plc1", "ts": ts, "values": values}
    payloads.append(json.dumps(doc, separators=(",", ":")).encode())
c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-producer", protocol=mqtt.MQTTv5)
c.max_inflight_messages_set(100)
c.max_queued_messages_set(0)
c.connect(host, port)
c.loop_start()
print("ready", flush=True)
sys.stdin.readline()
start = time.perf_counter()
infos = [c.publish(topic, p, qos=1) for p in payloads]
for i in infos:
    i.wait_for_publish(120)
print(f"published {time.perf_counter() - start:.3f}", flush=True)
c.disconnect()
c.loop_stop()
"""

BARE = r"""
import sys, time, threading
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes
host, port, flt, expect = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
n = 0
done = threading.Event()
c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=mqtt.MQTTv5, manual_ack=True)
def on_message(cl, u, m):
    global n
    cl.ack(m.mid, m.qos)
    n += 1
    if n == expect:
        done.set()
c.on_message = on_message
c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(flt, 1)
props = Properties(PacketTypes.CONNECT); props.ReceiveMaximum = 1000
c.connect(host, port, clean_start=True, properties=props)
c.loop_start()
time.sleep(1.0)
print("ready", flush=True)
done.wait(600)
print("done", flush=True)
c.disconnect(); c.loop_stop()
"""


def _cpu(pid: int) -> tuple[float, float]:
    """(main thread, other threads) CPU seconds of a process."""
    main = other = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        secs = (int(fields[11]) + int(fields[12])) / TICK
        if int(task.name) == pid:
            main += secs
        else:
            other += secs
    return main, other


def _producer(mosq: MosquittoServer, topic: str, rows: int, count: int) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        [sys.executable, "-c", PRODUCER, mosq.host, str(mosq.port), topic, str(rows), str(TAGS), str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    return p


def _go(p: subprocess.Popen[str]) -> float:
    assert p.stdin is not None
    p.stdin.write("go\n")
    p.stdin.flush()
    return time.perf_counter()


def bench_baseline(mosq: MosquittoServer, shape: str) -> float:
    rows, count = SHAPES[shape]
    prefix = f"bare{shape}{time.time_ns()}"
    sub = subprocess.Popen(
        [sys.executable, "-c", BARE, mosq.host, str(mosq.port), f"{prefix}/#", str(count)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sub.stdout is not None and sub.stdout.readline().strip() == "ready"
    prod = _producer(mosq, f"{prefix}/s1/a1/l1/press1/raw", rows, count)
    start = _go(prod)
    assert sub.stdout.readline().strip() == "done"
    elapsed = time.perf_counter() - start
    prod.wait(60)
    sub.wait(30)
    return count * rows * TAGS / elapsed


def bench_workers(
    tmp: Path, mosq: MosquittoServer, influx: InfluxServer, shape: str, n: int
) -> dict[str, float]:
    rows, count = SHAPES[shape]
    prefix = f"b{shape}{n}x{time.time_ns()}"
    db = f"db_{prefix}"
    cfg = tmp / f"{prefix}.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "agent": {"name": "bench"},
                "buffer": {"path": str(tmp / prefix / "buffer.db")},
                "mqtt": {
                    "host": mosq.host,
                    "port": mosq.port,
                    "topic_template": f"{prefix}/{{site}}/{{area}}/{{line}}/{{asset}}/{{kind}}",
                    "ingest_group": "g",
                    "session_expiry": 60,
                },
                "influxdb": {"url": influx.url, "database": db, "batch_size": 20_000},
            }
        )
    )
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edge_agent.cli",
                "ingest",
                str(cfg),
                "--client-id",
                f"{prefix}-w{i}",
                "--log-level",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(n)
    ]
    try:
        time.sleep(2.5 + 0.5 * n)  # import + connect + subscribe
        prod = _producer(mosq, f"{prefix}/s1/a1/l1/press1/raw", rows, count)
        cpu0 = [_cpu(w.pid) for w in workers]
        start = _go(prod)
        total = count * rows * TAGS
        while influx.count(db) < total:
            time.sleep(0.2)
            if time.perf_counter() - start > 600:
                raise RuntimeError(f"{shape}/{n}: only {influx.count(db)} of {total} samples after 600 s")
        elapsed = time.perf_counter() - start
        cpu1 = [_cpu(w.pid) for w in workers]
        prod.wait(60)
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(30)
    main = sum(b[0] - a[0] for a, b in zip(cpu0, cpu1, strict=True))
    other = sum(b[1] - a[1] for a, b in zip(cpu0, cpu1, strict=True))
    return {
        "samples_s": total / elapsed,
        "us_per_msg": (main + other) / count * 1e6,
        "us_per_sample": (main + other) / total * 1e6,
        "other_share": other / (main + other) if main + other else 0.0,
    }


def main() -> None:
    results: dict[str, object] = {"load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "m").mkdir()
        (tmp / "i").mkdir()
        mosq, influx = MosquittoServer(tmp / "m"), InfluxServer(tmp / "i")
        mosq.start()
        influx.start()
        try:
            shapes = [a for a in sys.argv[1:] if a in SHAPES] or list(SHAPES)
            for shape in shapes:
                rows, count = SHAPES[shape]
                base = bench_baseline(mosq, shape)
                print(
                    f"== {shape}: {count} messages of {rows} x {TAGS} samples "
                    f"(load {os.getloadavg()[0]:.2f}) =="
                )
                print(f"  baseline: bare paho subscriber, ack and discard: {base / 1e3:8.1f} k samples/s")
                for n in WORKERS:
                    r = bench_workers(tmp, mosq, influx, shape, n)
                    results[f"{shape}/{n}"] = r
                    print(
                        f"  {n} worker(s): {r['samples_s'] / 1e3:8.1f} k samples/s "
                        f"({r['samples_s'] / base:4.2f}x baseline), CPU {r['us_per_msg']:8.1f} us/message "
                        f"= {r['us_per_sample']:6.2f} us/sample, "
                        f"{r['other_share']:4.0%} in paho/writer threads"
                    )
        finally:
            mosq.stop()
            influx.stop()
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if "--json" in sys.argv:
        print(json.dumps(results))


if __name__ == "__main__":
    main()

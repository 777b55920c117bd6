"""What the status page and /metrics cost a gateway at 5,000 tags/s.

End to end on the production path: ``edge-agent run`` in its own process polls a Modbus
server (another process) at ~5 k tags/s; its CPU time is read from /proc while nobody
watches (baseline) and while one live status page is open (SSE, one update a second) and
/metrics and /healthz are scraped every second. Phases alternate so load from other
processes hits both alike; the difference is the cost of operations.

Run: ``.venv/bin/python benchmarks/bench_operations.py [--seconds 15 --rounds 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_modbus import _child_server, free_port, tags_for, wait_listening

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def config(port: int, web: int, devices: int, blocks: int, data: Path) -> dict[str, object]:
    return {
        "agent": {"name": "bench", "stats_log_interval": 3600},
        "assets": [{"id": "m", "site": "s", "area": "a", "line": "l", "rated_power_kw": 10}],
        "devices": [
            {
                "name": f"dev{i}",
                "driver": "modbus",
                "host": "127.0.0.1",
                "port": port,
                "poll_interval": 1.0,
                "tags": tags_for(blocks),
            }
            for i in range(devices)
        ],
        "buffer": {"path": str(data / "buffer.db")},
        "status_page": {"port": web},
    }


class Watcher:
    """One open status page (its SSE stream) + /metrics and /healthz every second."""

    def __init__(self, base: str) -> None:
        self.base, self.running, self.events, self.scrapes = base, True, 0, 0
        self.threads = [
            threading.Thread(target=self._sse, daemon=True),
            threading.Thread(target=self._scrape),
        ]

    def _sse(self) -> None:
        with urllib.request.urlopen(self.base + "/events", timeout=30) as r:
            while self.running:
                if r.readline().startswith(b"data: "):
                    self.events += 1

    def _scrape(self) -> None:
        while self.running:
            for path in ("/metrics", "/healthz"):
                with urllib.request.urlopen(self.base + path, timeout=5) as r:
                    r.read()
            self.scrapes += 1
            time.sleep(1.0)

    def __enter__(self) -> Watcher:
        urllib.request.urlopen(self.base + "/", timeout=5).read()  # the page itself, once
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.running = False
        self.threads[1].join()


def measure(pid: int, seconds: float) -> float:
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=15.0, help="per phase (default 15)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--devices", type=int, default=4)
    ap.add_argument(
        "--blocks", type=int, default=17, help="75-tag blocks per device (default 17: 1,275 tags)"
    )
    args = ap.parse_args()
    tags_per_s = args.devices * args.blocks * 75
    port, web = free_port(), free_port()
    server = multiprocessing.get_context("spawn").Process(target=_child_server, args=(port, args.blocks))
    server.start()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "bench.yaml"
        cfg.write_text(yaml.safe_dump(config(port, web, args.devices, args.blocks, Path(tmp))))
        asyncio.run(wait_listening(port))
        agent = subprocess.Popen(
            [sys.executable, "-m", "edge_agent.cli", "run", str(cfg), "--log-format", "plain"],
            stderr=open(Path(tmp) / "agent.log", "wb"),  # noqa: SIM115
        )
        base = f"http://127.0.0.1:{web}"
        try:
            for _ in range(100):
                try:
                    urllib.request.urlopen(base + "/healthz", timeout=1).read()
                    break
                except OSError:
                    time.sleep(0.2)
            time.sleep(3)  # connections up, first polls done
            idle, watched, events, scrapes = [], [], 0, 0
            for _ in range(args.rounds):
                idle.append(measure(agent.pid, args.seconds))
                with Watcher(base) as w:
                    watched.append(measure(agent.pid, args.seconds))
                events, scrapes = events + w.events, scrapes + w.scrapes
            with urllib.request.urlopen(base + "/api/status", timeout=5) as r:
                status = r.read().decode()
        finally:
            agent.terminate()
            agent.wait(30)
            server.terminate()
            server.join()
    load = os.getloadavg()
    base_cpu, ops_cpu = statistics.median(idle), statistics.median(watched)
    shape = f"{args.devices} Modbus devices x {args.blocks * 75} tags, polled every 1 s"
    print(f"edge-agent run at {tags_per_s} tags/s ({shape})")
    print(f"  load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    print(f"  agent CPU, nobody watching:               {100 * base_cpu:6.2f} % of a core  (rounds {idle})")
    print(f"  agent CPU, page open + scrape every 1 s:  {100 * ops_cpu:6.2f} % of a core  (rounds {watched})")
    print(f"  cost of page + /metrics + /healthz:       {100 * (ops_cpu - base_cpu):6.2f} % of a core "
          f"(ratio {ops_cpu / base_cpu:.3f}); {events} SSE events, {scrapes} scrapes")  # fmt: skip
    devs = json.loads(status)["devices"]
    print("  devices: " + ", ".join(f"{d['name']} {d['polls']} polls {d['failures']} failed" for d in devs))
    assert all(d["polls"] > 0 and d["failures"] == 0 for d in devs), "the load did not run as intended"


if __name__ == "__main__":
    main()

"""End-to-end gateway benchmark: CPU per tag-sample of `edge-agent run` against a bare reader.

One process tree, one run, phases one after the other so each has the machine to itself:

* a Modbus TCP server (this file, FC 3/4 from a numpy register image) with N tags in
  unit ids of at most 10,000 tags; every second the values move, so the KPIs see states
  change, energy and parts count up;
* a real Mosquitto (tests/servers.py) and a subscriber that counts values per second at the
  broker and the data age (receive time − sample stamp) of every raw row;
* phase ``bare``: a bare pymodbus client per unit id reading the same 125-register blocks
  once a second (the baseline);
* phase ``generic``: ``edge-agent run`` with N generic float32 tags, 10 per asset;
* phase ``kpi``: ``edge-agent run`` with 10 tags per asset in real roles (power,
  energy counter, part counter, state + 6 generic), so the KPIs run.

For each phase: start-up (spawn → first value at the broker), then a warm-up, then a window
over which CPU (utime + stime from /proc) and values at the broker are counted; RSS at the
end of the window. CPU per tag-sample is process CPU / values delivered (bare: / values read),
and each agent figure is printed as a ratio to the bare reader's. RSS per tag is taken above
the RSS of the same agent with a 10-tag config (``base``). The load average is printed with
each phase.

    .venv/bin/python benchmarks/bench_gateway.py --tags 1000 5000 --window 60 --warmup 15
    .venv/bin/python benchmarks/bench_gateway.py --tags 1000 --window 10 --warmup 5   # quick
    .venv/bin/python benchmarks/bench_gateway.py --tags 50000 --phases kpi --stalls  # loop stalls
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from servers import MosquittoServer

from edge_agent.broker import free_port

TAGS_PER_UNIT = 10_000  # 20,000 registers of float32: well inside one unit's register space
TAGS_PER_ASSET = 10
BLOCK = 125
_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


# ---- Modbus server ---------------------------------------------------------------------------
class PlantImage:
    """Register images of all unit ids; assets cycle off → idle → producing, staggered."""

    def __init__(self, tags: int) -> None:
        self.units = -(-tags // TAGS_PER_UNIT)
        self.tags = tags
        self.regs = {
            u + 1: np.zeros(2 * min(TAGS_PER_UNIT, tags - u * TAGS_PER_UNIT), ">u2")
            for u in range(self.units)
        }
        n_assets = -(-tags // TAGS_PER_ASSET)
        rng = np.random.default_rng(1)
        self.phase = rng.integers(0, 90, n_assets)
        self.energy_wh = rng.integers(0, 2**31, n_assets).astype(np.uint64)
        self.parts = rng.integers(0, 2**20, n_assets).astype(np.uint64)
        self.generic = rng.uniform(0, 100, tags).astype(np.float32)
        self.t = 0

    def tick(self) -> None:
        """One second of plant: 30 s off, 30 s idle, 30 s producing, per asset."""
        self.t += 1
        state = np.array([0, 1, 3], np.uint32)[((self.t + self.phase) // 30) % 3]
        power = np.array([0.2, 6.0, 0.0, 22.0], np.float32)[state]
        power = power * np.float32(1.0) + np.float32(0.3) * np.sin(self.t + self.phase).astype(np.float32)
        self.energy_wh = (self.energy_wh + np.round(power.astype(np.float64) / 3.6).astype(np.uint64)) % 2**32
        self.parts = (self.parts + ((state == 3) & ((self.t + self.phase) % 5 == 0))) % 2**32
        self.generic += np.float32(0.01)
        all_words = self.generic.astype(">f4").view(">u2").copy()
        per_asset = all_words[: (self.tags // TAGS_PER_ASSET) * 2 * TAGS_PER_ASSET].reshape(
            -1, 2 * TAGS_PER_ASSET
        )
        k = per_asset.shape[0]
        per_asset[:, 0:2] = power[:k].astype(">f4").view(">u2").reshape(-1, 2)
        per_asset[:, 2:4] = self.energy_wh[:k].astype(">u4").view(">u2").reshape(-1, 2)
        per_asset[:, 4:6] = self.parts[:k].astype(">u4").view(">u2").reshape(-1, 2)
        per_asset[:, 6:8] = state[:k].astype(">u4").view(">u2").reshape(-1, 2)
        for u, regs in self.regs.items():
            lo = (u - 1) * 2 * TAGS_PER_UNIT
            regs[:] = all_words[lo : lo + regs.size]


async def _serve_modbus(port: int, tags: int) -> None:
    image = PlantImage(tags)
    image.tick()

    async def ticker() -> None:
        while True:
            await asyncio.sleep(1.0)
            image.tick()

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readexactly(7)
                tid, _, length, unit = int.from_bytes(head[0:2]), 0, int.from_bytes(head[4:6]), head[6]
                pdu = await reader.readexactly(length - 1)
                fc = pdu[0]
                regs = image.regs.get(unit)
                if fc in (3, 4) and regs is not None and len(pdu) >= 5:
                    addr, count = int.from_bytes(pdu[1:3]), int.from_bytes(pdu[3:5])
                    if 1 <= count <= BLOCK and addr + count <= regs.size:
                        data = regs[addr : addr + count].tobytes()
                        body = bytes((fc, 2 * count)) + data
                    else:
                        body = bytes((fc | 0x80, 2))  # illegal data address
                else:
                    body = bytes((fc | 0x80, 1))  # illegal function / unknown unit
                writer.write(tid.to_bytes(2) + b"\0\0" + (len(body) + 1).to_bytes(2) + bytes((unit,)) + body)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(client, "127.0.0.1", port)
    async with server:
        await asyncio.gather(server.serve_forever(), ticker())


def modbus_server_main(port: int, tags: int) -> None:
    asyncio.run(_serve_modbus(port, tags))


# ---- broker-side counter -------------------------------------------------------------------
def counter_main(port: int, conn: Connection) -> None:
    """Count raw values and their data age at the broker; answer snapshots over ``conn``."""
    import paho.mqtt.client as mqtt

    lock = threading.Lock()
    st: dict[str, Any] = {"values": 0, "messages": 0, "ages": [], "first_ns": None}

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        now = time.time_ns()
        try:
            p = json.loads(msg.payload)
        except ValueError:
            return
        if not isinstance(p, dict) or p.get("kind") != "raw":
            return
        ts = p["ts"]
        # a counter's exact '<tag>_raw' column repeats a configured tag: count tags, not columns
        n = len(ts) * sum(1 for k in p["values"] if not k.endswith("_raw"))
        with lock:
            st["values"] += n
            st["messages"] += 1
            # every row's age: a message that carries several polls is as late as its oldest
            st["ages"].extend((now - t) / 1e9 for t in ts)
            if st["first_ns"] is None:
                st["first_ns"] = now

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-counter")
    c.on_message = on_message
    c.on_connect = lambda client, *a: client.subscribe("#", qos=0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    while True:
        cmd = conn.recv()
        with lock:
            if cmd == "reset":
                st.update(values=0, messages=0, ages=[], first_ns=None)
                conn.send(None)
            elif cmd == "snap":
                conn.send({k: (list(v) if k == "ages" else v) for k, v in st.items()})
                st["ages"] = []
            else:
                break
    c.loop_stop()


# ---- bare pymodbus reader ------------------------------------------------------------------
def bare_reader_main(port: int, tags: int, interval: float) -> None:
    import logging

    from pymodbus.client import AsyncModbusTcpClient

    logging.getLogger("pymodbus").setLevel(logging.ERROR)

    async def unit_loop(unit: int, n_regs: int) -> None:
        client = AsyncModbusTcpClient("127.0.0.1", port=port)
        await client.connect()
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            for addr in range(0, n_regs, BLOCK):
                rr = await client.read_holding_registers(
                    addr, count=min(BLOCK, n_regs - addr), device_id=unit
                )
                assert not rr.isError()
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def main() -> None:
        units = -(-tags // TAGS_PER_UNIT)
        await asyncio.gather(
            *(unit_loop(u + 1, 2 * min(TAGS_PER_UNIT, tags - u * TAGS_PER_UNIT)) for u in range(units))
        )

    asyncio.run(main())


# ---- agent config ----------------------------------------------------------------------------
_ROLES = [
    {"role": "power", "unit": "kW", "data_type": "float32"},
    {"role": "energy_counter", "unit": "kWh", "scale": 0.001, "data_type": "uint32"},
    {"role": "part_counter", "unit": "parts", "data_type": "uint32"},
    {"role": "state", "unit": "state", "data_type": "uint32"},
]


def agent_config(
    tags: int, modbus_port: int, mqtt_port: int, workdir: Path, roles: bool, interval: float
) -> dict[str, Any]:
    n_assets = -(-tags // TAGS_PER_ASSET)
    assets = [
        {
            "id": f"a{i}",
            "site": "bench",
            "area": "hall",
            "line": f"l{i // 100}",
            "kind": "machine",
            "rated_power_kw": 30.0,
            "ideal_cycle_time_s": 5.0,
            "states": {"off_below_kw": 1.0, "idle_below_kw": 10.0, "hysteresis_kw": 0.5, "min_dwell_s": 0},
        }
        for i in range(n_assets)
    ]
    devices = []
    for u in range(-(-tags // TAGS_PER_UNIT)):
        lo, hi = u * TAGS_PER_UNIT, min(tags, (u + 1) * TAGS_PER_UNIT)
        dev_tags = []
        for i in range(lo, hi):
            k = i % TAGS_PER_ASSET
            extra = (
                _ROLES[k]
                if roles and k < len(_ROLES)
                else {"role": "generic", "unit": "1", "data_type": "float32"}
            )
            dev_tags.append(
                {"name": f"t{i}", "asset": f"a{i // TAGS_PER_ASSET}", "address": 2 * (i - lo), **extra}
            )
        devices.append(
            {
                "name": f"unit{u + 1}",
                "driver": "modbus",
                "host": "127.0.0.1",
                "port": modbus_port,
                "unit_id": u + 1,
                # this server serves parallel connections, and the bare reader opens one per
                # unit id: so does the agent (by default units behind one host:port share one)
                "shared_connection": False,
                "poll_interval": interval,
                "timeout": 5.0,
                "tags": dev_tags,
            }
        )
    return {
        "agent": {"name": "bench", "log_level": "warning"},
        "assets": assets,
        "devices": devices,
        "analytics": {"kpi_interval": 60, "max_gap": 10},
        "buffer": {"path": str(workdir / "buffer.db"), "max_bytes": "1GiB"},
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "qos": 1, "max_inflight": 1000},
    }


# ---- measurement -----------------------------------------------------------------------------
def cpu_s(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / _TICK  # utime, stime


def rss_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE / 2**20


@dataclass
class Phase:
    name: str
    tags: int
    startup_s: float = float("nan")
    cpu_us: float = float("nan")  # per tag-sample
    values_per_s: float = 0.0
    expected_per_s: float = 0.0
    rss_mb: float = float("nan")
    age_p50: float = float("nan")
    age_p99: float = float("nan")
    age_max: float = float("nan")
    core_share: float = float("nan")
    server_cpu: float = float("nan")
    broker_cpu: float = float("nan")
    load: str = ""
    stall_file: Path | None = None  # --stalls: the agent's probe writes here
    stalls: dict[str, Any] | None = None  # callbacks over 20 ms in the window, and where


def read_stalls(path: Path | None) -> dict[str, Any]:
    """The stall probe's cumulative counts (benchmarks/stall_probe), empty before its first write."""
    try:
        return dict(json.loads(path.read_text())) if path is not None else {}
    except (OSError, ValueError):
        return {}


def stall_diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {
        part: {k: n - before.get(part, {}).get(k, 0) for k, n in after.get(part, {}).items()}
        for part in ("buckets", "stacks")
    }


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        (workdir / "mosquitto").mkdir()
        self.mosquitto = MosquittoServer(workdir / "mosquitto")

    def ask(self, cmd: str) -> Any:
        self.counter_conn.send(cmd)
        return self.counter_conn.recv()

    def measure(self, phase: Phase, pid: int, server_pid: int, counted: bool, read_rate: float) -> None:
        a = self.args
        time.sleep(a.warmup)
        self.ask("snap")
        stalls0 = read_stalls(phase.stall_file)
        c0, s0, b0, t0 = cpu_s(pid), cpu_s(server_pid), cpu_s(self.mosquitto.proc.pid), time.monotonic()  # type: ignore[union-attr]
        snap0 = self.ask("snap")
        spy = None
        if a.profile is not None and counted:  # the agent's phases only; figures then include py-spy's cost
            out = a.profile / f"{phase.name}-{phase.tags}.txt"
            spy_exe = str(Path(sys.executable).with_name("py-spy"))
            cmd = [spy_exe, "record", "--pid", str(pid), "--duration", str(int(a.window))]
            cmd += ["--rate", str(a.profile_rate)]
            spy = subprocess.Popen(
                [*cmd, "--nonblocking", "--format", "raw", "-o", str(out)], stdout=subprocess.DEVNULL
            )
        time.sleep(a.window)
        if spy is not None:
            spy.wait()
        snap1 = self.ask("snap")
        c1, s1, b1, t1 = cpu_s(pid), cpu_s(server_pid), cpu_s(self.mosquitto.proc.pid), time.monotonic()  # type: ignore[union-attr]
        dt = t1 - t0
        if phase.stall_file is not None:
            phase.stalls = stall_diff(stalls0, read_stalls(phase.stall_file))
        phase.rss_mb = rss_mb(pid)
        phase.expected_per_s = phase.tags / a.interval
        phase.values_per_s = (snap1["values"] - snap0["values"]) / dt if counted else read_rate
        samples = phase.values_per_s * dt
        phase.cpu_us = (c1 - c0) / samples * 1e6 if samples else float("inf")
        phase.core_share = (c1 - c0) / dt
        phase.server_cpu = (s1 - s0) / dt
        phase.broker_cpu = (b1 - b0) / dt
        ages = np.array(snap1["ages"]) if counted else np.array([])
        if ages.size:
            phase.age_p50, phase.age_p99, phase.age_max = (
                float(x) for x in np.percentile(ages, [50, 99, 100])
            )
        phase.load = " ".join(f"{x:.2f}" for x in os.getloadavg())

    def run_agent(
        self, name: str, tags: int, roles: bool, server_port: int, server_pid: int, measure: bool = True
    ) -> Phase:
        phase = Phase(name, tags)
        d = Path(tempfile.mkdtemp(prefix=f"{name}-{tags}-", dir=self.workdir))
        cfg = agent_config(tags, server_port, self.mosquitto.port, d, roles, self.args.interval)
        if self.args.hold is not None:
            cfg["analytics"]["hold_rows"] = self.args.hold
        if self.args.linger is not None:
            cfg["buffer"]["linger"] = self.args.linger
        if self.args.config_format == "json":  # as a config generator would write it
            path = d / "config.json"
            path.write_text(json.dumps(cfg, indent=1))
        else:  # block style, as a person would write it
            path = d / "config.yaml"
            path.write_text(
                yaml.dump(cfg, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False)
            )
        self.ask("reset")
        exe = Path(sys.executable).with_name("edge-agent")
        env = dict(os.environ)
        if self.args.stalls:
            phase.stall_file = d / "stalls.json"
            probe = str(Path(__file__).resolve().parent / "stall_probe")
            env["PYTHONPATH"] = os.pathsep.join(p for p in (probe, env.get("PYTHONPATH")) if p)
            env["EDGE_AGENT_STALL_FILE"] = str(phase.stall_file)
        t_spawn = time.time_ns()
        with open(d / "agent.log", "wb") as log:
            proc = subprocess.Popen(
                [str(exe), "run", str(path)], stdout=log, stderr=subprocess.STDOUT, cwd=d, env=env
            )
        try:
            deadline = time.monotonic() + self.args.startup_timeout
            while (first := self.ask("snap")["first_ns"]) is None:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{name}: edge-agent exited with {proc.returncode}: "
                        + (d / "agent.log").read_text()[-3000:]
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name}: no value at the broker after {self.args.startup_timeout} s")
                time.sleep(0.05)
            phase.startup_s = (first - t_spawn) / 1e9
            if measure:
                self.measure(phase, proc.pid, server_pid, True, 0.0)
            else:
                time.sleep(2.0)
                phase.rss_mb = rss_mb(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return phase

    def run_bare(self, tags: int, server_port: int, server_pid: int) -> Phase:
        phase = Phase("bare", tags)
        ctx = mp.get_context("spawn")
        p = ctx.Process(target=bare_reader_main, args=(server_port, tags, self.args.interval), daemon=True)
        t0 = time.monotonic()
        p.start()
        assert p.pid is not None
        try:
            self.measure(phase, p.pid, server_pid, False, tags / self.args.interval)
            phase.startup_s = float("nan")
            del t0
        finally:
            p.terminate()
            p.join()
        return phase

    def run(self) -> list[list[Phase]]:
        a = self.args
        self.mosquitto.start()
        ctx = mp.get_context("spawn")
        self.counter_conn, child_conn = ctx.Pipe()
        counter = ctx.Process(target=counter_main, args=(self.mosquitto.port, child_conn), daemon=True)
        counter.start()
        results = []
        base: Phase | None = None
        try:
            for tags in a.tags:
                port = free_port()
                server = ctx.Process(target=modbus_server_main, args=(port, tags), daemon=True)
                server.start()
                assert server.pid is not None
                _wait_port(port)
                try:
                    if base is None:  # the agent's RSS with 10 tags: what per-tag RSS is counted above
                        base = self.run_agent("base", 10, True, port, server.pid, measure=False)
                    row = [base]
                    for ph in a.phases:
                        if ph == "bare":
                            row.append(self.run_bare(tags, port, server.pid))
                        else:
                            row.append(self.run_agent(ph, tags, ph == "kpi", port, server.pid))
                        print_phase(row[0], row[-1], row)
                finally:
                    server.terminate()
                    server.join()
                results.append(row)
        finally:
            self.counter_conn.send("stop")
            counter.join(5)
            self.mosquitto.stop()
        return results


def _wait_port(port: int) -> None:
    import socket

    for _ in range(200):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"benchmark Modbus server on port {port} did not start")


_LAST: dict[str, Phase] = {}


def print_phase(base: Phase, p: Phase, row: list[Phase]) -> None:
    bare = next((x for x in row if x.name == "bare"), None)
    ratio = f"{p.cpu_us / bare.cpu_us:5.1f}× bare" if bare is not None and p is not bare else "    baseline"
    per_tag = (p.rss_mb - base.rss_mb) * 2**20 / p.tags / 1024 if p.name != "bare" else float("nan")
    prev = _LAST.get(p.name)  # RSS growth per tag from the previous N: free of lazily loaded modules
    slope = (
        (p.rss_mb - prev.rss_mb) * 1024 / (p.tags - prev.tags)
        if prev and p.tags > prev.tags
        else float("nan")
    )
    _LAST[p.name] = p
    print(
        f"N={p.tags:>6} {p.name:<8} CPU {p.cpu_us:7.1f} µs/tag-sample ({ratio}, "
        f"{p.core_share:5.1%} of a core) | {p.values_per_s:>8,.0f}/s of {p.expected_per_s:,.0f} | "
        f"age p50 {p.age_p50:5.2f} p99 {p.age_p99:5.2f} max {p.age_max:5.2f} s | RSS {p.rss_mb:6.0f} MB "
        f"({per_tag:5.2f} kB/tag above {base.rss_mb:.0f} MB base, {slope:5.2f} kB/tag from the last N) | "
        f"start-up {p.startup_s:5.2f} s | "
        f"server {p.server_cpu:4.0%} broker {p.broker_cpu:4.0%} | load {p.load}",
        flush=True,
    )
    if p.stalls is not None:
        b, top = p.stalls["buckets"], sorted(p.stalls["stacks"].items(), key=lambda kv: -kv[1])
        print(f"        loop stalls in the window: {sum(b.values())} callbacks over 20 ms {b}", flush=True)
        for where, n in top[:5]:
            if n > 0:
                print(f"        {n:5d} samples  {where}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tags", type=int, nargs="+", default=[1000, 5000, 20000, 50000])
    ap.add_argument(
        "--phases", nargs="+", default=["bare", "generic", "kpi"], choices=["bare", "generic", "kpi"]
    )
    ap.add_argument("--window", type=float, default=60.0, help="measurement window, s (default 60)")
    ap.add_argument("--warmup", type=float, default=15.0, help="after the first value at the broker, s")
    ap.add_argument("--interval", type=float, default=1.0, help="poll interval, s")
    ap.add_argument("--hold", type=float, help="the agent's analytics.hold_rows, s (default: the agent's)")
    ap.add_argument("--linger", type=float, help="the agent's buffer.linger, s (default: the agent's)")
    ap.add_argument("--startup-timeout", type=float, default=180.0)
    ap.add_argument(
        "--profile", type=Path, help="record a py-spy profile (collapsed stacks) of each agent phase here"
    )
    ap.add_argument("--profile-rate", type=int, default=50, help="py-spy samples per second (default 50)")
    ap.add_argument("--config-format", choices=["yaml", "json"], default="yaml", help="of the agent's config")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    ap.add_argument(
        "--stalls",
        action="store_true",
        help="count the agent's event-loop callbacks over 20 ms in the window and where they ran "
        "(benchmarks/stall_probe; adds a watchdog thread to the agent)",
    )
    args = ap.parse_args()
    print(
        f"bench_gateway: {os.cpu_count()} CPUs, load {os.getloadavg()}, "
        f"window {args.window:g} s after {args.warmup:g} s warm-up"
    )
    tmp = tempfile.mkdtemp(prefix="bench-gateway-")
    try:
        Bench(args, Path(tmp)).run()
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"work directory kept: {tmp}")


if __name__ == "__main__":
    main()

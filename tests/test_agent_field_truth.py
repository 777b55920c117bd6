"""End to end in the field's conditions (issue #12): `edge-agent run` as a real process against
the simulator over Modbus and OPC UA (some devices subscribed, some polled), KPIs read back
from a real Mosquitto, compared with the simulator's truth for the same intervals.

Injected on purpose: another PLC's state codes (cnc1), a device restart that jumps every
counter (imm1, read both subscribed and polled), a restart that reloads a stale non-zero
count (comp1), a subscribed node that never changes (main's outdoor temperature), and the
agent killed with SIGKILL right after it saved its state, then started again.

"The same interval": the truth is recorded as served (every simulator publish) and taken
between each asset's first and last counter reading; a counter step the agent must not
book (a jump) is taken out of the truth by the two readings around it; while the agent
was dead the truth goes to the unattributed (``unknown``) bucket, and for time KPIs the
span the agent marks unknown (from its saved state + max gap to its first reading after
the restart) is left out.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
import pytest_asyncio
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from servers import MosquittoServer

import edge_agent_simulators as simulators
from edge_agent.config import build_config_model
from edge_agent.delivery.payload import decode_payload
from edge_agent.demo.plant_config import demo_config
from edge_agent.plugins import driver_registry
from edge_agent.runtime.analytics_stage import AnalyticsStage
from edge_agent.runtime.state_store import AnalyticsStateStore
from edge_agent_simulators.plant import PlantModel
from edge_agent_simulators.schedule import SLOT_S
from edge_agent_simulators.truth import AssetTruth

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

RUN_S = 85.0  # wall seconds of plant operation
#: after the restart, at least this long: the window comparisons need complete 15 s windows
#: clear of the faults, and the faults' start waits for an imm1 shot (up to a cycle or more)
AFTER_RESTART_S = 5.0 + 4 * 15.0 + 1.0
TIME_SCALE = 30.0  # 85 s of wall time are 42.5 min of the shift schedule (states last seconds)
MAX_GAP_S = 5.0  # the bundled configs' value
#: analytics.hold_rows of the agent under test: the default unless EDGE_AGENT_TEST_HOLD_ROWS sets
#: it (the result must not depend on the hold; run it with 0, 5 and 30 to check)
HOLD_ROWS = os.environ.get("EDGE_AGENT_TEST_HOLD_ROWS")
#: plant seeds, one whole run each (~2 min; CI runs two to stay well inside its 25 min):
#: EDGE_AGENT_FIELD_SEEDS="2 7 11" runs more
SEEDS = [int(s) for s in os.environ.get("EDGE_AGENT_FIELD_SEEDS", "2 7").split()]
STATES = ("off", "idle", "setup", "producing", "fault")
CNC_CODES = {"off": 0, "idle": 1, "setup": 7, "producing": 2, "fault": 9}
NS = 1_000_000_000
COUNT_KWH = 0.0001
#: the counters compared exactly (parts); a reading is matched to the publish it shows by these
PART_COUNTERS = ("good_parts", "scrap_parts")
#: a sample is stamped when its poll's last answer arrived; a poll's earlier requests (its
#: first register blocks) were answered at most this long before
POLL_TAKES_NS = 200_000_000


@dataclass
class Run:
    truths: list[tuple[int, simulators.PlantTruth]] = field(default_factory=list)
    #: the part counters as served with each truth (same order): what a reading's value shows
    served: list[dict[str, int]] = field(default_factory=list)
    #: readings whose part counts showed a publish before the one current at their stamp
    earlier: set[tuple[str, int]] = field(default_factory=set)
    kpi: dict[tuple[str, str, int], list[dict[str, float | None]]] = field(default_factory=dict)
    raw: dict[str, list[tuple[int, dict[str, Any]]]] = field(default_factory=lambda: defaultdict(list))
    events: dict[str, int] = field(default_factory=dict)
    saved: dict[str, tuple[int, int]] = field(default_factory=dict)  # asset → (counter t, last row t)
    frozen_temp: float = float("nan")
    rated: dict[str, float] = field(default_factory=dict)
    log: str = ""
    figures: list[str] = field(default_factory=list)


def agent_config(sim: simulators.Simulator, tmp: Path, m: MosquittoServer, prefix: str) -> dict[str, Any]:
    cfg = demo_config(
        modbus_port=sim.modbus_port or 0,
        opcua_endpoint=sim.opcua_endpoint or "",
        mqtt_port=m.port,
        data_dir=tmp,
        poll_interval=0.25,
    )
    assets = {a["id"]: a for a in cfg["assets"]}
    assets["cnc1"]["state_codes"] = {code: label for label, code in CNC_CODES.items()}
    # imm1 twice: subscribed over OPC UA (asset imm1) and polled over Modbus (asset imm1m)
    cfg["assets"].append({**assets["imm1"], "id": "imm1m"})
    devices = {d["name"]: d for d in cfg["devices"]}
    for tag in devices["imm1-modbus"]["tags"]:
        tag["asset"] = "imm1m"

    def opcua_device(asset: str, mode: str) -> dict[str, Any]:
        tags = []
        for n in simulators.opcua_nodes():
            if n.asset == asset:
                tag = {"name": n.signal, "asset": asset, "role": n.role, "unit": n.unit, "node_id": n.node_id}
                if n.scale != 1.0:
                    tag["scale"] = n.scale
                tags.append(tag)
        return {
            "name": f"{asset}-ua-{mode}",
            "driver": "opcua",
            "endpoint": sim.opcua_endpoint,
            "mode": mode,
            # subscriptions publish every 100 ms (one simulator tick), polls every 250 ms
            "poll_interval": 0.1 if mode == "subscribe" else 0.25,
            "timeout": 2.0,
            "backoff_max": 2.0,
            "tags": tags,
        }

    cfg["devices"] = [
        devices["cnc1-modbus"],
        devices["imm1-modbus"],
        opcua_device("imm1", "subscribe"),
        devices["comp1-opcua"],
        opcua_device("main", "subscribe"),
    ]
    cfg["analytics"].update(max_gap=MAX_GAP_S)
    if HOLD_ROWS is not None:
        cfg["analytics"].update(hold_rows=float(HOLD_ROWS))
    cfg["mqtt"].update(
        host=m.host,
        backoff_max=1,
        topic_template=f"{prefix}/{{site}}/{{area}}/{{line}}/{{asset}}/{{kind}}",
        status_topic=f"{prefix}/{{site}}/edge-agent/{{agent}}/status",
    )
    cfg["agent"] = {"name": "field-truth", "log_level": "info"}
    return cfg


class Listener:
    def __init__(self, m: MosquittoServer, topic: str, run: Run) -> None:
        self.run = run
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.c.on_message = self._on_message
        self.c.connect(m.host, m.port)
        self.c.subscribe(topic, qos=1)
        self.c.loop_start()

    def _on_message(self, c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/status"):
            return
        d = decode_payload(bytes(msg.payload))
        b = d.batch
        asset = d.placement.asset
        if d.kind == "kpi":
            for i, ts in enumerate(b.ts.tolist()):
                row = {k: (None if b.quality[k][i] >= 2 else float(v[i])) for k, v in b.values.items()}
                self.run.kpi.setdefault((asset, d.placement.window or "", ts), []).append(row)
        else:
            for i, ts in enumerate(b.ts.tolist()):
                self.run.raw[asset].append(
                    (ts, {k: (v[i].item(), int(b.quality[k][i])) for k, v in b.values.items()})
                )

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


async def _until(pred: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not pred():
        assert time.monotonic() < deadline, f"not reached within {within} s: {what}"
        await asyncio.sleep(0.02)


def start_agent(path: Path, log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "ab")  # noqa: SIM115 - the child owns it
    env = {**os.environ, "COLUMNS": "400"}  # one log record per line
    return subprocess.Popen(
        [sys.executable, "-m", "edge_agent.cli", "run", str(path)],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env,
    )


#: consecutive 5-min slots imm1 must produce from the start: the fault injection waits up to
#: 43 s of wall time (21.5 min of schedule) for one of its shots
PRODUCING_SLOTS = 5


def production_start(seed: int) -> float:
    """Past the quiet start of the demo schedule, the first 5-min slot that begins a run of
    ``PRODUCING_SLOTS`` in which imm1 produces: the faults are injected right after one of its
    shots (seed 13's first producing slot was a lone one, and no shot came)."""
    model = PlantModel(seed=seed, time_scale=TIME_SCALE)
    t = model.schedule_start + 3600 + np.arange(0.0, 86400.0, SLOT_S)
    states = model.schedule.machine_states(list(model.config.machines).index("imm1"), t)
    producing = (states == int(simulators.MachineState.PRODUCING)).astype(np.int64)
    runs = np.convolve(producing, np.ones(PRODUCING_SLOTS, np.int64), mode="valid")
    first = np.flatnonzero(runs == PRODUCING_SLOTS)
    assert first.size, f"seed {seed}: imm1 never produces for {PRODUCING_SLOTS} slots in a row in a day"
    return float(t[first[0]])


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=SEEDS, ids=[f"seed{s}" for s in SEEDS])
async def run(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    mosquitto_server: MosquittoServer,
) -> Run:
    seed: int = request.param
    tmp = tmp_path_factory.mktemp("field")
    r = Run()
    prefix = f"field{time.time_ns()}"
    codes = {"cnc1": CNC_CODES}
    start = production_start(seed)
    async with simulators.Simulator(
        seed=seed, time_scale=TIME_SCALE, modbus_port=0, opcua_port=0, state_codes=codes, schedule_start=start
    ) as sim:
        raw_cfg = agent_config(sim, tmp, mosquitto_server, prefix)
        r.rated = {a["id"]: float(a["rated_power_kw"]) for a in raw_cfg["assets"]}
        cfg_path = tmp / "agent.yaml"
        cfg_path.write_text(yaml.safe_dump(raw_cfg), encoding="utf-8")
        config = build_config_model([d.config_model for d in driver_registry().values()]).model_validate(
            raw_cfg
        )
        state_path = AnalyticsStateStore.beside_buffer(config).path
        freeze = sim.opcua_freeze("main.outdoor_temp_c")  # a subscribed node that never changes
        r.frozen_temp = float(sim.snapshot().value("main", "outdoor_temp_c"))

        def record(ns: int, truth: simulators.PlantTruth) -> None:
            r.truths.append((ns, truth))
            snap = sim.snapshot()
            r.served.append({k: int(v) for k, v in snap.values.items() if k.endswith(PART_COUNTERS)})

        record(time.time_ns(), sim.truth())
        sim.on_publish.append(record)
        listener = Listener(mosquitto_server, f"{prefix}/#", r)
        agent_log = tmp / "agent.log"
        proc = start_agent(cfg_path, agent_log)
        try:
            assets = {a["id"] for a in raw_cfg["assets"]}
            await _until(lambda: set(r.raw) >= assets, 30, "raw data of every asset")
            t_start = time.monotonic()

            # a restart that jumps imm1's counters, right after a shot (no part in the jump step)
            def shots() -> int:
                t = sim.truth()["imm1"]
                return int(t.good_parts + t.scrap_parts)

            await asyncio.sleep(3)
            n = shots()
            await _until(lambda: shots() != n, 40, "an imm1 shot")
            r.events["imm1_jump_start"] = time.time_ns()
            # far from every reading and from the wrap: each counter's step is a plain jump
            jumped = await sim.restart_device("imm1", counters="jump", down_s=0.3, to=3_000_000_000)
            r.events["imm1_jump_end"] = time.time_ns()
            assert all(after > before for before, after in jumped.values())

            await asyncio.sleep(5)
            r.events["comp1_reset_start"] = time.time_ns()
            reset = await sim.restart_device("comp1", counters="reset", down_s=0.3)
            r.events["comp1_reset_end"] = time.time_ns()
            assert all(0 < after < before for before, after in reset.values())

            # SIGKILL right after a state save, then read what the restarted agent will load
            await asyncio.sleep(8)
            # the state is a WAL-mode SQLite file: a save shows in the database or its log
            files = (state_path, state_path.with_name(state_path.name + "-wal"))

            def written() -> int:
                return max(f.stat().st_mtime_ns for f in files if f.exists())

            mtime = written()
            await _until(lambda: written() != mtime, 10, "a state save")
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            r.events["killed"] = time.time_ns()
            saved = AnalyticsStateStore.beside_buffer(config).load()
            assert saved is not None
            # continue from it as the restarted agent will: rows it held are booked first
            resumed = AnalyticsStage(config)
            resumed.restore(saved)
            for asset, stream in resumed._streams.items():
                carry = stream._carry
                counter = carry.roles.get("energy_counter")
                if counter is not None:
                    seen = carry.latest_ns if carry.latest_ns is not None else counter.t
                    r.saved[asset] = (counter.t, seen)
            await asyncio.sleep(3)
            proc = start_agent(cfg_path, agent_log)
            r.events["restarted"] = time.time_ns()

            restarted = time.monotonic()
            await asyncio.sleep(max(0.0, RUN_S - (restarted - t_start), AFTER_RESTART_S))
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            r.events["stopped"] = time.time_ns()
            await asyncio.sleep(1.0)  # the last MQTT messages
        finally:
            if proc.poll() is None:
                proc.kill()
            sim.on_publish.clear()
            listener.close()
            freeze.clear()
        r.log = agent_log.read_text(encoding="utf-8", errors="replace")
    return r


# ---- the truth for the agent's intervals ----------------------------------------------------------
def _served_index(r: Run, t_ns: int) -> int:
    """The truth served at ``t_ns``: the latest recorded at or before it."""
    times = [t for t, _ in r.truths]
    return max(int(np.searchsorted(times, t_ns, side="right")) - 1, 0)


def truth_of_reading(r: Run, asset: str, ts: int) -> simulators.PlantTruth:
    """The truth a reading of ``asset`` stamped ``ts`` shows.

    A poll is stamped when its last answer arrived (edge_agent/drivers/modbus/README.md), so a
    value read by one of its earlier requests may predate a publish (a shot) just before the
    stamp. Such a reading still shows the earlier part counts; it is matched to the latest
    publish served within the poll's duration before ``ts`` whose part counters equal the
    reading's, else the truth at ``ts``.
    """
    i = _served_index(r, ts)
    row = next((row for t, row in r.raw[asset] if t == ts), None)
    name = TRUTH_OF.get(asset, asset)
    shown = (
        {}
        if row is None
        else {f"{name}.{k}": v for k, (v, q) in row.items() if k in PART_COUNTERS and q == 0}
    )
    for j in range(i, -1, -1):
        if j < i and r.truths[j + 1][0] < ts - POLL_TAKES_NS:
            break  # record j was no longer served within the poll
        if all(r.served[j].get(k) == int(v) for k, v in shown.items()):
            if j < i:
                r.earlier.add((asset, ts))
            return r.truths[j][1]
    return r.truths[i][1]


def figures(t: AssetTruth) -> dict[str, float]:
    """The truth's additive quantities; a compressor's states are its load states."""
    if t.asset == "comp1":
        kwh, sec = t.load_states()
    else:
        kwh, sec = t.energy_kwh_by_state, t.seconds_by_state
    out = {"energy": t.energy_kwh, "good": t.good_parts, "scrap": t.scrap_parts, "material": t.material_kg}
    out |= {"air_m3": t.air_m3, "loaded_s": t.loaded_s}
    out |= {f"e_{s}": kwh.get(s, 0.0) for s in STATES} | {f"t_{s}": sec.get(s, 0.0) for s in STATES}
    return {k: float(v) for k, v in out.items()}


TRUTH_OF = {"imm1m": "imm1"}  # imm1 read twice: polled over Modbus as asset imm1m


def between(r: Run, asset: str, a: int, b: int) -> dict[str, float]:
    """The truth between two readings of ``asset`` (each as its value shows it)."""
    name = TRUTH_OF.get(asset, asset)
    b = max(a, b)  # an empty span is nothing
    return figures(truth_of_reading(r, asset, b)[name].minus(truth_of_reading(r, asset, a)[name]))


def minus(x: dict[str, float], y: dict[str, float]) -> dict[str, float]:
    return {k: x[k] - y[k] for k in x}


def readings(r: Run, asset: str) -> list[int]:
    """Timestamps of the asset's Good energy-counter readings."""
    return [ts for ts, row in r.raw[asset] if row.get("energy_kwh", (0, 2))[1] == 0]


def pair_around(ts: list[int], a: int, b: int) -> tuple[int, int]:
    """The reading before ``a`` and the first after ``b`` (the step the agent skips)."""
    before = [t for t in ts if t < a]
    after = [t for t in ts if t > b]
    return before[-1], after[0]


@dataclass(frozen=True)
class Expected:
    counted: dict[str, float]  # what the counters show over the observed interval, jumps out
    unattributed: float  # energy made while the agent was dead
    down: dict[str, float]  # everything made while the agent was dead (recovered from counters)
    timed: dict[str, float]  # state seconds over the spans the agent observed states
    analog: dict[str, float]  # integrals of analog signals (air): never across the agent's death


def expected(r: Run, asset: str) -> Expected:
    ts = readings(r, asset)
    whole = between(r, asset, ts[0], ts[-1])
    counted = dict(whole)
    jump = {"imm1": "imm1_jump", "imm1m": "imm1_jump", "comp1": "comp1_reset"}.get(asset)
    if jump:
        a, b = pair_around(ts, r.events[f"{jump}_start"], r.events[f"{jump}_end"])
        counted = minus(counted, between(r, asset, a, b))
    saved_counter_t, saved_obs_t = r.saved[asset]
    first_after = min(t for t in ts if t > r.events["restarted"])
    down = between(r, asset, saved_counter_t, first_after)
    # the state is unknown from the last row the dead agent saw to the first after restart
    timed = minus(whole, between(r, asset, saved_obs_t, first_after))
    counted = minus(counted, down)
    return Expected(
        counted=counted, unattributed=down["energy"], down=down, timed=timed, analog=minus(whole, down)
    )


def agent_sums(r: Run, asset: str, window: str = "15s", only: set[int] | None = None) -> dict[str, float]:
    """Σ over the asset's windows, each taken as last reported (the fuller one)."""
    out: dict[str, float] = defaultdict(float)
    for (a, w, ts), rows in r.kpi.items():
        if a == asset and w == window and (only is None or ts in only):
            for k, v in rows[-1].items():
                if v is not None:
                    out[k] += v
    return out


def close(agent: float, truth: float, rel: float = 0.01, abs_: float = 2 * COUNT_KWH) -> bool:
    return abs(agent - truth) <= max(rel * abs(truth), abs_)


def report(r: Run, name: str, agent: float, truth: float) -> None:
    err = (agent - truth) / truth * 100 if truth else float("nan")
    r.figures.append(f"{name:<34} agent {agent:12.5f}  truth {truth:12.5f}  {err:+7.3f} %")


# ---- acceptance -------------------------------------------------------------------------------------
async def test_injected_faults_happened_and_were_seen(run: Run) -> None:
    jumps = [ln for ln in run.log.splitlines() if "counter jumped" in ln]  # one line per jump
    assert any("'imm1' device 'imm1-ua-subscribe' tag 'good_parts'" in ln for ln in jumps)
    assert any("'imm1m' device 'imm1-modbus' tag 'good_parts'" in ln for ln in jumps)
    comp1 = [ln for ln in jumps if "'comp1' device 'comp1-opcua' tag 'energy_kwh'" in ln]
    assert comp1 and 1002 <= int(re.search(r"-> (\d+)", comp1[0]).group(1)) < 1200  # type: ignore[union-attr]
    assert "continue from saved state" in run.log
    assert len(run.saved) >= 4


async def test_the_kill_lost_at_most_a_save_interval_of_rows(run: Run) -> None:
    """Every changed asset is saved at least every interval, whatever windows close in between
    (issue #13: with held rows, one-asset saves at each window close postponed the periodic
    save, and an asset's saved rows were up to a hold old at the kill: comp1's reset fell in
    the lost rows). Slack: a device round, delivery and the kill on a loaded machine."""
    interval = AnalyticsStateStore(Path("unused")).interval
    age = {a: (run.events["killed"] - t) / NS for a, (_, t) in run.saved.items()}
    assert max(age.values()) <= interval + 3.0, age


async def test_energy_per_asset_and_by_state_match_truth(run: Run) -> None:
    off: list[tuple[str, str]] = []  # every figure is reported, then all must agree
    for asset in ("cnc1", "imm1", "imm1m", "comp1", "main"):
        exp = expected(run, asset)
        got = agent_sums(run, asset)
        total = exp.counted["energy"] + exp.unattributed
        report(run, f"{asset} energy kWh", got["energy_kwh"], total)
        if not close(got["energy_kwh"], total):
            off.append((asset, "energy"))
        if asset == "main":
            continue  # a meter has no states: all its energy is "unknown" by definition
        report(run, f"{asset} energy unattributed kWh", got["energy_unknown_kwh"], exp.unattributed)
        # a bucket: 1 % of itself or 0.5 % of the asset's energy (a subscription's held
        # counter is up to one publishing interval old at the restart's edges)
        bucket = 0.005 * total
        if not close(got["energy_unknown_kwh"], exp.unattributed, abs_=bucket):
            off.append((asset, "unattributed"))
        for s in STATES:
            want = exp.counted[f"e_{s}"]
            if want > 0.01:
                report(run, f"{asset} energy {s} kWh", got[f"energy_{s}_kwh"], want)
            if not close(got[f"energy_{s}_kwh"], want, abs_=bucket):
                off.append((asset, s))
    assert not off


async def test_parts_sec_scrap_availability_oee_yield_match_truth(run: Run) -> None:
    # Parts (and material) made while the agent was dead are recovered from the counters, like
    # the energy: totals, SEC, scrap ratio and yield count them. OEE relates parts to time and
    # that span's time is unknown, so the agent leaves those parts out of it (its
    # unattributed_good_quantity), and the truth leaves out both the span's parts and time.
    made = 0.0
    for asset, pru in (("cnc1", 30.0), ("imm1", 3.75), ("imm1m", 3.75)):
        exp = expected(run, asset)
        got = agent_sums(run, asset)
        c, t, d = exp.counted, exp.timed, exp.down
        a_ = {k: c[k] + d[k] for k in c}  # all the counters show, the agent's downtime included
        produced = a_["good"] + a_["scrap"]
        made += produced
        for name, a, b in (
            ("produced", got["produced_quantity"], produced),
            ("good", got["good_quantity"], a_["good"]),
            ("scrap", got["scrap_quantity"], a_["scrap"]),
            ("unattributed good", got["unattributed_good_quantity"], d["good"]),
        ):
            report(run, f"{asset} {name}", a, b)
            assert close(a, b, abs_=0.0), (asset, name, a, b)
        energy = got["energy_kwh"]
        if produced:
            report(run, f"{asset} SEC kWh/part", energy / got["produced_quantity"], a_["energy"] / produced)
            assert close(energy / got["produced_quantity"], a_["energy"] / produced)
        if a_["good"]:
            sec, truth_sec = energy / got["good_quantity"], a_["energy"] / a_["good"]
            report(run, f"{asset} SEC kWh/good part", sec, truth_sec)
            assert close(sec, truth_sec)
            report(
                run,
                f"{asset} yield good/kg",
                got["good_quantity"] / got["consumed_material"],
                a_["good"] / a_["material"],
            )
            assert close(got["good_quantity"] / got["consumed_material"], a_["good"] / a_["material"])
        if produced:
            report(
                run,
                f"{asset} scrap ratio",
                got["scrap_quantity"] / got["produced_quantity"],
                a_["scrap"] / produced,
            )
            assert close(got["scrap_quantity"] / got["produced_quantity"], a_["scrap"] / produced, abs_=0.0)
        pbt = sum(t[f"t_{s}"] for s in ("idle", "setup", "producing", "fault"))
        report(run, f"{asset} availability", got["apt_s"] / got["pbt_s"], t["t_producing"] / pbt)
        assert close(got["apt_s"] / got["pbt_s"], t["t_producing"] / pbt, abs_=0.0)
        timed_good = got["good_quantity"] - got["unattributed_good_quantity"]
        report(run, f"{asset} OEE", pru * timed_good / got["pbt_s"], pru * c["good"] / pbt)
        assert close(pru * timed_good / got["pbt_s"], pru * c["good"] / pbt, abs_=0.0)
    # the plant made parts in the interval; scrap on most seeds (not seed 5 in its 85 s): where
    # it made none, the checks above hold the agent to booking none
    assert made > 0


async def test_compressor_load_share_and_specific_power_match_truth(run: Run) -> None:
    exp = expected(run, "comp1")
    got = agent_sums(run, "comp1")
    t, c = exp.timed, exp.counted
    share = got["time_producing_s"] / (got["time_producing_s"] + got["time_idle_s"])
    truth_share = t["t_producing"] / (t["t_producing"] + t["t_idle"])
    report(run, "comp1 loaded share", share, truth_share)
    report(run, "comp1 loaded s", got["time_producing_s"], t["t_producing"])
    report(run, "comp1 unloaded s", got["time_idle_s"], t["t_idle"])
    sp = (got["energy_kwh"] - got["energy_unknown_kwh"]) * 60.0 / got["air_volume_m3"]
    truth_sp = c["energy"] * 60.0 / exp.analog["air_m3"]
    report(run, "comp1 specific power kW/(m3/min)", sp, truth_sp)
    assert close(sp, truth_sp, abs_=0.0)
    assert close(share, truth_share, abs_=0.0)


async def test_poll_and_subscribe_give_the_same_kpis(run: Run) -> None:
    # the same plant, in the complete windows where neither path had a fault or a restart
    ev = run.events
    faults = [
        (ev["imm1_jump_start"] - 2 * NS, ev["imm1_jump_end"] + 2 * NS),
        (ev["killed"] - 2 * NS, ev["restarted"] + 5 * NS),
    ]
    all_starts = sorted({ts for (a, w, ts) in run.kpi if a == "imm1" and w == "15s"})
    starts = {
        ts
        for ts in all_starts[1:-1]
        if not any(a < ts + 15 * NS and ts < b for a, b in faults) and ts + 15 * NS < ev["stopped"]
    }
    assert len(starts) >= 2
    sub, poll = agent_sums(run, "imm1", only=starts), agent_sums(run, "imm1m", only=starts)
    for k in ("energy_kwh", "time_producing_s", "pbt_s"):
        report(run, f"imm1 subscribed vs polled {k}", sub[k], poll[k])
        assert close(sub[k], poll[k]), (k, sub[k], poll[k])
    # parts exactly: a part the subscription stamped just before an edge of the compared windows
    # and a poll (up to 0.25 s + a poll later) just after it is counted in one path only
    for k, tags in (("produced_quantity", PART_COUNTERS), ("good_quantity", ("good_parts",))):
        moved = moved_at_edges(run, starts, 15 * NS, "imm1", "imm1m", tags)
        report(run, f"imm1 subscribed vs polled {k}", sub[k], poll[k] + moved)
        assert abs(sub[k] - poll[k] - moved) < 1e-6, (k, sub[k], poll[k], moved)
        for s in starts:  # and window by window, where the edges move parts more often
            one = {s}
            got = agent_sums(run, "imm1", only=one)[k] - agent_sums(run, "imm1m", only=one)[k]
            assert abs(got - moved_at_edges(run, one, 15 * NS, "imm1", "imm1m", tags)) < 1e-6, (k, s)


def seen_before(r: Run, asset: str, tag: str, t: int) -> float:
    """The last Good value of the asset's tag stamped before ``t``: the windows before ``t``
    booked its counts up to it."""
    return float([row[tag][0] for ts, row in r.raw[asset] if ts < t and row.get(tag, (0, 2))[1] == 0][-1])


def moved_at_edges(r: Run, starts: set[int], length: int, a: str, b: str, tags: tuple[str, ...]) -> float:
    """Σ over the compared windows of ``a``'s counts minus ``b``'s that the edges of the set
    explain: in a run of adjacent windows [s, e) each asset books counter(e) - counter(s)."""

    def ahead(t: int) -> float:
        return sum(seen_before(r, a, tag, t) - seen_before(r, b, tag, t) for tag in tags)

    ends = sum(ahead(s + length) for s in starts if s + length not in starts)
    return ends - sum(ahead(s) for s in starts if s - length not in starts)


async def test_no_window_exceeds_rated_power_and_reported_twice_is_fuller(run: Run) -> None:
    """The energy a window attributes to a state fits its length at rated power. A counter's
    increment over a gap (the kill's downtime, a PLC restart) is booked at the gap's end as
    unknown (docs/kpi-definitions.md): that window also holds the gap's energy, and the totals
    test checks it. Seed 11 once put 0.1118 kWh in a 15 s window of a 25 kW machine."""
    lengths = {"15s": 15.0, "15min": 900.0, "1h": 3600.0}
    for (asset, window, ts), rows in run.kpi.items():
        for row in rows:
            e = row.get("energy_kwh")
            if window in lengths and e is not None:
                e -= row.get("energy_unknown_kwh") or 0.0
                assert e <= run.rated[asset] * lengths[window] / 3600.0 + COUNT_KWH, (
                    asset,
                    window,
                    e,
                    ts,
                    row,
                    run.events,
                )
        if len(rows) > 1:
            first, last = rows[0], rows[-1]
            assert (last.get("coverage") or 0.0) >= (first.get("coverage") or 0.0) - 1e-9
            assert (last.get("energy_kwh") or 0.0) >= (first.get("energy_kwh") or 0.0) - 1e-9


async def test_constant_subscribed_node_holds_in_every_window(run: Run) -> None:
    rows = sorted((ts, v[-1]) for (a, w, ts), v in run.kpi.items() if a == "main" and w == "15s")
    full = [row for _, row in rows[1:-1] if (row.get("coverage_temperature") or 0) > 0.9]
    assert len(full) >= 3
    for row in full:
        assert row["mean_temperature"] == pytest.approx(run.frozen_temp, abs=1e-6)


async def test_a_reading_takes_the_truth_its_part_counts_show() -> None:
    """The matching itself, on a made-up record (the live runs rarely need it): a shot published
    at 1.0 s, a poll stamped at 1.1 s whose early block still read the count before it."""
    before, after = object(), object()
    r = Run()
    r.truths = [(0, before), (NS, after)]  # type: ignore[list-item]
    r.served = [{"imm1.good_parts": 10}, {"imm1.good_parts": 14}]
    r.raw["imm1m"] = [(NS + NS // 10, {"good_parts": (10, 0)}), (NS + NS // 5, {"good_parts": (14, 0)})]
    r.raw["imm1m"].append((2 * NS, {"good_parts": (10, 0)}))  # too long after the shot: no match
    assert truth_of_reading(r, "imm1m", NS + NS // 10) is before
    assert truth_of_reading(r, "imm1m", NS + NS // 5) is after
    assert truth_of_reading(r, "imm1m", 2 * NS) is after
    assert r.earlier == {("imm1m", NS + NS // 10)}


async def test_print_figures(run: Run) -> None:
    print("\n".join(ln[:200] for ln in run.log.splitlines() if "jumped" in ln))
    print("saved", sorted(run.saved), "raw", sorted(run.raw))
    # how old each asset's saved state was when the agent was killed (its last row booked or held)
    age = {a: round((run.events["killed"] - t) / NS, 2) for a, (_, t) in run.saved.items()}
    print("saved state age at the kill, s:", age)
    print("boundary readings that showed an earlier publish than their stamp's:", sorted(run.earlier))
    uptime = os.getloadavg()
    print("\n" + "\n".join(run.figures) + f"\nload average {uptime[0]:.2f} {uptime[1]:.2f} {uptime[2]:.2f}")
    print(json.dumps({k: v / NS for k, v in run.events.items()}))

"""`edge-agent demo`: simulator + embedded broker + agent + local store, in one process.

The plant is frozen while the agent takes its first reading and again before its last, so
the agent's totals and the simulator's truth cover exactly the same interval and the
summary can hold them to 1 %.
"""

from __future__ import annotations

__all__ = ["observe_plant", "run_demo"]

import asyncio
import contextlib
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.live import Live

import edge_agent_simulators as simulators
from edge_agent.broker import EmbeddedBroker
from edge_agent.config import AgentConfig, build_config_model
from edge_agent.delivery import Delivery
from edge_agent.demo.plant_config import demo_config
from edge_agent.demo.table import Comparison, live_table, summary_table
from edge_agent.errors import EdgeAgentError
from edge_agent.plugins import driver_registry
from edge_agent.runtime.service import Agent


class DemoError(EdgeAgentError):
    """The demo could not complete (e.g. a simulated device never answered)."""


DEMO_TIME_SCALE = 120.0  # one real second is two schedule minutes; physics stays real-time
ENERGY_TOLERANCE = 0.01  # the acceptance bound: agent and truth within 1 %
PRODUCTION_AFTER_S = 50.0  # wall seconds into the demo schedule when production is under way


async def _polled_since(agent: Agent, marks: dict[str, int], *, extra: int, within: float) -> None:
    """Wait until every device has completed ``extra`` more good polls than at ``marks``."""

    def late() -> list[str]:
        return [p.name for p in agent.pollers if p.stats.polls < marks.get(p.name, 0) + extra]

    try:
        async with asyncio.timeout(within):
            while late():  # noqa: ASYNC110 - poll counters are plain ints, sampled
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise DemoError(f"devices {late()} did not answer within {within:.0f} s") from None


def _compare(agent: Agent, start: simulators.PlantTruth, end: simulators.PlantTruth) -> list[Comparison]:
    rows: list[Comparison] = []
    resolution = {
        t.asset: t.scale for d in agent.config.devices for t in d.tag_configs() if t.role == "energy_counter"
    }
    rated = {a.id: a.rated_power_kw for a in agent.config.assets}
    poll = {
        t.asset: d.poll_interval * rated[t.asset] / 3600.0
        for d in agent.config.devices
        for t in d.tag_configs()
        if t.role == "state"
    }
    for asset, tot in agent.analytics.totals().items():
        truth = end[asset].minus(start[asset])
        rows.append(
            Comparison(
                asset,
                "energy kWh",
                tot.energy_kwh,
                truth.energy_kwh,
                rel_tol=ENERGY_TOLERANCE,
                abs_tol=resolution.get(asset, 0.0),
            )
        )
        # idle energy: a compressor's idle is its unload time (its `loaded` tag is its state)
        idle = truth.load_states()[0]["idle"] if asset == "comp1" else truth.idle_kwh
        if asset != "main":
            rows.append(
                Comparison(
                    asset,
                    "idle kWh",
                    tot.energy_by_state_kwh.get("idle", 0.0),
                    idle,
                    rel_tol=ENERGY_TOLERANCE,
                    # a state change seen between two polls: up to one poll at rated power
                    abs_tol=max(poll.get(asset, 0.0), 2 * resolution.get(asset, 0.0)),
                )
            )
        if asset in ("cnc1", "imm1"):
            produced = truth.good_parts + truth.scrap_parts
            rows.append(Comparison(asset, "produced parts", tot.produced_quantity, produced))
            rows.append(Comparison(asset, "good parts", tot.good_quantity, truth.good_parts))
            rows.append(Comparison(asset, "scrap parts", tot.scrap_quantity, truth.scrap_parts))
    return rows


async def observe_plant(
    sim: simulators.Simulator,
    agent: Agent,
    *,
    duration: float,
    finish: asyncio.Event | None = None,
    on_tick: Callable[[float], None] | None = None,
) -> tuple[simulators.PlantTruth, simulators.PlantTruth]:
    """Run ``agent`` against a paused ``sim`` for ``duration`` s; return truth at both ends.

    The plant stays frozen until every device has been read once and is frozen again before
    the last reads, so the agent's totals and the truth span exactly the same interval.
    """
    stop = asyncio.Event()
    finish = finish or asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(agent.run(stop), name="agent")
        await _polled_since(agent, {}, extra=1, within=30)
        truth_start = sim.truth()
        await sim.resume()
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < duration and not finish.is_set():
            if on_tick is not None:
                on_tick(elapsed)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finish.wait(), min(0.25, max(0.0, duration - elapsed)))
        await sim.pause()
        marks = {p.name: p.stats.polls for p in agent.pollers}
        await _polled_since(agent, marks, extra=2, within=30)
        truth_end = sim.truth()
        stop.set()
    return truth_start, truth_end


async def run_demo(*, duration: float, seed: int, data_dir: Path | None, live: bool) -> int:
    """Run the demo; exit code 0 when every figure agrees with the simulator's truth."""
    console = Console()
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="edge-agent-demo-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    finish = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, finish.set)

    console.print(f"[bold]edge-agent demo[/bold]: starting simulator and broker (data in {data_dir})")
    # start in the morning shift, when the machines make parts: the default minute then
    # shows parts and a live kWh per good part (the schedule's first half minute is quiet)
    start = simulators.PlantModel(seed=seed, time_scale=DEMO_TIME_SCALE).schedule_start
    start += PRODUCTION_AFTER_S * DEMO_TIME_SCALE
    async with (
        simulators.Simulator(
            seed=seed, time_scale=DEMO_TIME_SCALE, modbus_port=0, opcua_port=0, schedule_start=start
        ) as sim,
        EmbeddedBroker() as broker,
    ):
        await sim.pause()
        assert sim.modbus_port is not None and sim.opcua_endpoint is not None
        raw = demo_config(
            modbus_port=sim.modbus_port,
            opcua_endpoint=sim.opcua_endpoint,
            mqtt_port=broker.port,
            data_dir=data_dir,
        )
        model = build_config_model([d.config_model for d in driver_registry().values()])
        config: AgentConfig = model.model_validate(raw)
        console.print(
            f"simulator: modbus 127.0.0.1:{sim.modbus_port}, opcua {sim.opcua_endpoint}; "
            f"MQTT broker 127.0.0.1:{broker.port}; {len(config.devices)} devices"
        )
        async with Delivery(config, store=data_dir / "store.db") as delivery:
            agent = Agent(config, sink=delivery)
            with Live(console=console, refresh_per_second=4) if live else contextlib.nullcontext() as lv:

                def show(elapsed: float) -> None:
                    if lv is not None:
                        mqtt = delivery.stats.sinks.get("mqtt")
                        status = f"MQTT delivered {mqtt.delivered if mqtt else 0} samples"
                        lv.update(live_table(agent.analytics.totals(), elapsed=elapsed, status=status))

                truth_start, truth_end = await observe_plant(
                    sim, agent, duration=duration, finish=finish, on_tick=show
                )
            drained = await delivery.flush(within=10)
            stats = delivery.stats

    console.print(live_table(agent.analytics.totals(), elapsed=duration, status="final"))
    rows = _compare(agent, truth_start, truth_end)
    console.print(summary_table(rows))
    for name, s in stats.sinks.items():
        console.print(
            f"sink {name}: delivered {s.delivered} samples, backlog {s.backlog}, dropped {s.dropped}"
        )
    console.print(f"local store: {data_dir / 'store.db'}")
    ok = all(r.ok for r in rows) and drained
    console.print("[green]demo OK[/green]" if ok else "[red]demo FAILED: see the rows above[/red]")
    return 0 if ok else 1

"""`edge-agent run` with its operations around it: status page, status topic, stats line,
systemd notify/watchdog, reload on SIGHUP, and device-loss reports to the sinks that want them.

The agent itself (pollers → analytics → delivery) is unchanged; this wraps it in the pieces a
gateway needs to be left alone for months, each started and stopped in order.
"""

from __future__ import annotations

__all__ = ["run_operated"]

import asyncio
import contextlib
import gc
import logging
import signal
from pathlib import Path

from edge_agent.config import AgentConfig
from edge_agent.delivery.sparkplug import device_watch
from edge_agent.operations.health import assess
from edge_agent.operations.sdnotify import Notifier, watchdog_interval
from edge_agent.operations.snapshot import RuntimeView
from edge_agent.operations.statslog import StatsLogger
from edge_agent.operations.status_topic import StatusPublisher
from edge_agent.operations.web import StatusServer
from edge_agent.runtime.reload import reload_from_file
from edge_agent.runtime.service import Agent

log = logging.getLogger("edge_agent.run")


def _loops_alive(view: RuntimeView) -> str | None:
    dead = view.snapshot().dead_loops
    return f"loop(s) {', '.join(dead)} not running" if dead else None


def _settle_garbage_collector() -> None:
    """Keep Python's cyclic garbage collector from stalling the polls.

    A plant's config, drivers and analytics state are millions of objects that live as long
    as the agent. Left in the collector's oldest generation, each full collection walked all
    of them: at 50,000 tags, 0.15-0.7 s with the event loop stopped, every few seconds, and
    every device skipped polls. They are frozen after start-up (never scanned again), and
    collections are made rarer; the hot path makes little cyclic garbage.
    """
    gc.unfreeze()  # after a reload: what the old config left in cycles is collected once
    gc.collect()
    gc.freeze()
    gc.set_threshold(_GC_THRESHOLDS[0], _GC_THRESHOLDS[1], _GC_THRESHOLDS[2])
    gc.enable()  # `edge-agent run` starts with it off


#: Allocations before a young collection, and young (then middle) collections per older one.
_GC_THRESHOLDS = (50_000, 20, 20)


async def run_operated(config: AgentConfig, config_file: str | Path) -> None:
    """Run until SIGINT/SIGTERM; SIGHUP re-reads ``config_file``."""
    from edge_agent.delivery import Delivery

    stop = asyncio.Event()
    hup = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, hup.set)
    notifier = Notifier()
    try:
        async with Delivery(config) as delivery:
            agent = Agent(config, sink=delivery)
            _settle_garbage_collector()
            view = RuntimeView(agent, delivery, str(config_file))
            async with contextlib.AsyncExitStack() as stack:
                if config.status_page.enabled:
                    try:
                        await stack.enter_async_context(StatusServer(config.status_page, view))
                    except OSError as exc:
                        # The page is for watching; collecting data must not depend on a free port.
                        log.error("%s; the agent runs without its status page and /metrics", exc.strerror)
                # Sinks that report device loss (Sparkplug DDEATH) follow the pollers' health.
                await stack.enter_async_context(device_watch(delivery.sinks, agent.stats.devices, config))
                async with asyncio.TaskGroup() as tg:
                    agent_task = tg.create_task(agent.run(stop), name="agent")
                    await agent.started.wait()
                    helpers = [
                        tg.create_task(StatusPublisher(view, delivery).run(), name="status-topic"),
                        tg.create_task(StatsLogger(view).run(), name="stats-log"),
                        tg.create_task(_reloads(agent, view, config_file, hup), name="reload"),
                    ]
                    interval = watchdog_interval()
                    if interval is not None:
                        helpers.append(
                            tg.create_task(
                                notifier.watchdog(lambda: _loops_alive(view), interval), name="watchdog"
                            )
                        )
                    notifier.send(READY=1, STATUS=f"polling {len(agent.pollers)} device(s)")
                    await stop.wait()
                    notifier.send(STOPPING=1, STATUS="stopping: flushing the buffer")
                    for t in helpers:
                        t.cancel()
                    await agent_task
            if not assess(view.snapshot()).ok:
                log.info("stopping while unhealthy: %s", "; ".join(assess(view.snapshot()).reasons))
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        notifier.close()


async def _reloads(agent: Agent, view: RuntimeView, path: str | Path, hup: asyncio.Event) -> None:
    while True:
        await hup.wait()
        hup.clear()
        log.info("SIGHUP: re-reading %s", path)
        plan = await reload_from_file(agent, path)
        view.reloads += plan is not None
        if plan is not None:  # the new config's objects live as long as the old ones did
            _settle_garbage_collector()
        view.last_reload = "applied: " + plan.summary() if plan is not None else "refused (see log)"

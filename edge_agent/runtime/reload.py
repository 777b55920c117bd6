"""Apply a new config to a running agent (SIGHUP): per device, keeping everything that did not change.

- A file that does not load is refused with its errors; the running config stays.
- Devices are compared by name: removed ones stop, added ones start, changed ones restart;
  unchanged ones keep polling on the same task (no reconnect, no gap).
- Assets keep their analytics state unless their tags, thresholds or analytics settings
  changed; the open windows of a restarted or removed asset are flushed first.
- Delivery (buffer, sink cursors, MQTT and InfluxDB connections) is never rebuilt:
  changes to ``buffer``, ``mqtt``, ``influxdb``, ``status_page``, ``agent.name`` and
  ``agent.max_concurrent_polls`` are reported as needing a restart and the running values
  are kept, so nothing buffered is lost.
"""

from __future__ import annotations

__all__ = ["RESTART_SETTINGS", "ReloadPlan", "apply_config", "plan_reload", "reload_from_file"]

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.config import AgentConfig, load_config
from edge_agent.errors import ConfigError, EdgeAgentError
from edge_agent.runtime.analytics_stage import AnalyticsStage
from edge_agent.runtime.routing import Router
from edge_agent.runtime.service import Agent, cancel_and_wait, engineering_units

log = logging.getLogger("edge_agent.reload")

#: Sections owned by delivery; a change needs a restart (the buffer and cursors stay as they are).
RESTART_SETTINGS = ("buffer", "mqtt", "influxdb", "status_page", "agent.name", "agent.max_concurrent_polls")


def _setting(config: AgentConfig, dotted: str) -> object:
    section, _, key = dotted.partition(".")
    value = getattr(config, section)
    return getattr(value, key) if key else value


def _keep(new: AgentConfig, old: AgentConfig, dotted: str) -> AgentConfig:
    """``new`` with the running value of one setting."""
    section, _, key = dotted.partition(".")
    value = getattr(old, section)
    if key:
        value = getattr(new, section).model_copy(update={key: getattr(value, key)})
    return new.model_copy(update={section: value})


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    needs_restart: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [
            f"{k} {', '.join(v)}"
            for k, v in (("added", self.added), ("removed", self.removed), ("changed", self.changed))
            if v
        ]
        return "; ".join(parts) or "no device changed"


def _active(config: AgentConfig) -> dict[str, str]:
    return {d.name: d.model_dump_json() for d in config.devices if d.enabled}


def plan_reload(old: AgentConfig, new: AgentConfig) -> ReloadPlan:
    before, after = _active(old), _active(new)
    return ReloadPlan(
        added=sorted(after.keys() - before.keys()),
        removed=sorted(before.keys() - after.keys()),
        changed=sorted(n for n in before.keys() & after.keys() if before[n] != after[n]),
        unchanged=sorted(n for n in before.keys() & after.keys() if before[n] == after[n]),
        needs_restart=[s for s in RESTART_SETTINGS if _setting(old, s) != _setting(new, s)],
    )


async def apply_config(agent: Agent, new: AgentConfig) -> ReloadPlan:
    """Switch ``agent`` (running) to ``new``; see the module docstring for what is kept."""
    old = agent.config
    plan = plan_reload(old, new)
    if plan.needs_restart:
        log.warning(
            "reload: %s changed; these take effect after a restart, the running values are kept",
            ", ".join(plan.needs_restart),
        )
        for s in plan.needs_restart:
            new = _keep(new, old, s)
    stop = set(plan.removed) | set(plan.changed)
    # Build everything new first: if a driver refuses its config, nothing has changed yet.
    fresh = [agent.make_poller(d) for d in new.devices if d.enabled and d.name in set(plan.added) | stop]
    analytics = AnalyticsStage(new)
    router = Router(new)
    await cancel_and_wait([t for t in (agent.tasks.pop(name, None) for name in stop) if t is not None])
    # Batches are routed and analysed with the new tables from here on: the swap waits for
    # the round being processed (which yields to the pollers midway), and has no await
    # itself, so the processing task never updates the old stage after its state was adopted.
    async with agent.round_lock:
        _, restarted = analytics.adopt(agent.analytics)
        previous = agent.analytics
        agent.config, agent.router, agent.analytics = new, router, analytics
        agent.units = engineering_units(new)
    agent.pollers = [p for p in agent.pollers if p.name not in stop] + fresh
    for name in stop:
        agent.stats.devices.pop(name, None)
    gone = [a.id for a in old.assets if a.id not in {x.id for x in new.assets}]
    for k in previous.flush_assets(restarted + gone):
        if agent.sink is not None:
            await agent.sink.submit("kpi", k.asset, k.batch, window=k.window)
    for p in fresh:
        agent.start_poller(p)
    if restarted:
        log.warning("reload: analytics of %s restart (their tags or settings changed)", ", ".join(restarted))
    log.info("reload applied: %s; %d device(s) kept polling", plan.summary(), len(plan.unchanged))
    return plan


async def reload_from_file(agent: Agent, path: str | Path) -> ReloadPlan | None:
    """Load ``path`` and apply it; an invalid file is logged with its errors and changes nothing."""
    try:
        new = await asyncio.to_thread(load_config, path)
    except ConfigError as exc:
        log.error("reload refused, the running config stays: %s", exc)
        return None
    try:
        return await apply_config(agent, new)
    except EdgeAgentError as exc:  # a driver refused its config: raised before anything changed
        log.error("reload refused, the running config stays: %s", exc)
        return None

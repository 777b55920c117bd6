"""Log lines for an operator reading the journal: a periodic stats line, and sink link changes.

The stats line carries the same counters as /metrics, so a gateway without Prometheus still
has a trend in its journal. A sink that is not connected a few seconds after start is
logged (an unreachable broker at start-up would otherwise be silent: the client only
reports a refused connection, not one that never happened).
"""

from __future__ import annotations

__all__ = ["StatsLogger", "stats_line"]

import asyncio
import logging
import time

from edge_agent.config import AgentConfig
from edge_agent.operations.health import assess
from edge_agent.operations.snapshot import RuntimeView, Snapshot

log = logging.getLogger("edge_agent.stats")


def stats_line(snap: Snapshot) -> str:
    """``stats: devices 3/4 up, polls 1200 ...`` in one line."""
    up = sum(d.up for d in snap.devices)
    q: dict[str, int] = {}
    for d in snap.devices:
        for k, v in d.quality.items():
            q[k] = q.get(k, 0) + v
    total = sum(q.values()) or 1
    quality = " ".join(f"{k} {100 * v / total:.1f}%" for k, v in q.items() if v) or "none"
    sinks = "; ".join(
        f"{s.name} {'up' if s.connected else 'DOWN'} delivered {s.delivered} backlog {s.backlog} "
        f"retried {s.retried} dropped {s.dropped}"
        for s in snap.sinks
    )
    health = assess(snap)
    return (
        f"stats: {'healthy' if health.ok else 'UNHEALTHY (' + '; '.join(health.reasons) + ')'}; "
        f"devices {up}/{len(snap.devices)} up, polls {sum(d.polls for d in snap.devices)}, "
        f"skipped {sum(d.skipped for d in snap.devices)}, failures {sum(d.failures for d in snap.devices)}; "
        f"samples {quality}; buffer {snap.buffer.rows} rows {snap.buffer.bytes} B; {sinks or 'no sinks'}; "
        f"analytics {snap.analytics_seconds:.2f} s; uptime {snap.uptime_s:.0f} s"
    )


def _where(config: AgentConfig, sink: str) -> str:
    if sink == "mqtt" and config.mqtt is not None:
        return f"broker {config.mqtt.host}:{config.mqtt.port}"
    if sink == "influxdb" and config.influxdb is not None:
        return f"InfluxDB {config.influxdb.url}"
    return sink


class StatsLogger:
    def __init__(self, view: RuntimeView, *, startup_grace: float = 5.0) -> None:
        self.view = view
        self.startup_grace = startup_grace

    async def check_links(self) -> None:
        """After ``startup_grace`` s, log every sink still not connected (once)."""
        await asyncio.sleep(self.startup_grace)
        cfg = self.view.agent.config
        for s in self.view.snapshot().sinks:
            if not s.connected:
                log.error(
                    "sink %s: %s not reachable %.0f s after start%s; data is buffered and sent once it "
                    "connects; check host, port, credentials and that the server runs",
                    s.name,
                    _where(cfg, s.name),
                    self.startup_grace,
                    f" ({s.error})" if s.error else "",
                )

    async def run(self) -> None:
        await self.check_links()
        next_at = time.monotonic()
        while True:
            interval = self.view.agent.config.agent.stats_log_interval
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            log.info("%s", stats_line(self.view.snapshot()))

"""/metrics in Prometheus text format (prometheus-client).

Counters the runtime already keeps are exported by a collector that reads one snapshot per
scrape, so the hot path pays nothing for them. Only poll latency needs per-read work: one
histogram observation per read, fed by the agent's poll-observer hook.
"""

from __future__ import annotations

__all__ = ["METRIC_NAMES", "AgentMetrics"]

import math
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from edge_agent.operations.health import assess
from edge_agent.operations.snapshot import RuntimeView

_P = "edge_agent_"
#: Every family /metrics exposes (counter families without their ``_total`` suffix).
METRIC_NAMES = (
    f"{_P}build_info",
    f"{_P}uptime_seconds",
    f"{_P}healthy",
    f"{_P}device_up",
    f"{_P}polls",
    f"{_P}poll_skipped",
    f"{_P}poll_failures",
    f"{_P}device_reconnects",
    f"{_P}poll_latency_seconds",
    f"{_P}samples",
    f"{_P}analytics_seconds",
    f"{_P}asset_power_kw",
    f"{_P}asset_energy_today_kwh",
    f"{_P}asset_state",
    f"{_P}buffer_bytes",
    f"{_P}buffer_file_bytes",
    f"{_P}buffer_rows",
    f"{_P}buffer_dropped_samples",
    f"{_P}sink_backlog_samples",
    f"{_P}sink_delivered_samples",
    f"{_P}sink_retried",
    f"{_P}sink_dropped_samples",
    f"{_P}sink_quarantined_samples",
    f"{_P}sink_connected",
    f"{_P}broker_connected",
    f"{_P}config_reloads",
)
_Family = type[CounterMetricFamily] | type[GaugeMetricFamily]
_STATES = ("off", "idle", "setup", "producing", "fault", "unknown")


def _labelled(kind: _Family, name: str, doc: str, label: str, rows: list[tuple[str, float]]) -> Metric:
    fam = kind(name, doc, labels=[label])
    for key, value in rows:
        fam.add_metric([key], float(value))
    return fam


class _SnapshotCollector(Collector):
    def __init__(self, view: RuntimeView) -> None:
        self.view = view

    def collect(self) -> Iterator[Metric]:
        snap = self.view.snapshot()
        yield InfoMetricFamily(
            f"{_P}build",
            "agent name, version and config file",
            value={"agent": snap.agent, "version": snap.version, "config_file": snap.config_file},
        )
        yield GaugeMetricFamily(f"{_P}uptime_seconds", "seconds since the agent started", snap.uptime_s)
        yield GaugeMetricFamily(f"{_P}healthy", "1 while /healthz answers 200", float(assess(snap).ok))

        def per_device(kind: _Family, name: str, doc: str, attr: str) -> Metric:
            return _labelled(kind, name, doc, "device", [(d.name, getattr(d, attr)) for d in snap.devices])

        yield per_device(GaugeMetricFamily, f"{_P}device_up", "1 while the device answers", "up")
        yield per_device(CounterMetricFamily, f"{_P}polls", "good reads", "polls")
        yield per_device(CounterMetricFamily, f"{_P}poll_skipped", "poll ticks missed (overrun)", "skipped")
        yield per_device(CounterMetricFamily, f"{_P}poll_failures", "failed reads", "failures")
        yield per_device(CounterMetricFamily, f"{_P}device_reconnects", "reconnect attempts", "reconnects")
        samples = CounterMetricFamily(
            f"{_P}samples", "samples read, by quality", labels=["device", "quality"]
        )
        for d in snap.devices:
            for q, n in d.quality.items():
                samples.add_metric([d.name, q], n)
        yield samples
        yield CounterMetricFamily(
            f"{_P}analytics_seconds", "CPU seconds spent computing KPIs", value=snap.analytics_seconds
        )
        kw = GaugeMetricFamily(f"{_P}asset_power_kw", "latest power", labels=["asset"])
        kwh = GaugeMetricFamily(
            f"{_P}asset_energy_today_kwh", "energy since local midnight", labels=["asset"]
        )
        state = GaugeMetricFamily(
            f"{_P}asset_state", "1 for the asset's current state", labels=["asset", "state"]
        )
        for a in snap.assets:
            if math.isfinite(a.kw):
                kw.add_metric([a.id], a.kw)
            if math.isfinite(a.kwh_today):
                kwh.add_metric([a.id], a.kwh_today)
            for name in _STATES:
                state.add_metric([a.id, name], float(a.state == name))
        yield from (kw, kwh, state)
        b = snap.buffer
        yield GaugeMetricFamily(f"{_P}buffer_bytes", "stored batch bytes (what max_bytes caps)", b.bytes)
        yield GaugeMetricFamily(f"{_P}buffer_file_bytes", "buffer database and WAL on disk", b.file_bytes)
        yield GaugeMetricFamily(f"{_P}buffer_rows", "batches in the buffer", b.rows)
        yield CounterMetricFamily(
            f"{_P}buffer_dropped_samples", "samples dropped by the cap", value=b.dropped
        )

        def per_sink(kind: _Family, name: str, doc: str, attr: str) -> Metric:
            return _labelled(kind, name, doc, "sink", [(s.name, getattr(s, attr)) for s in snap.sinks])

        yield per_sink(GaugeMetricFamily, f"{_P}sink_backlog_samples", "samples not yet confirmed", "backlog")
        yield per_sink(CounterMetricFamily, f"{_P}sink_delivered_samples", "samples confirmed", "delivered")
        yield per_sink(CounterMetricFamily, f"{_P}sink_retried", "failed sends retried", "retried")
        yield per_sink(CounterMetricFamily, f"{_P}sink_dropped_samples", "samples dropped", "dropped")
        yield per_sink(
            CounterMetricFamily, f"{_P}sink_quarantined_samples", "samples refused for good", "quarantined"
        )
        yield per_sink(GaugeMetricFamily, f"{_P}sink_connected", "1 while the sink is connected", "connected")
        broker = GaugeMetricFamily(f"{_P}broker_connected", "1 while connected to the MQTT broker")
        for sink in snap.sinks:
            if sink.name == "mqtt":
                broker.add_metric([], float(sink.connected))
        yield broker
        yield CounterMetricFamily(f"{_P}config_reloads", "configs applied on SIGHUP", value=snap.reloads)


class AgentMetrics:
    """One registry per agent (tests run several agents in one process)."""

    def __init__(self, view: RuntimeView) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series are noise here
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_SnapshotCollector(view))
        self.poll_latency = Histogram(
            f"{_P}poll_latency_seconds",
            "time one read took, good or failed",
            ["device"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        self._children: dict[str, Histogram] = {}
        view.agent.poll_observers.append(self.observe_poll)

    def observe_poll(self, device: str, seconds: float, ok: bool) -> None:
        child = self._children.get(device)
        if child is None:
            child = self._children[device] = self.poll_latency.labels(device)
        child.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

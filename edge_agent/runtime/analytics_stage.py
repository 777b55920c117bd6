"""Bridge between the config/runtime world and the pure analytics core.

Builds one :class:`StreamingAnalytics` per asset from the validated config, feeds it the
per-asset slices of device batches by semantic role, and turns closed KPI windows into
SampleBatches (one row per window, quality from the window's Good-data coverage).
"""

from __future__ import annotations

__all__ = ["AnalyticsStage", "KpiBatch", "asset_spec", "kpi_batch"]

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_agent.analytics import (
    AssetSpec,
    CalendarWindow,
    CounterSpec,
    FixedWindow,
    RollingWindow,
    StateThresholds,
    StreamingAnalytics,
    Totals,
    WindowKpis,
)
from edge_agent.analytics.state_codes import StateCodeMap
from edge_agent.analytics.windows import WindowSpec
from edge_agent.batch import Quality, SampleBatch
from edge_agent.config import AgentConfig, AnalyticsConfig, AssetConfig, TagConfig
from edge_agent.runtime.routing import AssetRoute

log = logging.getLogger("edge_agent.analytics")

#: A KPI window at or above this Good-data coverage is published as GOOD, above 0 UNCERTAIN.
GOOD_COVERAGE = 0.95
#: Parts, scrap and material counters: a generous plausible rate for rollover checks.
#: A tag's own ``max_rate_per_s`` overrides these.
_COUNT_RATE_PER_S = {
    "part_counter": 100.0,
    "good_part_counter": 100.0,
    "scrap_counter": 100.0,
    "material_counter": 50.0,
}


@dataclass(frozen=True, slots=True)
class KpiBatch:
    """KPIs of one asset and one window kind, ready for delivery."""

    asset: AssetConfig
    window: str
    batch: SampleBatch


def _windows(cfg: AnalyticsConfig) -> tuple[WindowSpec, ...]:
    live = round(cfg.kpi_interval)
    fixed = {live: f"{live}s"} | {900: "15min", 3600: "1h"}
    out: list[WindowSpec] = [FixedWindow(name, length) for length, name in sorted(fixed.items())]
    out.append(CalendarWindow("shift", tuple(float(h) for h in cfg.shift_start_hours), cfg.timezone))
    out.append(CalendarWindow("day", (0.0,), cfg.timezone))
    out.append(RollingWindow("rolling_15min", 900, 60))
    return tuple(out)


def asset_spec(
    asset: AssetConfig,
    tags: list[TagConfig],
    cfg: AnalyticsConfig,
    sources: dict[str, str] | None = None,
) -> AssetSpec:
    """The analytics view of one asset: which roles it has and how its counters behave."""
    counters: dict[str, CounterSpec] = {}
    signals: set[str] = set()
    for tag in tags:
        if tag.role == "generic":
            continue
        if tag.is_counter:
            counters[tag.role] = CounterSpec(
                scale=tag.scale,
                bits=tag.counter_bits,
                max_value=tag.counter_max,
                max_rate_per_s=tag.max_rate_per_s or _COUNT_RATE_PER_S.get(tag.role),
                step_counts=tag.step_counts,
                **({"slack_s": tag.counter_lag} if tag.counter_lag is not None else {}),
            )
        else:
            signals.add(tag.role)
    th = asset.states
    return AssetSpec(
        asset=asset.id,
        kind=asset.kind,
        rated_power_kw=asset.rated_power_kw,
        thresholds=StateThresholds(
            off_below_kw=th.off_below_kw,
            idle_below_kw=th.idle_below_kw,
            hysteresis_kw=th.hysteresis_kw,
            min_dwell_s=th.min_dwell_s,
        )
        if asset.kind != "meter"
        else None,
        counters=counters,
        signals=frozenset(signals),
        ideal_cycle_time_s=asset.ideal_cycle_time_s,
        emission_factor=cfg.emission_factor_kg_per_kwh,
        max_gap_s=cfg.max_gap,
        windows=_windows(cfg),
        sources=sources or {},
    )


def kpi_batch(asset: AssetConfig, w: WindowKpis) -> SampleBatch:
    """One window as a one-row batch stamped at the window's start; NaN KPIs are MISSING.

    Stamping at the start matches InfluxDB's GROUP BY time() buckets, and a window reported
    again later (after a flush at shutdown) lands on the same point and overwrites it.
    """
    q = Quality.GOOD if w.coverage >= GOOD_COVERAGE else Quality.UNCERTAIN if w.coverage > 0 else Quality.BAD
    values = {name: np.asarray([v], dtype=np.float64) for name, v in w.kpis.items()}
    values["coverage"] = np.asarray([w.coverage], dtype=np.float64)
    quality = {
        name: np.asarray([Quality.MISSING if np.isnan(v[0]) else q], dtype=np.uint8)
        for name, v in values.items()
    }
    return SampleBatch(
        device=asset.id, ts=np.asarray([w.start_ns], dtype=np.int64), values=values, quality=quality
    )


def _reorder_window(poll_intervals: list[float]) -> float:
    """How long to hold rows so that an asset fed by several devices is merged in time order.

    One device delivers in order, so no delay; with several, their polls interleave and a row
    may arrive up to one poll interval of the slowest device late.
    """
    return 0.0 if len(poll_intervals) <= 1 else 2.0 * max(poll_intervals)


class AnalyticsStage:
    """Per-asset streaming KPIs for the whole agent."""

    def __init__(self, config: AgentConfig) -> None:
        tags_by_asset: dict[str, list[TagConfig]] = {}
        intervals: dict[str, list[float]] = {}
        sources: dict[str, dict[str, str]] = {}
        for dev in config.devices:
            for tag in dev.tag_configs():
                tags_by_asset.setdefault(tag.asset, []).append(tag)
                sources.setdefault(tag.asset, {})[tag.role] = f"device {dev.name!r} tag {tag.name!r}"
            for asset in {t.asset for t in dev.tag_configs() if t.role != "generic"}:
                intervals.setdefault(asset, []).append(dev.poll_interval)
        self._assets = {a.id: a for a in config.assets}
        self._state_codes = {a.id: StateCodeMap(a.id, a.state_codes) for a in config.assets}
        if config.analytics.emission_factor_kg_per_kwh is None:
            log.warning(
                "no analytics.emission_factor_kg_per_kwh in the config: CO2e KPIs are off. "
                "Set your grid's factor (kg CO2e per kWh) to get them."
            )
        self._streams = {
            a.id: StreamingAnalytics(
                asset_spec(a, tags_by_asset.get(a.id, []), config.analytics, sources.get(a.id)),
                reorder_s=_reorder_window(intervals.get(a.id, [])),
            )
            for a in config.assets
        }

    def update(self, route: AssetRoute, part: SampleBatch) -> list[KpiBatch]:
        """Feed one asset slice; return KPI batches of the windows it closed."""
        roles = route.roles()
        signals = {role: part.values[name] for name, role in roles.items() if name in part.values}
        if not signals:
            return []
        quality = {role: part.quality[name] for name, role in roles.items() if name in part.values}
        if "state" in signals:
            codes = self._state_codes[route.asset.id]
            signals["state"], quality["state"] = codes.translate(signals["state"], quality["state"])
        closed = self._streams[route.asset.id].update(part.ts, signals, quality)
        return [KpiBatch(route.asset, w.window, kpi_batch(route.asset, w)) for w in closed]

    def flush(self) -> Iterator[KpiBatch]:
        """Open windows as they stand, at shutdown."""
        for asset_id, stream in self._streams.items():
            asset = self._assets[asset_id]
            for w in stream.flush():
                yield KpiBatch(asset, w.window, kpi_batch(asset, w))

    def state(self, outbox: list[KpiBatch] | None = None) -> dict[str, Any]:
        """What to persist to continue after a restart (see runtime/state_store.py).

        ``outbox``: windows just closed and not yet handed to delivery. They are saved with
        the state that closed them, so a crash before the hand-over replays them instead
        of losing them (a replayed window is identical: delivery overwrites it).
        """
        pending = [(k.asset.id, k.window, k.batch) for k in outbox or []]
        return {"streams": self._streams, "outbox": pending}

    def restore(self, state: dict[str, Any]) -> list[KpiBatch]:
        """Continue from a saved :meth:`state` (same config: the store checked it); returns
        the windows to hand to delivery again."""
        streams = state.get("streams", {})
        for asset_id, stream in streams.items():
            if asset_id in self._streams and isinstance(stream, StreamingAnalytics):
                stream.resumed()
                self._streams[asset_id] = stream
        log.info("analytics continue from saved state for %d asset(s)", len(streams))
        return [KpiBatch(self._assets[a], w, b) for a, w, b in state.get("outbox", []) if a in self._assets]

    def totals(self) -> dict[str, Totals]:
        return {asset_id: s.totals for asset_id, s in self._streams.items()}

"""Bridge between the config/runtime world and the pure analytics core.

Builds one :class:`StreamingAnalytics` per asset from the validated config, feeds it the
per-asset slices of device batches by semantic role, and turns closed KPI windows into
SampleBatches (one row per window, quality from the window's Good-data coverage).

Rows can be held instead of booked poll by poll (``analytics.hold_rows``): each asset's rows
are then kept columnar (:class:`~edge_agent.analytics.pending_rows.PendingRows`) and booked in
one update, because an update's cost is almost all per call. The assets' slots are staggered,
so the plant's analytics runs spread evenly in time. KPI latency grows by at most the hold.
:meth:`totals` books what is held first, so running totals are always current. Held rows are
saved with the state (:meth:`state`) and booked first on :meth:`restore`, before the gap of
the restart.
"""

from __future__ import annotations

__all__ = ["AnalyticsStage", "KpiBatch", "asset_spec", "kpi_batch"]

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
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
from edge_agent.analytics.pending_rows import PendingRows
from edge_agent.analytics.state_codes import StateCodeMap
from edge_agent.analytics.windows import WindowSpec
from edge_agent.batch import Quality, SampleBatch
from edge_agent.config import AgentConfig, AnalyticsConfig, AssetConfig, TagConfig
from edge_agent.delivery.units import RAW_SUFFIX
from edge_agent.runtime.routing import AssetRoute

log = logging.getLogger("edge_agent.analytics")

#: Assets whose first rows are booked at once (not at their slot), per second: see
#: AnalyticsStage._may_book_first.
FIRST_BOOKINGS_PER_S = 200
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
    return _window_schemes(round(cfg.kpi_interval), tuple(cfg.shift_start_hours), cfg.timezone)


@cache
def _window_schemes(live: int, shift_start_hours: tuple[int, ...], timezone: str) -> tuple[WindowSpec, ...]:
    """The schemes every asset uses, built once and shared (they are immutable)."""
    fixed = {live: f"{live}s"} | {900: "15min", 3600: "1h"}
    out: list[WindowSpec] = [FixedWindow(name, length) for length, name in sorted(fixed.items())]
    out.append(CalendarWindow("shift", tuple(float(h) for h in shift_start_hours), timezone))
    out.append(CalendarWindow("day", (0.0,), timezone))
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
    names = [*w.kpis, "coverage"]
    # one array for all KPIs and one for their qualities, each column a one-row view of them:
    # a window carries ~40 KPIs, and two small arrays per KPI were most of this call's cost
    column = np.fromiter((*w.kpis.values(), w.coverage), np.float64, len(names))
    codes = np.where(np.isnan(column), np.uint8(Quality.MISSING), np.uint8(q)).astype(np.uint8)
    values = {name: column[i : i + 1] for i, name in enumerate(names)}
    quality = {name: codes[i : i + 1] for i, name in enumerate(names)}
    return SampleBatch.trusted(asset.id, np.asarray([w.start_ns], dtype=np.int64), values, quality)


def _reorder_window(poll_intervals: list[float]) -> float:
    """How long to hold rows so that an asset fed by several devices is merged in time order.

    One device delivers in order, so no delay; with several, their polls interleave and a row
    may arrive up to one poll interval of the slowest device late.
    """
    return 0.0 if len(poll_intervals) <= 1 else 2.0 * max(poll_intervals)


class _InputDigests:
    """What each asset's stream is built from, as a digest, worked out when first asked (a
    restart, a reload, a save): all 5,000 of a 50,000-tag plant took 0.5 s of start-up.

    Key order does not matter (a config written back by a YAML dumper that sorts keys is the
    same config). The text hashed is ``json.dumps([asset, tags, analytics, reorder_s],
    sort_keys=True)``, as saved states have it, with the analytics part written once.
    """

    def __init__(
        self, sources: dict[str, tuple[AssetConfig, list[TagConfig], float]], analytics: AnalyticsConfig
    ) -> None:
        self._sources = sources
        self._analytics = json.dumps(analytics.model_dump(mode="json"), sort_keys=True)
        self._done: dict[str, bytes] = {}

    def __getitem__(self, asset_id: str) -> bytes:
        digest = self._done.get(asset_id)
        if digest is None:
            asset, tags, reorder_s = self._sources[asset_id]
            parts = (
                json.dumps(asset.model_dump(mode="json"), sort_keys=True),
                json.dumps([t.model_dump(mode="json") for t in tags], sort_keys=True),
                self._analytics,
                json.dumps(reorder_s),
            )
            text = "[" + ", ".join(parts) + "]"
            digest = self._done[asset_id] = hashlib.sha256(text.encode()).digest()
        return digest

    def get(self, asset_id: str) -> bytes | None:
        return self[asset_id] if asset_id in self._sources else None

    def items(self) -> Iterator[tuple[str, bytes]]:
        return ((a, self[a]) for a in self._sources)


def _dtypes(spec: AssetSpec) -> dict[str, np.dtype[np.generic]]:
    """Column dtype of each role: counters exact integers, everything else float64."""
    out: dict[str, np.dtype[np.generic]] = {}
    for role in sorted(spec.roles):
        c = spec.counters.get(role)
        if c is None:
            out[role] = np.dtype(np.float64)
        else:
            out[role] = np.dtype(np.uint64 if c.bits == 64 else np.int64)
    return out


@dataclass(slots=True)
class _RouteColumns:
    """Which columns of a route's batches feed which role (compiled once per route)."""

    route: AssetRoute
    # (column, tag name, role): a counter is read from its exact count (``<tag>_raw``) in a
    # batch already in engineering units, from the tag's own column in a batch as polled
    pairs: tuple[tuple[str, str, str], ...]
    states: tuple[str, ...]  # the tags of role state, which may arrive as text


class AnalyticsStage:
    """Per-asset streaming KPIs for the whole agent.

    ``linger_s`` (default: ``analytics.hold_rows``, at most the live KPI window) is how long an
    asset's rows are held before they are booked in one update; 0 books every batch at once.
    """

    def __init__(self, config: AgentConfig, *, linger_s: float | None = None) -> None:
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
        self._streams: dict[str, StreamingAnalytics] = {}
        self._pending: dict[str, PendingRows] = {}
        hold = min(config.analytics.hold_rows, config.analytics.kpi_interval)
        linger_ns = round((hold if linger_s is None else linger_s) * 1e9)
        n = max(1, len(config.assets))
        for i, a in enumerate(config.assets):
            spec = asset_spec(a, tags_by_asset.get(a.id, []), config.analytics, sources.get(a.id))
            if not spec.roles:
                continue  # nothing to compute: generic tags only
            self._streams[a.id] = StreamingAnalytics(spec, reorder_s=_reorder_window(intervals.get(a.id, [])))
            self._pending[a.id] = PendingRows(a.id, _dtypes(spec), linger_ns, offset_ns=linger_ns * i // n)
        # What each asset's stream was built from, so a reload or a restart keeps only streams
        # whose inputs match (a digest, saved with the state).
        self._inputs = _InputDigests(
            {
                a.id: (a, tags_by_asset.get(a.id, []), _reorder_window(intervals.get(a.id, [])))
                for a in config.assets
                if a.id in self._streams
            },
            config.analytics,
        )
        self._changed: set[str] = set()  # assets whose stream or held rows changed since saved
        self._unsaved: set[str] = set(self._streams)  # assets whose stream changed since saved
        self._totals: dict[str, Totals] = {}  # as of each asset's last booking (see totals())
        self._stale: set[str] = set()  # booked since their totals were computed
        # totals of assets not booked yet, computed once: 15 us each, and at 5,000 assets
        # those of the unbooked ones held the loop 20-100 ms on every status tick
        self._unbooked: dict[str, Totals] = {}
        self._columns: dict[int, _RouteColumns] = {}
        self._held_kpis: dict[str, list[KpiBatch]] = {}  # closed while totals() booked held rows
        self._first_since, self._first_left = 0.0, 0  # see _may_book_first

    def _compiled(self, route: AssetRoute) -> _RouteColumns:
        cached = self._columns.get(id(route))
        if cached is None or cached.route is not route:
            counters = {t.name for t in route.tags if t.is_counter}
            pairs = tuple((n + RAW_SUFFIX if n in counters else n, n, r) for n, r in route.roles().items())
            cached = _RouteColumns(route, pairs, tuple(n for _, n, r in pairs if r == "state"))
            self._columns[id(route)] = cached
        return cached

    def update(self, route: AssetRoute, part: SampleBatch) -> list[KpiBatch]:
        """Feed one asset slice (any number of rows); return KPI batches of the windows closed
        by the rows booked now (none while the asset's rows are being held)."""
        pending = self._pending.get(route.asset.id)
        if pending is None:
            return []
        values, quality = part.values, part.quality
        signals: dict[str, np.ndarray] = {}
        qualities: dict[str, np.ndarray] = {}
        for column, name, role in self._compiled(route).pairs:
            if column not in values:
                column = name
            v = values.get(column)
            if v is not None:
                signals[role] = v
                qualities[role] = quality[column]
        if not signals:
            return []
        self._changed.add(route.asset.id)
        # an asset's first rows are booked at once, so its state shows right after a start
        booked_before = route.asset.id in self._totals or route.asset.id in self._stale
        if not pending.append(part.ts, signals, qualities) and (booked_before or not self._may_book_first()):
            # windows that a totals() call (the status page, every second) closed go out now
            return self._held_kpis.pop(route.asset.id, [])
        return self._book(route.asset.id)

    def _may_book_first(self) -> bool:
        """Whether an asset's first rows may be booked now rather than at its slot: at most
        ``FIRST_BOOKINGS_PER_S`` a second. Booking all 5,000 assets of a plant in its first
        poll round held the first data back by five seconds of CPU."""
        now = time.monotonic()
        if now - self._first_since >= 1.0:
            self._first_since, self._first_left = now, FIRST_BOOKINGS_PER_S
        self._first_left -= 1
        return self._first_left >= 0

    def numeric_states(self, route: AssetRoute, part: SampleBatch) -> SampleBatch:
        """``part`` with every PLC state held as text ("RUN") turned into the state code it
        maps to (0 off … 4 fault), for delivery: payloads carry numbers. A text the asset's
        ``state_codes`` does not map goes out as no value (Bad). Numeric state values are
        delivered as the PLC sent them; a part without text is returned as it is."""
        states = self._compiled(route).states
        if not states:
            return part
        texts = [n for n in states if n in part.values and part.values[n].dtype.kind in "OUS"]
        if not texts:
            return part
        codes = self._state_codes[route.asset.id]
        values, quality = dict(part.values), dict(part.quality)
        for name in texts:
            code, q = codes.translate(part.values[name], part.quality[name])
            values[name] = np.where(code >= 0, code, np.nan)
            quality[name] = np.where(code >= 0, q, np.maximum(q, np.uint8(Quality.BAD))).astype(np.uint8)
        return SampleBatch(device=part.device, ts=part.ts, values=values, quality=quality, status=part.status)

    def _book(self, asset_id: str) -> list[KpiBatch]:
        rows = self._pending[asset_id].take()
        self._changed.add(asset_id)
        stream = self._streams[asset_id]
        closed: list[WindowKpis] = []
        if rows is not None:
            ts, signals, quality = rows
            if "state" in signals:  # the PLC's own values to off/idle/setup/producing/fault, once a slot
                codes, quality["state"] = self._state_codes[asset_id].translate(
                    signals["state"], quality["state"]
                )
                signals["state"] = codes.astype(np.float64)
            closed = stream.update(ts, signals, quality)
            self._unsaved.add(asset_id)
        self._stale.add(asset_id)  # totals computed when asked (totals()), not per booking
        self._unbooked.pop(asset_id, None)
        asset = self._assets[asset_id]  # windows closed earlier by totals() go out first:
        return self._held_kpis.pop(asset_id, []) + [
            KpiBatch(asset, w.window, kpi_batch(asset, w)) for w in closed
        ]

    def drain(self) -> Iterator[KpiBatch]:
        """Book every asset's held rows now (KPIs of the windows that closes).

        An asset whose analytics fails is logged and skipped; the others are still booked.
        """
        for asset_id in self._pending:
            try:
                kpis = self._book(asset_id)
            except Exception:
                log.exception("analytics for asset %r failed while booking held rows", asset_id)
                continue
            yield from kpis

    def flush(self) -> Iterator[KpiBatch]:
        """Held rows booked, then open windows as they stand, at shutdown."""
        yield from self.drain()
        for asset_id, stream in self._streams.items():
            asset = self._assets[asset_id]
            self._unsaved.add(asset_id)
            try:
                closed = stream.flush()
            except Exception:
                log.exception("analytics for asset %r failed while closing its windows", asset_id)
                continue
            for w in closed:
                yield KpiBatch(asset, w.window, kpi_batch(asset, w))

    def adopt(self, old: AnalyticsStage) -> tuple[list[str], list[str]]:
        """Take over ``old``'s stream of every asset built from the same inputs (config reload).

        Returns (kept, restarted): assets whose state carried over, and assets present in both
        whose tags, thresholds or analytics settings changed and therefore start afresh.
        """
        kept, restarted = [], []
        for asset_id, inputs in self._inputs.items():
            if asset_id not in old._streams:
                continue
            if old._inputs.get(asset_id) == inputs:  # the stream, its held rows and held KPIs
                self._streams[asset_id] = old._streams[asset_id]
                self._pending[asset_id] = old._pending[asset_id]
                if asset_id in old._held_kpis:
                    self._held_kpis[asset_id] = old._held_kpis[asset_id]
                if asset_id in old._changed:
                    self._changed.add(asset_id)
                if asset_id in old._totals:
                    self._totals[asset_id] = old._totals[asset_id]
                if asset_id in old._stale:
                    self._stale.add(asset_id)
                kept.append(asset_id)
            else:
                restarted.append(asset_id)
        return kept, restarted

    def flush_assets(self, asset_ids: list[str]) -> Iterator[KpiBatch]:
        """Held rows booked, then open windows as they stand, of some assets (assets removed or
        restarted by a reload)."""
        for asset_id in asset_ids:
            if asset_id not in self._streams:
                continue  # generic tags only: nothing was computed
            yield from self._book(asset_id)
            asset = self._assets[asset_id]
            self._unsaved.add(asset_id)
            for w in self._streams[asset_id].flush():
                yield KpiBatch(asset, w.window, kpi_batch(asset, w))

    def state(
        self,
        outbox: list[KpiBatch] | None = None,
        *,
        assets: Iterable[str] | None = None,
        streams_of: Iterable[str] = (),
    ) -> dict[str, Any]:
        """What to persist to continue after a restart (see runtime/state_store.py): each
        asset's held rows and config digest, its stream if it changed since it was last in a
        state (a stream changes only when rows are booked, once a hold), and the windows
        closed but not yet handed out.

        ``assets``: only these (the ones whose windows just closed, or :meth:`changed`);
        default every asset, each with its stream. ``streams_of``: assets whose stream goes in
        even if unchanged (the store lost it). ``outbox``: windows just closed and not yet
        handed to delivery.
        They are saved with the state that closed them, so a crash before the hand-over
        replays them instead of losing them (a replayed window is identical: delivery
        overwrites it).
        """
        ids = list(self._streams) if assets is None else [a for a in assets if a in self._streams]
        self._changed.difference_update(ids)
        wanted = set(streams_of)
        with_stream = ids if assets is None else [a for a in ids if a in self._unsaved or a in wanted]
        self._unsaved.difference_update(with_stream)
        pending = [(k.asset.id, k.window, k.batch) for k in outbox or []]
        held = [(k.asset.id, k.window, k.batch) for ks in self._held_kpis.values() for k in ks]
        return {
            "streams": {a: self._streams[a] for a in with_stream},
            "rows": {a: self._pending[a] for a in ids},
            "inputs": {a: self._inputs[a] for a in ids},
            "outbox": pending + held,
        }

    def changed(self) -> set[str]:
        """Assets whose stream or held rows changed since they were last in a :meth:`state`."""
        return set(self._changed)

    @property
    def asset_ids(self) -> list[str]:
        """Every asset with analytics."""
        return list(self._streams)

    def restore(self, state: dict[str, Any]) -> list[KpiBatch]:
        """Continue from a saved :meth:`state`; returns the windows to hand to delivery again.

        An asset whose saved digest differs from its config now (its tags, thresholds or the
        analytics settings changed) starts clean; the others continue.
        """
        streams = state.get("streams", {})
        rows = state.get("rows", {})
        inputs = state.get("inputs", {})
        out = [KpiBatch(self._assets[a], w, b) for a, w, b in state.get("outbox", []) if a in self._assets]
        continued, changed = 0, []
        for asset_id, stream in streams.items():
            if asset_id not in self._streams or not isinstance(stream, StreamingAnalytics):
                continue
            if inputs.get(asset_id) != self._inputs[asset_id]:
                changed.append(asset_id)
                continue
            stream.spec = self._streams[asset_id].spec  # not saved: the same config's (digest checked)
            self._streams[asset_id] = stream
            continued += 1
            held = rows.get(asset_id)
            if isinstance(held, PendingRows):  # rows read before the stop: booked as they were
                self._pending[asset_id] = held
                out += self._book(asset_id)
            stream.resumed()  # from here on, the gap until the next reading is unattributed
        if changed:
            log.warning(
                "analytics of %s start clean: their tags or settings changed since the state was saved",
                ", ".join(repr(a) for a in changed[:10]) + (" …" if len(changed) > 10 else ""),
            )
        log.info("analytics continue from saved state for %d asset(s)", continued)
        self._unbooked.clear()  # their streams were replaced
        return out

    def totals(self, *, held: bool = True) -> dict[str, Totals]:
        """Running totals of every asset with analytics, held rows included.

        KPI windows closed by booking the held rows are not lost: they are returned by the
        next :meth:`update` or :meth:`flush` of that asset. ``held=False`` leaves the held
        rows alone (figures lag by up to ``analytics.hold_rows``): what the status page
        and status topic use every second, since booking every asset's rows each second
        would cost the very per-asset updates that holding saves.
        """
        if not held:  # as of each asset's last booking (kept by _book: no work per call)
            for a in self._stale:
                self._totals[a] = self._streams[a].totals
            self._stale.clear()
            out: dict[str, Totals] = {}
            for a, s in self._streams.items():
                t = self._totals.get(a) or self._unbooked.get(a)
                if t is None:  # never booked (no data yet, a device down): the same until it is
                    t = self._unbooked[a] = s.totals
                out[a] = t
            return out
        for asset_id in self._pending:
            try:
                kpis = self._book(asset_id)
            except Exception:
                log.exception("analytics for asset %r failed while booking held rows", asset_id)
                continue
            if kpis:
                self._held_kpis[asset_id] = kpis
        return {asset_id: s.totals for asset_id, s in self._streams.items()}

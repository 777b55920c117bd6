"""One read-only picture of the running agent, for the status page, /metrics, /healthz and logs.

Everything operations shows goes through :class:`RuntimeView`, the only code that knows
where the runtime keeps its counters (pollers' stats, the analytics totals, delivery
stats). When the runtime's internals move, this adapter is the one place to re-point.
Taking a snapshot is cheap (no I/O, a few dict look-ups per device and asset), so it is
done per request instead of maintaining a second copy of every counter.
"""

from __future__ import annotations

__all__ = [
    "AssetStatus",
    "BufferStatus",
    "DeviceHealth",
    "RuntimeView",
    "SinkStatus",
    "Snapshot",
    "plain_error",
]

import datetime as dt
import time
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from edge_agent.analytics.results import Totals
from edge_agent.batch import Quality

if TYPE_CHECKING:
    from edge_agent.delivery import Delivery
    from edge_agent.runtime.service import Agent

QUALITIES = tuple(q.name.lower() for q in Quality)
#: kW points kept per asset for the sparkline (one per snapshot tick).
SPARK_POINTS = 120


def agent_version() -> str:
    try:
        return version("edge-agent")
    except PackageNotFoundError:  # running from a source tree without install
        return "unknown"


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    name: str
    driver: str
    up: bool
    polls: int
    skipped: int
    failures: int
    reconnects: int
    last_good_ns: int | None
    error: str | None  # current error in plain words, None while healthy
    quality: dict[str, int]  # samples by quality since start
    started_ns: int
    poll_interval: float


@dataclass(frozen=True, slots=True)
class AssetStatus:
    id: str
    kind: str
    state: str
    kw: float
    kwh_today: float
    idle_share: float  # share of today's energy drawn while idle (NaN before any energy)
    kwh_per_good_part: float  # today's (NaN without parts)
    scrap_ratio: float  # today's scrap / produced (NaN without parts)
    kw_history: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class SinkStatus:
    name: str
    connected: bool
    backlog: int
    delivered: int
    retried: int
    dropped: int
    quarantined: int
    error: str | None


@dataclass(frozen=True, slots=True)
class BufferStatus:
    rows: int
    bytes: int
    file_bytes: int
    dropped: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    agent: str
    version: str
    config_file: str
    started_ns: int
    uptime_s: float
    taken_ns: int
    loops_alive: bool
    dead_loops: tuple[str, ...]  # e.g. "poll:press1 (task ended)", "poll:press1 (no progress for 95 s)"
    devices: tuple[DeviceHealth, ...]
    assets: tuple[AssetStatus, ...]
    buffer: BufferStatus
    sinks: tuple[SinkStatus, ...]
    analytics_seconds: float
    reloads: int = 0
    last_reload: str | None = None


def plain_error(text: str | None) -> str | None:
    """The driver's error text is already in words (device, what, what to do); keep it short."""
    if not text:
        return None
    first = text.strip().splitlines()[0]
    return first if len(first) <= 300 else first[:297] + "..."


@dataclass(slots=True)
class _DayBase:
    """Totals at the start of the local day, so 'today' figures are differences."""

    day: dt.date
    kwh: float
    idle_kwh: float
    good: float
    scrap: float
    produced: float


@dataclass(slots=True)
class _AssetMemory:
    base: _DayBase | None = None
    kw: deque[float] = field(default_factory=lambda: deque(maxlen=SPARK_POINTS))


_NAN = float("nan")
_TOTALS_FRESH = 0.5  # seconds a computation of every asset's totals serves every reader


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else float("nan")


class RuntimeView:
    """Adapter from the running :class:`Agent` and :class:`Delivery` to :class:`Snapshot`."""

    def __init__(self, agent: Agent, delivery: Delivery | None, config_file: str) -> None:
        self.agent = agent
        self.delivery = delivery
        self.config_file = config_file
        self.started_ns = time.time_ns()
        self._t0 = time.monotonic()
        self._assets: dict[str, _AssetMemory] = {}
        self._progress: dict[str, tuple[tuple[int, int, int, int], float]] = {}
        self.reloads = 0
        self.last_reload: str | None = None
        self._version = agent_version()
        self._totals_at: tuple[float, dict[str, Totals]] | None = None

    def _totals(self) -> dict[str, Totals]:
        """Every asset's running totals, computed at most once per ``_TOTALS_FRESH`` seconds.

        The page's sparkline tick, the status topic and /metrics all ask each second; at
        thousands of assets one computation is already a few per cent of a core. Rows the
        analytics hold (``analytics.hold_rows``) are not booked for it: the page lags by at
        most that long instead of undoing the batching.
        """
        now = time.monotonic()
        if self._totals_at is None or now - self._totals_at[0] >= _TOTALS_FRESH:
            self._totals_at = (now, self.agent.analytics.totals(held=False))
        return self._totals_at[1]

    def sample_kw(self) -> None:
        """Record one sparkline point per asset (called once per status tick, not per request)."""
        for asset_id, totals in self._totals().items():
            self._memory(asset_id).kw.append(float(totals.last_power_kw))

    def _memory(self, asset_id: str) -> _AssetMemory:
        mem = self._assets.get(asset_id)
        if mem is None:
            mem = self._assets[asset_id] = _AssetMemory()
        return mem

    def _today(self) -> dt.date:
        tz = ZoneInfo(self.agent.config.analytics.timezone)
        return dt.datetime.now(tz).date()

    def asset_totals(self) -> dict[str, Totals]:
        """Each asset's running totals, without building its whole status: the status topic
        checks every second which of thousands of assets changed. An asset's object is the
        same until its rows are booked again."""
        return self._totals()

    def asset_statuses(self, ids: Collection[str]) -> tuple[AssetStatus, ...]:
        """The full status of some assets only (those the status topic publishes now)."""
        return self._asset_statuses(set(ids))

    def device_health(self) -> tuple[DeviceHealth, ...]:
        return self._devices()

    def _asset_statuses(self, only: set[str] | None = None) -> tuple[AssetStatus, ...]:
        today = self._today()
        out = []
        kinds = {a.id: a.kind for a in self.agent.config.assets}
        for asset_id, t in self._totals().items():
            if only is not None and asset_id not in only:
                continue
            mem = self._memory(asset_id)
            idle = float(t.energy_by_state_kwh.get("idle", 0.0))
            now = _DayBase(today, t.energy_kwh, idle, t.good_quantity, t.scrap_quantity, t.produced_quantity)
            if mem.base is None:
                mem.base = _DayBase(today, 0.0, 0.0, 0.0, 0.0, 0.0)  # the agent started today
            elif mem.base.day != today:
                mem.base = now
            b = mem.base
            kwh = now.kwh - b.kwh
            good = now.good - b.good
            out.append(
                AssetStatus(
                    id=asset_id,
                    kind=kinds.get(asset_id, "machine"),
                    state=t.state.name.lower(),
                    kw=float(t.last_power_kw),
                    kwh_today=kwh,
                    # a meter has no operating state, so no idle share
                    idle_share=_NAN
                    if kinds.get(asset_id) == "meter"
                    else _ratio(now.idle_kwh - b.idle_kwh, kwh),
                    kwh_per_good_part=_ratio(kwh, good),
                    scrap_ratio=_ratio(now.scrap - b.scrap, now.produced - b.produced),
                    kw_history=tuple(mem.kw),
                )
            )
        return tuple(out)

    def _devices(self) -> tuple[DeviceHealth, ...]:
        out = []
        for p in self.agent.pollers:
            st = p.stats
            cfg = p.driver.config
            out.append(
                DeviceHealth(
                    name=p.name,
                    driver=cfg.driver,
                    up=st.healthy and st.polls > 0,
                    polls=st.polls,
                    skipped=st.skipped_polls,
                    failures=st.failed_polls,
                    reconnects=st.reconnects,
                    last_good_ns=None if st.last_good_poll is None else int(st.last_good_poll * 1e9),
                    error=None if st.healthy else plain_error(st.last_error),
                    quality=dict(st.quality),
                    started_ns=int(st.started * 1e9),
                    poll_interval=float(cfg.poll_interval),
                )
            )
        return tuple(out)

    def _delivery(self) -> tuple[BufferStatus, tuple[SinkStatus, ...], list[str]]:
        if self.delivery is None:
            return BufferStatus(0, 0, 0, 0), (), []
        stats = self.delivery.stats
        b = self.delivery.buffer.stats
        sinks = tuple(
            SinkStatus(
                n, s.connected, s.backlog, s.delivered, s.retried, s.dropped, s.quarantined, s.last_error
            )
            for n, s in stats.sinks.items()
        )
        dead = [f"{t.get_name()} (task ended)" for t in self.delivery._tasks if t.done()]
        return BufferStatus(b.records, b.bytes, b.file_bytes, b.dropped), sinks, dead

    def _stalled_pollers(self) -> list[str]:
        """Poll tasks that ended, or made no read or reconnect attempt for much longer than they should.

        A poller attempts a read every poll interval, or a reconnect at most every
        ``backoff_max`` (+ timeout); three of the longer of these without any attempt means it
        hangs (e.g. a driver awaiting something that never comes), which a done-check misses.
        """
        now = time.monotonic()
        out = []
        for p in self.agent.pollers:
            task = self.agent.tasks.get(p.name)
            if task is not None and task.done():
                out.append(f"poll:{p.name} (task ended)")
                continue
            st, cfg = p.stats, p.driver.config
            mark = (id(p), st.polls, st.failed_polls, st.reconnects)
            seen = self._progress.get(p.name)
            if seen is None or seen[0] != mark:
                self._progress[p.name] = (mark, now)
                continue
            limit = 3 * (max(cfg.poll_interval, cfg.backoff_max) + cfg.timeout)
            if now - seen[1] > limit:
                out.append(f"poll:{p.name} (no read or reconnect attempt for {now - seen[1]:.0f} s)")
        return out

    def snapshot(self) -> Snapshot:
        buffer, sinks, dead = self._delivery()
        dead += self._stalled_pollers()
        return Snapshot(
            agent=self.agent.config.agent.name,
            version=self._version,
            config_file=self.config_file,
            started_ns=self.started_ns,
            uptime_s=time.monotonic() - self._t0,
            taken_ns=time.time_ns(),
            loops_alive=not dead,
            dead_loops=tuple(dead),
            devices=self._devices(),
            assets=self._asset_statuses(),
            buffer=buffer,
            sinks=sinks,
            analytics_seconds=self.agent.analytics_seconds,
            reloads=self.reloads,
            last_reload=self.last_reload,
        )

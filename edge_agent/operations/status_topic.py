"""The retained per-asset status topic ``{site}/{area}/{line}/{asset}/status``.

Published when an asset's state or device health changes, and at least every
``agent.status_interval`` seconds so its kW and kWh stay current for a dashboard that
subscribes late. The agent-level birth (``online``) and last will (``offline``) are the
MQTT sink's own (set on connect); this covers the per-asset half the README documents.
"""

from __future__ import annotations

__all__ = ["StatusPublisher", "asset_status_payload"]

import asyncio
import math
import time
from typing import Any, NamedTuple, Protocol

from edge_agent.config import AgentConfig, AssetConfig
from edge_agent.operations.snapshot import AssetStatus, RuntimeView

#: Statuses one check publishes at most (new and changed first); the rest wait for the next.
MAX_STATUSES_PER_CHECK = 250


class StatusTarget(Protocol):
    def publish_status(self, asset: AssetConfig, state: str, **details: Any) -> None: ...


def _finite(v: float, digits: int) -> float | None:
    return round(v, digits) if math.isfinite(v) else None


def _devices_of(config: AgentConfig) -> dict[str, list[str]]:
    """Asset id -> the devices that read its tags."""
    out: dict[str, list[str]] = {}
    for dev in config.devices:
        for asset in sorted({t.asset for t in dev.tag_configs()}):
            out.setdefault(asset, []).append(dev.name)
    return out


def asset_status_payload(a: AssetStatus, devices: list[str], down: frozenset[str]) -> dict[str, Any]:
    """Details beside ``state``: live figures and which of the asset's devices are down
    (``down``: the snapshot's devices with an error, computed once per snapshot)."""
    return {
        "asset": a.id,
        "kw": _finite(a.kw, 3),
        "kwh_today": _finite(a.kwh_today, 3),
        "idle_share": _finite(a.idle_share, 4),
        "scrap_ratio": _finite(a.scrap_ratio, 4),
        "devices_down": list(_down_of(devices, down)),
    }


def _down_of(devices: list[str], down: frozenset[str]) -> tuple[str, ...]:
    """Which of an asset's devices are down, in name order."""
    return tuple(sorted(n for n in devices if n in down))


class _Published(NamedTuple):
    state: str
    down: tuple[str, ...]
    when: float  # monotonic
    totals: object  # the asset's Totals object it was decided on: the same one means no change


class StatusPublisher:
    """Publishes each asset's retained status through ``target`` (Delivery.publish_status)."""

    def __init__(self, view: RuntimeView, target: StatusTarget, *, check_every: float = 1.0) -> None:
        self.view = view
        self.target = target
        self.check_every = check_every
        self._last: dict[str, _Published] = {}
        self.published = 0
        self._devices: tuple[AgentConfig, dict[str, list[str]]] | None = None
        self._down: frozenset[str] | None = None  # the devices down at the last check

    def publish_changed(self) -> int:
        """Publish what changed (or went stale); returns how many assets were published.

        An asset's totals are a new object only when its rows were booked, so one whose
        totals, device health and config are the same objects as at the last check is
        skipped by identity; only the others have their state and down devices compared.
        The full status (today's kWh, ratios, …) is built for the assets published, not for
        the whole plant: at 5,000 assets the check runs every second.
        """
        view = self.view
        config = view.agent.config
        cached = self._devices
        same_config = cached is not None and cached[0] is config
        if cached is None or not same_config:  # a reload brings a new config
            cached = self._devices = (config, _devices_of(config))
        devices = cached[1]
        now = time.monotonic()
        down = frozenset(d.name for d in view.device_health() if d.error is not None)
        unchanged = same_config and down == self._down
        self._down = down
        interval = config.agent.status_interval
        totals = view.asset_totals()
        due: list[str] = []  # new, or changed state or devices down
        stale: list[str] = []  # unchanged, published again every status_interval
        for asset_id, t in totals.items():
            last = self._last.get(asset_id)
            if last is None:
                due.append(asset_id)
                continue
            fresh = now - last.when < interval
            if fresh and unchanged and last.totals is t:
                continue
            key = (t.state.name.lower(), _down_of(devices.get(asset_id, []), down))
            if (last.state, last.down) != key:
                due.append(asset_id)
            elif not fresh:
                stale.append(asset_id)
            else:
                self._last[asset_id] = last._replace(totals=t)  # decided on this object now
        # the rest at the next check: every asset of a large plant at once held the event
        # loop 100-140 ms (and the pollers' Modbus turns with it) once per status_interval
        due = (due + stale)[:MAX_STATUSES_PER_CHECK]
        n = 0
        for a in view.asset_statuses(due) if due else ():
            try:
                asset = config.asset(a.id)
            except KeyError:  # removed by a reload since the states were read
                continue
            details = asset_status_payload(a, devices.get(a.id, []), down)
            self.target.publish_status(asset, a.state, **{k: v for k, v in details.items() if k != "asset"})
            self._last[a.id] = _Published(a.state, tuple(details["devices_down"]), now, totals.get(a.id))
            n += 1
        self.published += n
        return n

    async def run(self) -> None:
        while True:
            self.publish_changed()
            await asyncio.sleep(self.check_every)

"""Device loss → DDEATH: the small interface between the pollers' health and the Sparkplug sink.

An asset (Sparkplug device) is lost when every enabled device feeding it is down.
``PollerStats`` of the runtime already satisfies :class:`DeviceHealth`.
"""

from __future__ import annotations

__all__ = ["DeviceHealth", "DeviceLossListener", "asset_devices", "device_watch", "watch_devices"]

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Protocol, runtime_checkable

from edge_agent.config import AgentConfig


class DeviceHealth(Protocol):
    """One polled device's health, e.g. ``edge_agent.runtime.poller.PollerStats``."""

    @property
    def healthy(self) -> bool: ...


@runtime_checkable
class DeviceLossListener(Protocol):
    """What the watcher calls, e.g. :class:`SparkplugSink`; arguments are asset ids."""

    def device_lost(self, device: str) -> None: ...

    def device_restored(self, device: str) -> None: ...


def asset_devices(config: AgentConfig) -> dict[str, set[str]]:
    """Asset id → names of the enabled devices that have tags on it."""
    out: dict[str, set[str]] = {}
    for dev in config.devices:
        if dev.enabled:
            for tag in dev.tag_configs():
                out.setdefault(tag.asset, set()).add(dev.name)
    return out


async def watch_devices(
    listener: DeviceLossListener,
    health: Mapping[str, DeviceHealth],
    assets: Mapping[str, set[str]],
    *,
    interval: float = 0.5,
) -> None:
    """Poll ``health`` (device name → health) forever and report asset loss and recovery once each."""
    lost: set[str] = set()
    while True:
        for asset, devices in assets.items():
            known = [health[d] for d in devices if d in health]
            down = bool(known) and not any(h.healthy for h in known)
            if down and asset not in lost:
                lost.add(asset)
                listener.device_lost(asset)
            elif not down and asset in lost:
                lost.discard(asset)
                listener.device_restored(asset)
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def device_watch(
    sinks: Iterable[object], health: Mapping[str, DeviceHealth], config: AgentConfig, *, interval: float = 0.5
) -> AsyncIterator[None]:
    """While inside, report asset loss/recovery to every sink that listens (e.g. Sparkplug's DDEATH).

    ``async with device_watch(delivery.sinks, {p.name: p.stats for p in agent.pollers}, config):``
    """
    listeners = [s for s in sinks if isinstance(s, DeviceLossListener)]
    assets = asset_devices(config)
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(watch_devices(s, health, assets, interval=interval)) for s in listeners]
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()

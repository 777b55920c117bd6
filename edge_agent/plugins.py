"""Driver discovery through the ``edge_agent.drivers`` entry-point group.

Built-in drivers register there too, so there is one code path for ours and integrators'.
"""

from __future__ import annotations

__all__ = ["ENTRY_POINT_GROUP", "driver_registry", "load_drivers"]

from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from edge_agent.drivers.base import Driver
from edge_agent.errors import PluginError

ENTRY_POINT_GROUP = "edge_agent.drivers"


def load_drivers(eps: list[EntryPoint] | None = None) -> dict[str, type[Driver[Any]]]:
    """Load every registered driver; a duplicate name or a broken plugin is an error."""
    found = list(entry_points(group=ENTRY_POINT_GROUP)) if eps is None else eps
    drivers: dict[str, type[Driver[Any]]] = {}
    origins: dict[str, str] = {}
    for ep in found:
        if ep.name in drivers:
            raise PluginError(
                f"two driver plugins are named {ep.name!r}: {origins[ep.name]} and {ep.value}. "
                "Uninstall one of them or rename its entry point."
            )
        try:
            cls = ep.load()
        except Exception as exc:
            raise PluginError(
                f"driver plugin {ep.name!r} ({ep.value}) failed to import: {exc}. "
                "Reinstall the package that provides it."
            ) from exc
        if not (isinstance(cls, type) and issubclass(cls, Driver)):
            raise PluginError(f"driver plugin {ep.name!r} ({ep.value}) is not a Driver subclass")
        drivers[ep.name] = cls
        origins[ep.name] = ep.value
    return drivers


@cache
def driver_registry() -> dict[str, type[Driver[Any]]]:
    """The installed drivers, loaded once per process."""
    return load_drivers()

"""Driver discovery through the ``edge_agent.drivers`` entry-point group.

Built-in drivers register there too, so there is one code path for ours and integrators'.
"""

from __future__ import annotations

__all__ = ["ENTRY_POINT_GROUP", "driver_registry", "load_drivers"]

from collections.abc import Collection
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from edge_agent.drivers.base import Driver
from edge_agent.errors import PluginError

ENTRY_POINT_GROUP = "edge_agent.drivers"


def load_drivers(
    eps: list[EntryPoint] | None = None, *, only: Collection[str] | None = None
) -> dict[str, type[Driver[Any]]]:
    """Load the registered drivers (``only``: just these names, when all are installed); a
    duplicate name or a broken plugin among those loaded is an error.

    A config uses one or two drivers: importing every installed one (asyncua alone takes
    0.4 s) slowed every start, and a broken plugin the config does not use stopped it. A
    name that is not installed loads them all, so the config error lists what there is.
    """
    found = list(entry_points(group=ENTRY_POINT_GROUP)) if eps is None else eps
    origins: dict[str, str] = {}
    for ep in found:
        if ep.name in origins:
            raise PluginError(
                f"two driver plugins are named {ep.name!r}: {origins[ep.name]} and {ep.value}. "
                "Uninstall one of them or rename its entry point."
            )
        origins[ep.name] = ep.value
    if only is not None and set(only) <= origins.keys():
        found = [ep for ep in found if ep.name in only]
    drivers: dict[str, type[Driver[Any]]] = {}
    for ep in found:
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
    return drivers


@cache
def driver_registry(only: frozenset[str] | None = None) -> dict[str, type[Driver[Any]]]:
    """The installed drivers (``only``: those a config names), loaded once per process."""
    return load_drivers(only=only)

"""Efficiency analytics core: raw samples in, the numbers a plant manager acts on out.

Pure, synchronous numpy — no I/O, no asyncio, no pydantic — so it can be tested with plain
arrays and benchmarked alone. Definitions follow DESIGN.md §2 and are documented in
``README.md`` next to this file.

* :class:`StreamingAnalytics` — one asset, batch by batch (the runtime's path).
* :func:`analyse_fleet` — many assets at once as 2-D arrays (the bulk path).
* :mod:`edge_agent.analytics.reference` — a plain-Python oracle of the same definitions.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_WINDOWS",
    "ROLES",
    "AssetSpec",
    "CalendarWindow",
    "CounterSpec",
    "EmissionSeries",
    "FixedWindow",
    "FleetKpis",
    "MachineState",
    "RollingWindow",
    "StateThresholds",
    "StreamingAnalytics",
    "Totals",
    "WindowKpis",
    "WindowSpec",
    "analyse_fleet",
    "kpi_names",
]

from .fleet import FleetKpis, analyse_fleet
from .kpis import kpi_names
from .results import Totals, WindowKpis
from .spec import ROLES, AssetSpec, CounterSpec, EmissionSeries, MachineState, StateThresholds
from .streaming import StreamingAnalytics
from .windows import DEFAULT_WINDOWS, CalendarWindow, FixedWindow, RollingWindow, WindowSpec

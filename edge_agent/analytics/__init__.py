"""Efficiency analytics core: raw samples in, the numbers a plant manager acts on out.

Pure, synchronous numpy — no I/O, no asyncio, no pydantic — so it can be tested with plain
arrays and benchmarked alone. Definitions follow docs/kpi-definitions.md; the API and the
cost model are in ``README.md`` next to this file.

:class:`StreamingAnalytics` is the one path that computes KPI sums: one asset, fed batch by
batch, any number of rows per batch. The plain-Python oracle the tests compare it against
lives in ``tests/analytics_oracle.py``, outside the product.
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
    "MachineState",
    "RollingWindow",
    "StateThresholds",
    "StreamingAnalytics",
    "Totals",
    "WindowKpis",
    "WindowSpec",
    "kpi_names",
]

from .kpis import kpi_names
from .results import Totals, WindowKpis
from .spec import ROLES, AssetSpec, CounterSpec, EmissionSeries, MachineState, StateThresholds
from .streaming import StreamingAnalytics
from .windows import DEFAULT_WINDOWS, CalendarWindow, FixedWindow, RollingWindow, WindowSpec

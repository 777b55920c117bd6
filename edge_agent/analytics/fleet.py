"""placeholder"""

from __future__ import annotations

__all__ = ["FleetKpis", "analyse_fleet"]


class FleetKpis: ...


def analyse_fleet() -> None: ...

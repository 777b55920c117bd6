"""The demo's terminal views: the live per-asset table and the agent-vs-truth summary."""

from __future__ import annotations

__all__ = ["Comparison", "live_table", "summary_table"]

import math
from collections.abc import Mapping
from dataclasses import dataclass

from rich.table import Table

from edge_agent.analytics import Totals


def _num(v: float, fmt: str = ".2f") -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def live_table(totals: Mapping[str, Totals], *, elapsed: float, status: str) -> Table:
    """Per-asset kW, kWh, state, parts and kWh/part as the agent computes them right now."""
    t = Table(title=f"edge-agent demo — {elapsed:5.1f} s — {status}", title_justify="left")
    for col, just in (
        ("asset", "left"),
        ("state", "left"),
        ("kW", "right"),
        ("kWh", "right"),
        ("idle kWh", "right"),
        ("good", "right"),
        ("scrap", "right"),
        ("kWh/good part", "right"),
        ("rollovers", "right"),
    ):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for asset, tot in totals.items():
        t.add_row(
            asset,
            tot.state.name.lower() if tot.state.name != "UNKNOWN" else "–",
            _num(tot.last_power_kw, ".1f"),
            _num(tot.energy_kwh, ".4f"),
            _num(tot.energy_by_state_kwh.get("idle", math.nan), ".4f"),
            _num(tot.good_quantity, ".0f"),
            _num(tot.scrap_quantity, ".0f"),
            _num(tot.kwh_per_good_part, ".4f"),
            str(sum(tot.rollovers.values())),
        )
    return t


@dataclass(frozen=True, slots=True)
class Comparison:
    """One figure of one asset, measured by the agent and known exactly by the simulator.

    ``abs_tol`` is what no reader of the device can beat (one count of the counter); the
    figure agrees when within ``rel_tol`` of the truth or within ``abs_tol``, whichever is wider.
    """

    asset: str
    figure: str
    agent: float
    truth: float
    rel_tol: float = 0.0
    abs_tol: float = 0.0

    @property
    def deviation(self) -> float:
        if self.truth == 0:
            return 0.0 if self.agent == 0 else math.inf
        return (self.agent - self.truth) / abs(self.truth)

    @property
    def ok(self) -> bool:
        return abs(self.agent - self.truth) <= max(self.rel_tol * abs(self.truth), self.abs_tol)


def summary_table(rows: list[Comparison]) -> Table:
    t = Table(title="agent vs simulator ground truth", title_justify="left")
    for col in ("asset", "figure", "agent", "truth", "deviation", "verdict"):
        t.add_column(col, justify="left" if col in ("asset", "figure", "verdict") else "right")
    for r in rows:
        dev = "–" if math.isinf(r.deviation) else f"{100 * r.deviation:+.3f} %"
        t.add_row(
            r.asset,
            r.figure,
            f"{r.agent:.4f}",
            f"{r.truth:.4f}",
            dev,
            "[green]ok[/green]" if r.ok else "[red]MISMATCH[/red]",
        )
    return t

"""Production-normalised indicators and raw before/after totals, shown for contrast only.

Neither is a savings figure: kWh per part falls with volume alone when part of the load is
fixed, and raw totals move with volume, mix and weather. The report says so next to them.
"""

from __future__ import annotations

__all__ = ["Indicator", "RawComparison", "production_indicators", "raw_comparison"]

from dataclasses import dataclass

from edge_agent.evaluation._channels import Role
from edge_agent.evaluation._resample import PeriodData


@dataclass(frozen=True, slots=True)
class Indicator:
    """One indicator in both periods (None where the data are missing)."""

    name: str
    unit: str
    baseline: float | None
    reporting: float | None

    @property
    def change(self) -> float | None:
        if self.baseline is None or self.reporting is None or self.baseline == 0:
            return None
        return self.reporting / self.baseline - 1.0


def _ratio(pd: PeriodData, num: Role, den: tuple[Role, ...], scale: float = 1.0) -> float | None:
    """Σ num / Σ den over buckets usable for energy where every role involved is covered."""
    roles = {num, *den}
    if not all(r in pd.channels for r in roles):
        return None
    ok = pd.kept.copy()
    for r in roles:
        ok &= pd.channels[r].coverage >= pd.threshold
    if not ok.any():
        return None
    n = float(pd.channels[num].values[ok].sum())
    d = float(sum(pd.channels[r].values[ok].sum() for r in den))
    return scale * n / d if d > 0 else None


def production_indicators(base: PeriodData, rep: PeriodData) -> tuple[Indicator, ...]:
    """kWh per good part, kWh per unit, scrap ratio and idle share, where the data allow."""
    specs = [
        ("energy per good part", "kWh/part", Role.ENERGY, (Role.GOOD_PARTS,), 1.0),
        ("energy per unit produced", "kWh/unit", Role.ENERGY, (Role.PRODUCTION,), 1.0),
        ("scrap ratio", "%", Role.SCRAP, (Role.GOOD_PARTS, Role.SCRAP), 100.0),
        ("idle share of energy", "%", Role.IDLE_ENERGY, (Role.ENERGY,), 100.0),
    ]
    out = []
    for name, unit, num, den, scale in specs:
        b, r = _ratio(base, num, den, scale), _ratio(rep, num, den, scale)
        if b is not None or r is not None:
            out.append(Indicator(name, unit, b, r))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class RawComparison:
    """Plain totals per period and the naive "savings" they suggest."""

    baseline_days: int
    reporting_days: int
    baseline_kwh: float
    reporting_kwh: float
    baseline_production: float | None
    reporting_production: float | None

    @property
    def baseline_kwh_per_day(self) -> float:
        return self.baseline_kwh / self.baseline_days

    @property
    def reporting_kwh_per_day(self) -> float:
        return self.reporting_kwh / self.reporting_days

    @property
    def naive_savings_kwh(self) -> float:
        """(before per day − after per day) × reporting days: what a raw comparison would claim."""
        return (self.baseline_kwh_per_day - self.reporting_kwh_per_day) * self.reporting_days

    @property
    def naive_savings_fraction(self) -> float:
        return 1.0 - self.reporting_kwh_per_day / self.baseline_kwh_per_day


def raw_comparison(base: PeriodData, rep: PeriodData) -> RawComparison:
    def prod(pd: PeriodData) -> float | None:
        ch = pd.channels.get(Role.PRODUCTION)
        return None if ch is None else ch.raw_total

    return RawComparison(
        baseline_days=base.period.days,
        reporting_days=rep.period.days,
        baseline_kwh=base.channels[Role.ENERGY].raw_total,
        reporting_kwh=rep.channels[Role.ENERGY].raw_total,
        baseline_production=prod(base),
        reporting_production=prod(rep),
    )

"""Model specifications: which terms a candidate baseline model has."""

from __future__ import annotations

__all__ = ["ModelSpec", "Shape"]

from dataclasses import dataclass
from enum import StrEnum

from edge_agent.evaluation._channels import ACTIVITY_ROLES, LINEAR_ROLES, Role


class Shape(StrEnum):
    """How energy responds to outdoor temperature (ASHRAE inverse-model names)."""

    NONE = "none"
    TWO_P = "2P"  # straight line in temperature
    HEATING_3P = "3P heating"  # flat above a balance point, rising below it
    COOLING_3P = "3P cooling"  # flat below a balance point, rising above it
    FOUR_P = "4P"  # two slopes meeting at one change point
    FIVE_P = "5P"  # heating and cooling slopes with a flat band between two balance points

    @property
    def n_balance_points(self) -> int:
        return {Shape.NONE: 0, Shape.TWO_P: 0, Shape.FIVE_P: 2}.get(self, 1)

    @property
    def change_point(self) -> bool:
        return self.n_balance_points > 0


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A candidate: constant or time-of-week bins, linear terms, and a temperature shape."""

    dense: tuple[Role, ...] = ()  # PRODUCTION, OPERATING_HOURS and/or IDLE_HOURS, linear
    shape: Shape = Shape.NONE
    time_of_week: bool = False  # 168 hour-of-week constants instead of one intercept
    #: Extra constant for buckets where this variable is > 0 (a working day, a producing hour):
    #: the fixed load of being in operation, which a straight line through zero output misses.
    on_off: Role | None = None
    #: A second operating constant for weekend days: a Saturday shift is usually shorter than
    #: a weekday's, and one constant for both tilts the production slope (it soaks up the
    #: difference in fixed load) and overstates savings once production rises.
    weekend_on: bool = False

    def __post_init__(self) -> None:
        bad = [r for r in self.dense if r not in LINEAR_ROLES]
        if bad:
            raise ValueError(f"linear terms must be production, operating hours or idle hours, not {bad}")
        if self.on_off is not None and self.on_off not in ACTIVITY_ROLES:
            raise ValueError(f"the operating constant needs production or operating hours, not {self.on_off}")
        if self.weekend_on and self.on_off is None:
            raise ValueError("a weekend operating constant needs an on/off variable")

    @property
    def roles(self) -> tuple[Role, ...]:
        """Variables the model needs."""
        extra = () if self.on_off is None or self.on_off in self.dense else (self.on_off,)
        return self.dense + extra + ((Role.TEMPERATURE,) if self.shape is not Shape.NONE else ())

    @property
    def name(self) -> str:
        parts = [r.label for r in self.dense]
        if self.on_off is not None:
            parts.append(f"{self.on_off.label} > 0" + (" by day type" if self.weekend_on else ""))
        if self.shape is not Shape.NONE:
            parts.append(f"temperature {self.shape.value}")
        if self.time_of_week:
            parts.append("time of week")
        return " + ".join(parts) if parts else "mean"

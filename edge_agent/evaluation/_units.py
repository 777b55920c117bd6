"""Energy units: everything is modelled in kWh; other units are converted on loading and
the conversion is stated in the report (therm data must never come out labelled kWh)."""

from __future__ import annotations

__all__ = ["ENERGY_UNITS", "THERM_KWH", "energy_factor"]

from edge_agent.evaluation._errors import EvaluationError

THERM_KWH = 29.307107  # 1 therm = 100,000 Btu
#: kWh per unit; m³ of gas depends on its calorific value and needs a factor.
ENERGY_UNITS: dict[str, float | None] = {"kWh": 1.0, "MWh": 1000.0, "therm": THERM_KWH, "m3": None}


def energy_factor(unit: str, kwh_per_m3: float | None) -> tuple[float, str]:
    """(kWh per unit, a sentence for the report)."""
    if unit not in ENERGY_UNITS:
        raise EvaluationError(f"--energy-unit {unit!r}: expected one of {', '.join(ENERGY_UNITS)}")
    factor = ENERGY_UNITS[unit]
    if factor is None:
        if kwh_per_m3 is None or not kwh_per_m3 > 0:
            raise EvaluationError(
                "--energy-unit m3 needs --gas-calorific-value K, the kWh per m³ of the gas (e.g. 10.55 "
                "for natural gas H; take it from the gas bill)"
            )
        return kwh_per_m3, f"Energy data in m³ of gas, converted at {kwh_per_m3:g} kWh/m³."
    if unit == "kWh":
        return 1.0, "Energy data in kWh."
    return factor, f"Energy data in {unit}, converted at {factor:g} kWh/{unit}."

"""Outdoor temperature: seasonal cosine + daily cosine + day-to-day weather, seeded.

Weather offsets are drawn per local day from their own seeded stream and interpolated
between noons, so the temperature is a pure function of time: any block of any length
gives the same values, which keeps live runs and offline history consistent.
"""

from __future__ import annotations

__all__ = ["Weather"]

import numpy as np
import numpy.typing as npt

from .clock import DAY_S, LocalClock
from .config import SiteParams

_SALT_WEATHER = 0x5745_4154  # "WEAT"
_COLDEST_DAY = 19.0  # 20 January, in days since 1970-01-01
_YEAR_D = 365.2425
_COLDEST_HOUR = 3.0

F64 = npt.NDArray[np.float64]


class Weather:
    """Temperature model for one seed and one site."""

    def __init__(self, *, seed: int, site: SiteParams, clock: LocalClock) -> None:
        self._seed = seed
        self._site = site
        self._clock = clock
        self._day_offset: dict[int, float] = {}

    def _offset(self, day: int) -> float:
        v = self._day_offset.get(day)
        if v is None:
            rng = np.random.default_rng([self._seed, _SALT_WEATHER, day])
            v = float(rng.normal(0.0, self._site.temp_weather_sd_c))
            self._day_offset[day] = v
        return v

    def temperature(self, t: F64) -> F64:
        """Outdoor temperature in °C at epoch seconds ``t`` (schedule time)."""
        s = self._site
        local_days = self._clock.local_seconds(t) / DAY_S
        season = -s.temp_season_amp_c * np.cos(2 * np.pi * (local_days - _COLDEST_DAY) / _YEAR_D)
        hour = (local_days - np.floor(local_days)) * 24.0
        daily = -s.temp_day_amp_c * np.cos(2 * np.pi * (hour - _COLDEST_HOUR) / 24.0)
        x = local_days - 0.5  # anchors at local noon
        d0 = np.floor(x).astype(np.int64)
        frac = x - d0
        lo, hi = int(d0.min()), int(d0.max()) + 1
        table = np.array([self._offset(d) for d in range(lo, hi + 1)], dtype=np.float64)
        w = table[d0 - lo] * (1.0 - frac) + table[d0 - lo + 1] * frac
        out: F64 = s.temp_mean_c + season + daily + w
        return out

"""Raw samples leave the agent in engineering units; counters also keep their exact count.

Drivers hand counters over as raw integers so the analytics can total them exactly; a
consumer of the raw stream (a Grafana panel, InfluxDB, an evaluator) wants kWh, parts and
kg. So before delivery each counter column becomes ``value × scale + offset`` and its exact
raw count moves to a separate ``<tag>_raw`` column (same quality, same status), from which
totals can be recomputed without rounding. Analog columns are already scaled by the
drivers. The plan is compiled once per device slice; a slice without counters is passed
through untouched (no cost on the common path).
"""

from __future__ import annotations

__all__ = ["RAW_SUFFIX", "EngineeringUnits"]

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from edge_agent.batch import Quality, SampleBatch, column_picker
from edge_agent.config import TagConfig

RAW_SUFFIX = "_raw"
_BAD = np.uint8(Quality.BAD)  # an IntEnum member costs a lookup per use on Python 3.11


class EngineeringUnits:
    """Converts the counter columns of batches whose tags are known (by name)."""

    def __init__(self, tags: Iterable[TagConfig]) -> None:
        self._counters = {t.name: (t.scale, t.offset) for t in tags if t.is_counter}
        # per set of column names (a device polls the same ones every round): the plan
        self._plans: dict[tuple[str, ...], _Plan | None] = {}

    def _plan(self, columns: tuple[str, ...]) -> _Plan | None:
        """The counters among ``columns`` (None: none), worked out once per set of names."""
        if columns in self._plans:
            return self._plans[columns]
        counters = self._counters
        names = tuple(n for n in columns if n in counters)
        plan = None
        if names:
            pairs = np.array([counters[n] for n in names], dtype=np.float64).reshape(len(names), 2)
            raw_names = tuple(n + RAW_SUFFIX for n in names)
            plan = _Plan(names, raw_names, column_picker(names), pairs[:, :1].copy(), pairs[:, 1:].copy())
        if len(self._plans) >= _PLANS_MAX:
            self._plans.clear()
        self._plans[columns] = plan
        return plan

    def __call__(self, batch: SampleBatch) -> SampleBatch:
        plan = self._plan(tuple(batch.values))
        if plan is None:
            return batch
        n, k = len(batch), len(plan.names)
        raws = plan.pick(batch.values)
        codes = plan.pick(batch.quality)
        # all of the round's counters in one block: one concatenate, not one array per counter
        eng = np.concatenate(raws).astype(np.float64).reshape(k, n)
        eng *= plan.scale
        eng += plan.offset
        np.copyto(eng, np.nan, where=np.concatenate(codes).reshape(k, n) >= _BAD)
        values = dict(batch.values)
        values.update(zip(plan.names, eng, strict=True))
        values.update(zip(plan.raw_names, raws, strict=True))
        quality = dict(batch.quality)
        quality.update(zip(plan.raw_names, codes, strict=True))
        status = dict(batch.status)
        counters = self._counters
        status.update({t + RAW_SUFFIX: s for t, s in batch.status.items() if t in counters})
        return SampleBatch.trusted(batch.device, batch.ts, values, quality, status)  # element-wise of batch


@dataclass(frozen=True, slots=True)
class _Plan:
    """The counters among a batch's columns, their ``_raw`` names, and (scale, offset) columns."""

    names: tuple[str, ...]
    raw_names: tuple[str, ...]
    pick: Callable[[Mapping[str, np.ndarray]], tuple[np.ndarray, ...]]
    scale: np.ndarray
    offset: np.ndarray


_PLANS_MAX = 4096

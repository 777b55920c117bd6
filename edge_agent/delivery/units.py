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

from collections.abc import Iterable

import numpy as np

from edge_agent.batch import Quality, SampleBatch
from edge_agent.config import TagConfig

RAW_SUFFIX = "_raw"
_BAD = np.uint8(Quality.BAD)  # an IntEnum member costs a lookup per use on Python 3.11


class EngineeringUnits:
    """Converts the counter columns of batches whose tags are known (by name)."""

    def __init__(self, tags: Iterable[TagConfig]) -> None:
        self._counters = {t.name: (t.scale, t.offset) for t in tags if t.is_counter}
        # (scale, offset) columns per set of counter names: one slice's names, the same every poll
        self._plans: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, batch: SampleBatch) -> SampleBatch:
        counters = self._counters
        names = tuple(n for n in batch.values if n in counters)
        if not names:
            return batch
        plan = self._plans.get(names)
        if plan is None:
            pairs = np.array([counters[n] for n in names], dtype=np.float64).reshape(len(names), 2)
            plan = self._plans[names] = (pairs[:, :1].copy(), pairs[:, 1:].copy())
        scale, offset = plan
        raws = [batch.values[n] for n in names]
        bad = np.array([batch.quality[n] for n in names]) >= _BAD
        eng = np.array(raws, dtype=np.float64)  # all of the slice's counters in one block
        eng *= scale
        eng += offset
        np.copyto(eng, np.nan, where=bad)
        values = dict(batch.values)
        quality = dict(batch.quality)
        status = dict(batch.status)
        for i, (name, raw) in enumerate(zip(names, raws, strict=True)):
            values[name] = eng[i]
            values[name + RAW_SUFFIX] = raw
            quality[name + RAW_SUFFIX] = batch.quality[name]
            if name in batch.status:
                status[name + RAW_SUFFIX] = batch.status[name]
        return SampleBatch.trusted(batch.device, batch.ts, values, quality, status)  # element-wise of batch

"""What the buffer stores and the sinks send: a batch plus where it belongs in the namespace."""

from __future__ import annotations

__all__ = ["Kind", "Placement", "Record", "Submission", "placement_of", "sample_count"]

from dataclasses import dataclass
from typing import Literal

from edge_agent.batch import SampleBatch
from edge_agent.config import AssetConfig

Kind = Literal["raw", "kpi"]


@dataclass(frozen=True, slots=True)
class Placement:
    """ISA-95 place of a batch, frozen at submit time so a later config edit can't relabel history."""

    site: str
    area: str
    line: str
    asset: str
    window: str | None = None  # KPI batches: the window they aggregate, e.g. '60s'


@dataclass(frozen=True, slots=True)
class Record:
    """One buffered batch as handed to a sink; ``id`` is its position in the buffer."""

    id: int
    kind: Kind
    placement: Placement
    batch: SampleBatch

    @property
    def samples(self) -> int:
        return sample_count(self.batch)


@dataclass(frozen=True, slots=True)
class Submission:
    """What the runtime hands delivery: a batch of an asset, and a KPI batch's window."""

    kind: Kind
    asset: AssetConfig
    batch: SampleBatch
    window: str | None = None


def sample_count(batch: SampleBatch) -> int:
    """Samples are (timestamp, tag) cells: the unit every counter in delivery uses."""
    return len(batch) * len(batch.values)


def placement_of(asset: AssetConfig, window: str | None = None) -> Placement:
    return Placement(site=asset.site, area=asset.area, line=asset.line, asset=asset.id, window=window)

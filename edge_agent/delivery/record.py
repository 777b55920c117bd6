"""What the buffer stores and the sinks send: a batch plus where it belongs in the namespace."""

from __future__ import annotations

__all__ = [
    "Kind",
    "Placement",
    "Record",
    "Segments",
    "Submission",
    "place_from_json",
    "place_json",
    "placement_of",
    "sample_count",
]

from dataclasses import dataclass
from typing import Literal

import orjson

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


#: A device round stored as one record: each asset's place and how many of the batch's
#: columns (in order) are its own.
Segments = tuple[tuple[Placement, int], ...]


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
    """The place of an asset's batches (made once per asset and window: every round asks)."""
    key = (id(asset), window)
    hit = _PLACEMENTS.get(key)
    if hit is not None and hit[0] is asset:
        return hit[1]
    place = Placement(site=asset.site, area=asset.area, line=asset.line, asset=asset.id, window=window)
    if len(_PLACEMENTS) >= _PLACES_MAX:
        _PLACEMENTS.clear()
    _PLACEMENTS[key] = (asset, place)  # the asset is kept with it, so its id is not reused
    return place


_PLACEMENTS: dict[tuple[int, str | None], tuple[AssetConfig, Placement]] = {}


def place_json(place: Placement | Segments) -> str:
    """The ``place`` text of a buffered record: one placement, or a device round's segments."""
    if isinstance(place, Placement):
        return orjson.dumps([place.site, place.area, place.line, place.asset, place.window]).decode()
    return orjson.dumps([[p.site, p.area, p.line, p.asset, p.window, k] for p, k in place]).decode()


#: Places read back, by their text: a plant has a few thousand, each read many times.
_PLACES: dict[str, Placement | Segments] = {}
_PLACES_MAX = 10_000


def place_from_json(text: str) -> Placement | Segments:
    place = _PLACES.get(text)
    if place is None:
        doc = orjson.loads(text)
        if doc and isinstance(doc[0], list):
            place = tuple((Placement(*seg[:5]), int(seg[5])) for seg in doc)
        else:
            place = Placement(*doc)
        if len(_PLACES) >= _PLACES_MAX:
            _PLACES.clear()
        _PLACES[text] = place
    return place

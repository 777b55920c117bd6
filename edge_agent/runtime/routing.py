"""Split device batches into per-asset batches, and name their columns by semantic role.

Devices and assets are many-to-many in the field (one Modbus gateway serves four meters;
one machine's tags may sit on one PLC). Delivery and analytics are per asset, so the runtime
routes each device batch once, using a table compiled from the config at start-up.
"""

from __future__ import annotations

__all__ = ["AssetRoute", "Router"]

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from edge_agent.batch import SampleBatch, column_picker
from edge_agent.config import AgentConfig, AssetConfig, TagConfig
from edge_agent.delivery.units import RAW_SUFFIX


@dataclass(frozen=True, slots=True)
class AssetRoute:
    """The tags of one asset on one device, and the role each plays."""

    asset: AssetConfig
    tags: tuple[TagConfig, ...]
    # the columns of this asset a batch may hold, looked up on every batch: the tags, and
    # each counter's exact count once the batch is in engineering units (delivery/units.py)
    names: tuple[str, ...] = field(init=False)
    # those columns of a mapping in one C call (KeyError if one is absent)
    pick: Callable[[Mapping[str, Any]], tuple[Any, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [t.name for t in self.tags]
        names += [t.name + RAW_SUFFIX for t in self.tags if t.is_counter]
        object.__setattr__(self, "names", tuple(names))
        object.__setattr__(self, "pick", column_picker(names))

    def roles(self) -> dict[str, str]:
        """Tag name → role, for the analytics-relevant (non-generic) tags."""
        return {t.name: t.role for t in self.tags if t.role != "generic"}


class Router:
    """Device name → the per-asset slices of its batches."""

    def __init__(self, config: AgentConfig) -> None:
        self._routes: dict[str, list[AssetRoute]] = {}
        assets = {a.id: a for a in config.assets}
        for dev in config.devices:
            by_asset: dict[str, list[TagConfig]] = {}
            for tag in dev.tag_configs():
                by_asset.setdefault(tag.asset, []).append(tag)
            self._routes[dev.name] = [AssetRoute(assets[a], tuple(ts)) for a, ts in by_asset.items()]

    def routes(self, device: str) -> list[AssetRoute]:
        return self._routes.get(device, [])

    def split(self, batch: SampleBatch) -> Iterator[tuple[AssetRoute, SampleBatch]]:
        """Per-asset views of a device batch, as polled or in engineering units (then with each
        counter's ``_raw`` column); arrays are shared, never copied.

        A batch that holds every column of an asset (a Modbus round in engineering units) is
        cut with one C-level lookup per mapping; one missing some (a batch as polled, an OPC UA
        batch of the changed values) falls back to a name-by-name selection.
        """
        values, quality = batch.values, batch.quality
        for route in self.routes(batch.device):
            try:
                cols = route.pick(values)
            except KeyError:
                some = [n for n in route.names if n in values]
                if some:
                    yield route, batch.select(some)
                continue
            yield route, batch.part(route.names, cols, route.pick(quality))

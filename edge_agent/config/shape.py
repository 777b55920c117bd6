"""Size limits on a parsed config, checked before the model sees it.

pydantic reports every problem it finds, so one hostile file can make it describe millions of
them: 650,000 unknown keys in one mapping took 0.9 GB and 50,000 empty tags (250,000 missing
keys) 320 MB. These checks bound what a file can make the validator do: no mapping has more
than ``MAX_KEYS`` keys and no list more than ``MAX_KEYS`` items, except the three lists that
grow with the plant (``assets``, ``devices`` and each device's ``tags``), which have limits of
their own and are validated in chunks by the loader.
"""

from __future__ import annotations

__all__ = ["MAX_ASSETS", "MAX_DEVICES", "MAX_KEYS", "MAX_TAGS", "ShapeError", "check_shape"]

from typing import Any

MAX_TAGS = 50_000
MAX_DEVICES = 5_000
MAX_ASSETS = 50_000
#: Keys of one mapping, items of one list other than assets, devices and tags.
MAX_KEYS = 1_000

PathKey = tuple[str | int, ...]


class ShapeError(ValueError):
    """A limit is exceeded: ``path`` says where, the message what to do."""

    def __init__(self, path: PathKey, message: str) -> None:
        self.path = path
        super().__init__(message)


def _split_plant(n: int, what: str, limit: int, name: str) -> str:
    return (
        f"{n} {what}; one agent takes at most {limit} ({name}). Split the plant over several "
        "agents (one config each), or check that this is the config file"
    )


def check_shape(data: dict[Any, Any]) -> None:
    """Raise ShapeError for a config larger than one agent runs or wider than a config gets."""
    plant_lists: set[int] = set()
    for key, limit, name in (("assets", MAX_ASSETS, "MAX_ASSETS"), ("devices", MAX_DEVICES, "MAX_DEVICES")):
        items = data.get(key)
        if isinstance(items, list):
            if len(items) > limit:
                raise ShapeError((key,), _split_plant(len(items), key, limit, name))
            plant_lists.add(id(items))
    devices = data.get("devices")
    tags = 0
    if isinstance(devices, list):
        for dev in devices:
            if isinstance(dev, dict) and isinstance(dev.get("tags"), list):
                tags += len(dev["tags"])
                plant_lists.add(id(dev["tags"]))
    if tags > MAX_TAGS:
        raise ShapeError(("devices",), _split_plant(tags, "tags", MAX_TAGS, "MAX_TAGS"))
    if _widest(data, plant_lists) > MAX_KEYS:
        path, n = _find_wide(data, (), plant_lists)
        raise ShapeError(
            path,
            f"{n} entries in one mapping or list; a config never needs more than {MAX_KEYS} "
            "(MAX_KEYS) outside assets, devices and tags. Check that this is the config file",
        )


def _widest(root: Any, exempt: set[int]) -> int:
    """The most entries of any container but the exempt lists; a flat loop, ~0.1 s for 50,000 tags."""
    stack = [root]
    widest = 0
    while stack:
        node = stack.pop()
        if type(node) is dict:
            if len(node) > widest:
                widest = len(node)
            stack.extend(v for v in node.values() if type(v) is dict or type(v) is list)
        elif type(node) is list:
            if len(node) > widest and id(node) not in exempt:
                widest = len(node)
            stack.extend(v for v in node if type(v) is dict or type(v) is list)
    return widest


def _find_wide(node: Any, path: PathKey, exempt: set[int]) -> tuple[PathKey, int]:
    """Where the too-wide container is (run only once a limit is exceeded)."""
    stack: list[tuple[Any, PathKey]] = [(node, path)]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            if len(node) > MAX_KEYS:
                return path, len(node)
            stack.extend((v, (*path, str(k))) for k, v in node.items())
        elif isinstance(node, list):
            if len(node) > MAX_KEYS and id(node) not in exempt:
                return path, len(node)
            stack.extend((v, (*path, i)) for i, v in enumerate(node))
    return (), 0

"""Request planner: the fewest reads that cover every tag, compiled once, split on demand.

Pure functions over plain data, so the plan can be tested (and printed by
``edge-agent validate --plan``) without a device. Each request covers whole tags, which keeps
a tag's quality the quality of exactly the reads that carried it.

Every request owns a slice of a per-device *image* (one word buffer for holding+input
registers, one bit buffer for coils+discrete inputs). Tags are decoded from fixed image
positions, so splitting a request later never moves a tag: the halves write into the same
slice of the image as their parent.
"""

from __future__ import annotations

__all__ = [
    "TABLE_ORDER",
    "Plan",
    "Request",
    "SpanTable",
    "TagSpan",
    "build_plan",
    "split_request",
]

from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import overload

import numpy as np

from edge_agent.drivers.modbus.config import BIT_TABLES, RegisterTable

#: Tables in image order: holding before input share the word image, coils before discrete
#: inputs share the bit image.
TABLE_ORDER: tuple[RegisterTable, ...] = ("holding", "input", "coil", "discrete_input")


@dataclass(frozen=True, slots=True)
class TagSpan:
    """Where one tag lives, in 0-based protocol addresses."""

    tag: int  # index into the device's tag list
    table: RegisterTable
    start: int
    count: int

    @property
    def end(self) -> int:
        return self.start + self.count


_TABLE_CODE = {table: code for code, table in enumerate(TABLE_ORDER)}
_TABLE, _START, _COUNT = attrgetter("table"), attrgetter("start"), attrgetter("count")


class SpanTable(Sequence[TagSpan]):
    """Every tag's span as three small columns, a :class:`TagSpan` built on access.

    A driver keeps its spans for the rare request split and for ``validate --plan``: as
    objects they cost ~120 bytes a tag (6 MB at 50,000 tags), as columns 5 bytes.
    """

    __slots__ = ("_count", "_start", "_table")

    def __init__(self, spans: Sequence[TagSpan]) -> None:
        n = len(spans)  # the columns are filled by C-level maps: 50,000 spans in ~10 ms
        table = np.fromiter(map(_TABLE_CODE.__getitem__, map(_TABLE, spans)), np.uint8, n)
        start = np.fromiter(map(_START, spans), np.int64, n)
        count = np.fromiter(map(_COUNT, spans), np.int64, n)
        if n and (min(start.min(), count.min()) < 0 or max(start.max(), count.max()) > 0xFFFF):
            raise ValueError("a tag span lies outside the 16-bit Modbus address space")
        self._table = table
        self._start = start.astype(np.uint16)
        self._count = count.astype(np.uint16)

    def __len__(self) -> int:
        return len(self._table)

    @overload
    def __getitem__(self, i: int) -> TagSpan: ...
    @overload
    def __getitem__(self, i: slice) -> list[TagSpan]: ...
    def __getitem__(self, i: int | slice) -> TagSpan | list[TagSpan]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        return TagSpan(i, TABLE_ORDER[self._table[i]], int(self._start[i]), int(self._count[i]))


@dataclass(frozen=True, slots=True)
class Request:
    """One read: ``count`` registers (or bits) of ``table`` from ``start``."""

    table: RegisterTable
    start: int
    count: int
    offset: int  # first image position this request fills
    tags: tuple[int, ...]  # tag indices it carries, ordered by address

    @property
    def end(self) -> int:
        return self.start + self.count

    @property
    def is_bits(self) -> bool:
        return self.table in BIT_TABLES


@dataclass(frozen=True, slots=True)
class Plan:
    """The compiled plan: requests, image sizes and each tag's image position."""

    requests: tuple[Request, ...]
    word_count: int
    bit_count: int
    positions: tuple[int, ...]  # per tag: first word (register tags) or bit (bit tags) in the image


def build_plan(
    spans: Sequence[TagSpan],
    *,
    max_registers: int = 125,
    max_bits: int = 2000,
    max_gap: int = 10,
) -> Plan:
    """Merge tags into requests greedily by address, per table.

    A tag joins the open request when the unused registers in between are at most ``max_gap``
    (reading them costs 2 bytes each, far less than a new round trip) and the request stays
    within its limit. For bit tables the gap allowance is ``16 * max_gap`` bits, the same
    payload. For tags that do not overlap, this greedy sweep gives the fewest requests.
    """
    requests: list[Request] = []
    positions = [0] * len(spans)
    image = {False: 0, True: 0}  # next free position in the word / bit image
    for table in TABLE_ORDER:
        is_bits = table in BIT_TABLES
        limit, gap = (max_bits, 16 * max_gap) if is_bits else (max_registers, max_gap)
        ordered = sorted((s for s in spans if s.table == table), key=lambda s: (s.start, -s.count))
        groups: list[list[TagSpan]] = []
        start = end = 0
        for s in ordered:
            if groups and s.start - end <= gap and max(end, s.end) - start <= limit:
                groups[-1].append(s)
                end = max(end, s.end)
            else:
                if s.count > limit:
                    raise ValueError(f"tag #{s.tag} spans {s.count} > {limit} per request")
                groups.append([s])
                start, end = s.start, s.end
        for group in groups:
            req = _request(table, group, offset=image[is_bits])
            image[is_bits] += req.count
            requests.append(req)
            for s in group:
                positions[s.tag] = req.offset + (s.start - req.start)
    return Plan(tuple(requests), image[False], image[True], tuple(positions))


def split_request(request: Request, spans: Sequence[TagSpan]) -> tuple[Request, Request] | None:
    """Bisect a request the device refused; None when it carries a single address span.

    The halves are cut between distinct tag spans and shrunk to their tags, so unused
    registers in a filled gap (often the unreadable ones) drop out of both.
    """
    keys = sorted({(spans[t].start, spans[t].end) for t in request.tags})
    if len(keys) < 2:
        return None
    left_keys = set(keys[: len(keys) // 2])
    left = [spans[t] for t in request.tags if (spans[t].start, spans[t].end) in left_keys]
    right = [spans[t] for t in request.tags if (spans[t].start, spans[t].end) not in left_keys]
    return (
        _request(request.table, left, offset=request.offset, parent=request),
        _request(request.table, right, offset=request.offset, parent=request),
    )


def _request(
    table: RegisterTable, group: Sequence[TagSpan], *, offset: int, parent: Request | None = None
) -> Request:
    start = min(s.start for s in group)
    end = max(s.end for s in group)
    if parent is not None:
        offset = parent.offset + (start - parent.start)
    ordered = sorted(group, key=lambda s: (s.start, s.tag))
    return Request(table, start, end - start, offset, tuple(s.tag for s in ordered))

"""Request planner: request counts for dense and sparse maps, splits, and properties over any map."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.drivers.modbus import (
    ModbusDeviceConfig,
    ModbusDriver,
    Request,
    SpanTable,
    TagSpan,
    build_plan,
    split_request,
)
from edge_agent.drivers.modbus.config import BIT_TABLES
from edge_agent.drivers.modbus.planner import TABLE_ORDER, Plan


def spans(table: str, layout: Sequence[tuple[int, int]]) -> list[TagSpan]:
    return [TagSpan(i, table, start, count) for i, (start, count) in enumerate(layout)]  # type: ignore[arg-type]


def test_dense_registers_fill_requests_to_the_limit() -> None:
    plan = build_plan(spans("holding", [(a, 1) for a in range(250)]))
    assert [(r.start, r.count) for r in plan.requests] == [(0, 125), (125, 125)]


def test_a_multi_register_tag_never_straddles_two_requests() -> None:
    plan = build_plan(spans("holding", [(2 * i, 2) for i in range(100)]))  # 100 float32
    assert [(r.start, r.count) for r in plan.requests] == [(0, 124), (124, 76)]
    assert [len(r.tags) for r in plan.requests] == [62, 38]


def test_device_limit_is_respected() -> None:
    plan = build_plan(spans("input", [(a, 1) for a in range(30)]), max_registers=10)
    assert [(r.start, r.count) for r in plan.requests] == [(0, 10), (10, 10), (20, 10)]


def test_sparse_map_gap_filling_up_to_max_gap() -> None:
    near = build_plan(spans("holding", [(0, 1), (6, 1), (12, 2), (24, 1)]), max_gap=10)
    assert [(r.start, r.count) for r in near.requests] == [(0, 25)]
    far = build_plan(spans("holding", [(0, 1), (100, 1), (200, 1)]), max_gap=10)
    assert len(far.requests) == 3
    exact = build_plan(spans("holding", [(0, 1), (11, 1)]), max_gap=10)  # gap of exactly 10
    assert len(exact.requests) == 1
    over = build_plan(spans("holding", [(0, 1), (12, 1)]), max_gap=10)  # gap of 11
    assert len(over.requests) == 2
    none = build_plan(spans("holding", [(0, 1), (2, 1)]), max_gap=0)
    assert len(none.requests) == 2


def test_bits_use_the_bit_limit_and_a_scaled_gap() -> None:
    plan = build_plan(spans("coil", [(a, 1) for a in range(2500)]))
    assert [(r.start, r.count) for r in plan.requests] == [(0, 2000), (2000, 500)]
    small = build_plan(spans("coil", [(a, 1) for a in range(250)]), max_bits=100)
    assert len(small.requests) == 3
    gapped = build_plan(spans("discrete_input", [(0, 1), (161, 1)]), max_gap=10)  # 160-bit gap
    assert len(gapped.requests) == 1


def test_tables_are_never_mixed_and_images_are_shared() -> None:
    mixed = [
        TagSpan(0, "holding", 5, 2),
        TagSpan(1, "input", 5, 2),
        TagSpan(2, "coil", 5, 1),
        TagSpan(3, "discrete_input", 5, 1),
    ]
    plan = build_plan(mixed)
    assert [r.table for r in plan.requests] == list(TABLE_ORDER)
    assert (plan.word_count, plan.bit_count) == (4, 2)
    assert plan.positions == (0, 2, 0, 1)


def test_thousand_tags_take_a_handful_of_requests_not_a_thousand() -> None:
    layout = [(a, 1) for a in range(500)] + [(500 + 2 * i, 2) for i in range(500)]  # uint16 + float32
    plan = build_plan(spans("holding", layout))
    # 500 uint16 fill 4 requests of 125; a float32 never straddles, so 1000 float registers
    # take requests of 124: 8 full + 1 with the last 8 registers
    assert len(plan.requests) == 4 + 9
    assert sum(len(r.tags) for r in plan.requests) == 1000


def test_split_cuts_between_tags_and_keeps_image_positions() -> None:
    s = spans("holding", [(0, 2), (2, 1), (10, 2), (20, 1)])
    plan = build_plan(s, max_gap=10)
    (req,) = plan.requests
    halves = split_request(req, s)
    assert halves is not None
    left, right = halves
    assert (left.start, left.count, left.tags) == (0, 3, (0, 1))
    assert (right.start, right.count, right.tags) == (10, 11, (2, 3))
    for half in halves:  # a split never moves a tag in the image
        for t in half.tags:
            assert half.offset + (s[t].start - half.start) == plan.positions[t]
    assert split_request(Request("holding", 0, 2, 0, (0,)), s) is None


def test_tags_on_the_same_span_cannot_be_split_apart() -> None:
    s = [TagSpan(0, "holding", 7, 1), TagSpan(1, "holding", 7, 1)]  # e.g. two bits of one register
    (req,) = build_plan(s).requests
    assert split_request(req, s) is None


def test_driver_plan_from_config_and_its_description() -> None:
    cfg = ModbusDeviceConfig.model_validate(
        {
            "name": "meter",
            "driver": "modbus",
            "host": "127.0.0.1",
            "address_base": 1,
            "max_gap": 4,
            "tags": [
                {"name": "p", "asset": "m", "address": 1, "data_type": "float32"},
                {"name": "q", "asset": "m", "address": 7, "data_type": "float32"},
                {"name": "e", "asset": "m", "address": 100, "data_type": "uint32"},
                {"name": "run", "asset": "m", "register": "coil", "address": 1},
            ],
        }
    )
    driver = ModbusDriver(cfg)
    assert [(r.table, r.start, r.count) for r in driver.requests] == [
        ("holding", 0, 8),
        ("holding", 99, 2),
        ("coil", 0, 1),
    ]
    text = driver.describe_plan()
    assert "4 tag(s) in 3 request(s) per poll" in text
    lines = [" ".join(line.split()) for line in text.splitlines()]
    assert lines[0] == "meter: modbus tcp 127.0.0.1:502 unit 1, 4 tag(s) in 3 request(s) per poll"
    assert "address_base 1" in lines[1]
    # manual numbering (base 1); registers 3..6 are read to save a request
    assert lines[2:] == [
        "holding 1..8 8 registers, 4 gap: p:float32, q:float32",
        "holding 100..101 2 registers: e:uint32",
        "coil 1..1 1 bit: run:bool",
    ]


# -- properties over arbitrary maps ------------------------------------------------------------


@st.composite
def tag_maps(draw: st.DrawFn) -> tuple[list[TagSpan], int, int, int]:
    max_registers = draw(st.integers(4, 125))
    max_bits = draw(st.integers(1, 2000))
    max_gap = draw(st.integers(0, 30))
    n = draw(st.integers(0, 60))
    out = []
    for i in range(n):
        table = draw(st.sampled_from(TABLE_ORDER))
        count = 1 if table in BIT_TABLES else draw(st.sampled_from([1, 1, 2, 2, 4, min(8, max_registers)]))
        start = draw(st.integers(0, 65536 - count))
        out.append(TagSpan(i, table, start, count))
    return out, max_registers, max_bits, max_gap


def _assert_covers(plan: Plan, tags: list[TagSpan], max_registers: int, max_bits: int) -> None:
    seen = [0] * len(tags)
    for r in plan.requests:
        assert 1 <= r.count <= (max_bits if r.table in BIT_TABLES else max_registers)
        assert r.end <= 65536
        for t in r.tags:
            seen[t] += 1
            s = tags[t]
            assert s.table == r.table and r.start <= s.start and s.end <= r.end
            assert plan.positions[t] == r.offset + (s.start - r.start)
    assert seen == [1] * len(tags)  # every tag exactly once


@settings(max_examples=300, deadline=None)
@given(tag_maps())
def test_plan_covers_every_tag_exactly_once_within_limits(case: tuple[list[TagSpan], int, int, int]) -> None:
    tags, max_registers, max_bits, max_gap = case
    plan = build_plan(tags, max_registers=max_registers, max_bits=max_bits, max_gap=max_gap)
    _assert_covers(plan, tags, max_registers, max_bits)
    for is_bits, size in ((False, plan.word_count), (True, plan.bit_count)):  # image slices tile exactly
        slices = sorted((r.offset, r.count) for r in plan.requests if (r.table in BIT_TABLES) == is_bits)
        assert sum(c for _, c in slices) == size
        assert all(a + c == b for (a, c), (b, _) in itertools.pairwise(slices))


@settings(max_examples=200, deadline=None)
@given(tag_maps())
def test_recursive_splits_still_cover_every_tag_once(case: tuple[list[TagSpan], int, int, int]) -> None:
    tags, max_registers, max_bits, max_gap = case
    plan = build_plan(tags, max_registers=max_registers, max_bits=max_bits, max_gap=max_gap)
    table = SpanTable(tags)  # the columns a driver keeps give back the very same spans
    assert len(table) == len(tags) and list(table) == tags and table[-1:] == tags[-1:]
    leaves: list[Request] = []
    todo = list(plan.requests)
    while todo:
        r = todo.pop()
        halves = split_request(r, table)
        if halves is None:
            assert len({(tags[t].start, tags[t].end) for t in r.tags}) == 1
            leaves.append(r)
            continue
        for h in halves:
            assert r.start <= h.start and h.end <= r.end
            assert 0 < len(h.tags) < len(r.tags)
        todo.extend(halves)
    _assert_covers(Plan(tuple(leaves), plan.word_count, plan.bit_count, plan.positions), tags, 125, 2000)


def _fewest_requests(starts: list[int], count: int, limit: int, gap: int) -> int:
    """Exhaustive optimum over contiguous groupings (optimal for non-overlapping tags)."""
    n = len(starts)
    best = [0] + [n + 1] * n
    for i in range(1, n + 1):
        for j in range(i):
            group = starts[j:i]
            fits = group[-1] + count - group[0] <= limit
            close = all(b - (a + count) <= gap for a, b in itertools.pairwise(group))
            if fits and close:
                best[i] = min(best[i], best[j] + 1)
    return best[n]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 400), min_size=1, max_size=25, unique=True),
    st.sampled_from([1, 2, 4]),
    st.integers(4, 40),
    st.integers(0, 12),
)
def test_greedy_plan_is_minimal_for_non_overlapping_tags(
    slots: list[int], count: int, limit: int, gap: int
) -> None:
    starts = sorted(s * count for s in slots)
    plan = build_plan(spans("holding", [(s, count) for s in starts]), max_registers=limit, max_gap=gap)
    assert len(plan.requests) == _fewest_requests(starts, count, limit, gap)


def test_no_tags_no_requests() -> None:
    plan = build_plan([])
    assert plan.requests == () and plan.word_count == 0 and plan.bit_count == 0

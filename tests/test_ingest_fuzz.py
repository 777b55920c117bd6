"""Fuzz ingest's decoder and the line-protocol writer: no exception but PayloadError/ValueError
escapes, and whatever is written reads back exactly as the input (no forged line, tag or field)."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lineprotocol_reader import Line, read_lines

from edge_agent.batch import Quality, SampleBatch
from edge_agent.delivery.ingest_validation import Checked, TimeWindow, decode_message
from edge_agent.delivery.lineprotocol import batch_lines
from edge_agent.delivery.payload import PayloadError

NOW = time.time_ns()
WINDOW = TimeWindow(max_age_s=86400.0, max_ahead_s=3600.0)
HOSTILE = st.sampled_from(
    [
        "a",
        "press 1",
        "x,y",
        "k=v",
        "60s\nkpi,site=evil p=1",
        "a\\",
        "\\,",
        "#c",
        "time",
        "",
        " ",
        "é",
        "\r",
        "\t",
    ]
)
VALID = st.from_regex(r"[A-Za-z0-9_.-]{1,8}", fullmatch=True)
NAMES = st.one_of(HOSTILE, st.text(max_size=12), VALID)
PLAUSIBLE = st.integers(NOW - 86400 * 10**9 * 2, NOW + 7200 * 10**9)
TS = st.one_of(
    PLAUSIBLE,
    st.integers(-(2**70), 2**70),
    st.sampled_from([2**63, -(2**63) - 1, 4102444800 * 10**9, -1, 0]),
)
VALUE = st.one_of(
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**65), 2**65),
)


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """Valid documents with at most one poisoned part, so both outcomes are explored."""
    n = draw(st.integers(0, 4))
    kind = draw(st.sampled_from(["raw", "kpi"]))
    poison = draw(st.sampled_from([None, None, None, "site", "asset", "extra", "tag", "ts", "value"]))
    doc: dict[str, Any] = {"v": 1, "kind": kind}
    for key in ("site", "area", "line", "asset"):
        doc[key] = draw(NAMES if poison == key else VALID)
    doc["device" if kind == "raw" else "window"] = draw(NAMES if poison == "extra" else VALID)
    tags = draw(st.lists(NAMES if poison == "tag" else VALID, min_size=1, max_size=3, unique=True))
    doc["ts"] = draw(st.lists(TS if poison == "ts" else PLAUSIBLE, min_size=n, max_size=n))
    value = VALUE if poison == "value" else st.floats(allow_nan=False, allow_infinity=False)
    doc["values"] = {t: draw(st.lists(value, min_size=n, max_size=n)) for t in tags}
    if draw(st.booleans()):
        t = tags[0]
        doc["quality"] = {t: draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))}
    return doc


def _expect_same(checked: Checked, lines: list[Line]) -> None:
    """Every written line is one input row: its place, tags, fields and timestamp, nothing else."""
    rec = checked.record
    p, b = rec.placement, rec.batch
    tags = {"site": p.site, "area": p.area, "line": p.line, "asset": p.asset}
    tags |= {"device": b.device} if rec.kind == "raw" else {"window": p.window or ""}
    expected = []
    for i in range(len(b)):
        fields = {}
        for tag, arr in b.values.items():
            v = arr[i].item()
            if b.quality[tag][i] <= Quality.UNCERTAIN and not (isinstance(v, float) and not math.isfinite(v)):
                fields[tag] = v
        if fields:
            expected.append(Line(rec.kind, {k: v for k, v in tags.items() if v}, fields, int(b.ts[i])))
    assert lines == expected
    assert checked.fields == sum(len(x.fields) for x in expected)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_decoder_refuses_or_writes_exactly_its_input(doc: dict[str, Any]) -> None:
    data = json.dumps(doc).encode()
    try:
        checked = decode_message(data, max_bytes=2**20, window=WINDOW, now_ns=NOW)
    except PayloadError as exc:
        assert str(exc)  # a reason is always given
        return
    _expect_same(checked, read_lines(checked.lines))
    assert all(checked.record.batch.ts >= NOW - 86400 * 10**9)
    assert all(checked.record.batch.ts <= NOW + 3600 * 10**9)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_decoder_never_raises_anything_but_payload_error_on_bytes(data: bytes) -> None:
    try:
        checked = decode_message(data, max_bytes=2**20, window=WINDOW, now_ns=NOW)
    except PayloadError:
        return
    _expect_same(checked, read_lines(checked.lines))


@settings(max_examples=400, deadline=None)
@given(
    measurement=NAMES,
    tags=st.dictionaries(NAMES, NAMES, max_size=3),
    fields=st.lists(NAMES, min_size=1, max_size=3, unique=True),
    n=st.integers(1, 12),  # both the row loop (<= 8 rows) and the column matrix
    data=st.data(),
)
def test_line_writer_refuses_or_round_trips(
    measurement: str, tags: dict[str, str], fields: list[str], n: int, data: st.DataObject
) -> None:
    ts = np.asarray(data.draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n)), np.int64)
    values: dict[str, np.ndarray] = {}
    for f in fields:
        kind = data.draw(st.sampled_from(["f", "i", "b"]))
        if kind == "f":
            values[f] = np.asarray(data.draw(st.lists(st.floats(), min_size=n, max_size=n)), np.float64)
        elif kind == "i":
            values[f] = np.asarray(
                data.draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n))
            )
        else:
            values[f] = np.asarray(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    quality = {
        f: np.asarray(data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)), np.uint8)
        for f in fields
    }
    batch = SampleBatch(device="d", ts=ts, values=values, quality=quality)
    try:
        body, written = batch_lines(measurement, tags, batch)
    except ValueError as exc:
        assert str(exc)
        return
    lines = read_lines(body)
    expected = []
    for i in range(n):
        row = {
            f: values[f][i].item()
            for f in fields
            if quality[f][i] <= Quality.UNCERTAIN
            and not (values[f].dtype.kind == "f" and not np.isfinite(values[f][i]))
        }
        if row:
            expected.append(Line(measurement, {k: v for k, v in tags.items() if v}, row, int(ts[i])))
    assert lines == expected
    assert written == sum(len(x.fields) for x in expected)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"window": "60s\nkpi,site=evil p=1"}, "window"),
        ({"ts": [2**64]}, "int64"),
        ({"ts": [-1]}, "older than the plausible range"),
        ({"ts": [4102444800 * 10**9]}, "ahead of now"),
        ({"values": {"p": [2**63]}}, "int64"),
        ({"values": {"time": [1.0]}}, "reserved"),
    ],
)
def test_each_poison_field_is_refused_with_its_reason(change: dict[str, Any], reason: str) -> None:
    doc = {"v": 1, "kind": "kpi", "site": "s", "area": "a", "line": "l", "asset": "m", "window": "60s"}
    doc |= {"ts": [NOW], "values": {"p": [1.5]}} | change
    with pytest.raises(PayloadError, match=reason):
        decode_message(json.dumps(doc).encode(), max_bytes=2**20, window=WINDOW, now_ns=NOW)

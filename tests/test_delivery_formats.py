"""Buffer blob codec, line protocol, UNS payload and topic templates (no servers)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from influxdb_client.client.write.point import Point
from influxdb_client.domain.write_precision import WritePrecision

from edge_agent.batch import Quality, SampleBatch
from edge_agent.config import MqttConfig
from edge_agent.delivery import PayloadError, Placement, batch_lines, decode_payload, encode_payload
from edge_agent.delivery.codec import decode_batch, encode_batch
from edge_agent.delivery.payload import schema_documents
from edge_agent.delivery.topics import data_topic, subscription_filters

PLACE = Placement("s1", "a1", "l1", "press1")
SCHEMAS = Path(__file__).parents[1] / "edge_agent" / "schemas"


@st.composite
def batches(draw: st.DrawFn) -> SampleBatch:
    n = draw(st.integers(0, 40))
    ts = np.sort(draw(hnp.arrays(np.int64, n, elements=st.integers(0, 2**62))))
    values: dict[str, np.ndarray] = {}
    quality: dict[str, np.ndarray] = {}
    status: dict[str, np.ndarray] = {}
    # a plugin's columns may be big-endian, strided views, or codes of a wider integer type
    dtypes = [np.float64, np.int64, np.uint32, np.float32, np.uint64, ">f4", ">i8", ">u2"]
    code_types = st.sampled_from([np.uint8, np.uint8, np.int64])

    def column(dtype: object, elements: st.SearchStrategy[int] | None = None) -> np.ndarray:
        col = draw(hnp.arrays(dtype, n, elements=elements))
        return np.repeat(col, 2)[::2] if draw(st.booleans()) else col  # strided: not contiguous

    for j in range(draw(st.integers(1, 12))):
        values[f"t{j}"] = column(draw(st.sampled_from(dtypes)))
        quality[f"t{j}"] = column(draw(code_types), st.integers(0, 3))
        if draw(st.booleans()):
            status[f"t{j}"] = column(draw(st.sampled_from([np.uint32, np.int64])), st.integers(0, 2**31))
    return SampleBatch("dev", ts, values, quality, status)


def _same(a: SampleBatch, b: SampleBatch) -> None:
    assert a.device == b.device
    np.testing.assert_array_equal(a.ts, b.ts)
    assert list(a.values) == list(b.values)
    for t in a.values:
        assert a.values[t].dtype == b.values[t].dtype
        np.testing.assert_array_equal(a.values[t], b.values[t])
        np.testing.assert_array_equal(a.quality[t], b.quality[t])
    assert list(a.status) == list(b.status)
    for t in a.status:
        np.testing.assert_array_equal(a.status[t], b.status[t])


@settings(max_examples=60, deadline=None)
@given(batches())
def test_buffer_codec_roundtrips_exactly(batch: SampleBatch) -> None:
    _same(decode_batch(encode_batch(batch)), batch)


@settings(max_examples=40, deadline=None)
@given(batches(), st.sampled_from(["dev", 'odd,"c":[name', 'ünï\\code"', ""]))
def test_buffer_codec_reads_a_repeated_layout_and_any_device_name(batch: SampleBatch, device: str) -> None:
    """Read layouts are kept by the header's column part: a second round of the same columns
    (other values, other device) decodes from the kept layout, exactly."""
    from edge_agent.delivery.buffer import _parts
    from edge_agent.delivery.record import Placement

    first = SampleBatch.trusted(device, batch.ts, batch.values, batch.quality, batch.status)
    again = SampleBatch.trusted(
        device + "2",
        batch.ts + 1,
        {t: v[::-1].copy() for t, v in batch.values.items()},
        batch.quality,
        batch.status,
    )
    for b in (first, again, first):
        _same(decode_batch(encode_batch(b)), b)
    # a device round stored as one record comes back as its parts, in order
    names = list(batch.values)
    cut = len(names) // 2
    parts = tuple(first.select(ns) for ns in (names[:cut], names[cut:]) if ns)
    place = Placement("s", "a", "l", "m")
    segments = tuple((place, len(p.values)) for p in parts)
    for got, want in zip(_parts(segments, decode_batch(encode_batch(parts))), parts, strict=True):
        _same(got, want)


def test_buffer_codec_reads_blobs_of_the_first_format() -> None:
    """A buffer written before an upgrade (format EAB1) is still delivered after it."""
    import zlib

    header = b'{"d":"plc1","n":2,"c":[["p","<f8",true],["n","<u4",false]]}'
    body = (
        np.array([5, 1], np.int64).tobytes()  # ts deltas: 5, 6
        + np.array([1.5, 2.5]).tobytes()
        + bytes([0, 2])
        + np.array([0, 0x102], np.uint32).tobytes()
        + np.array([7, 8], np.uint32).tobytes()
        + bytes([0, 0])
    )
    blob = b"EAB1" + len(header).to_bytes(4, "little") + zlib.compress(header + body)
    got = decode_batch(blob)
    assert got.device == "plc1" and got.ts.tolist() == [5, 6]
    assert got.values["p"].tolist() == [1.5, 2.5] and got.values["n"].dtype == np.uint32
    assert got.quality["p"].tolist() == [0, 2] and got.status["p"].tolist() == [0, 0x102]
    assert "n" not in got.status


def test_buffer_codec_is_compact_for_regular_polls() -> None:
    n = 10_000
    ts = 1_700_000_000_000_000_000 + np.arange(n, dtype=np.int64) * 1_000_000_000
    batch = SampleBatch("d", ts, {"p": np.round(np.linspace(0, 50, n), 2)}, {"p": np.zeros(n, np.uint8)})
    assert len(encode_batch(batch)) < n * 8 * 1.2  # timestamps and quality nearly vanish


def test_line_protocol_matches_influxdb_client_points() -> None:
    n = 50
    rng = np.random.default_rng(1)
    ts = 1_700_000_000_000_000_000 + np.arange(n, dtype=np.int64) * 1_000_000
    vals = {
        "power": rng.normal(10, 3, n),
        "count": rng.integers(0, 2**40, n),
        "temp deg": rng.normal(0, 1e6, n),
    }
    batch = SampleBatch("plc 1", ts, vals, {k: np.zeros(n, np.uint8) for k in vals})
    tags = {"site": "s1", "asset": "a,1", "device": "plc 1"}
    ours, fields = batch_lines("raw", tags, batch)
    theirs = []
    for i in range(n):
        p = Point("raw")  # type: ignore[no-untyped-call]
        for k, v in sorted(tags.items()):
            p = p.tag(k, v)  # type: ignore[no-untyped-call]
        p = p.field("power", float(vals["power"][i])).field("count", int(vals["count"][i]))  # type: ignore[no-untyped-call]
        p = p.field("temp deg", float(vals["temp deg"][i]))
        p = p.time(int(ts[i]), WritePrecision.NS)
        theirs.append(p.to_line_protocol())

    def norm(line: str) -> tuple[str, frozenset[str], str]:  # field order is not significant
        head, fieldset, t = line.rsplit(" ", 2) if "\\ " not in line else _split(line)
        return head, frozenset(fieldset.split(",")), t

    assert [norm(x) for x in ours.splitlines()] == [norm(x) for x in theirs]
    assert fields == 3 * n


def _split(line: str) -> tuple[str, str, str]:
    parts, cur, esc = [], "", False
    for ch in line:
        if ch == " " and not esc:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
        esc = ch == "\\" and not esc
    parts.append(cur)
    return parts[0], parts[1], parts[2]


def test_bad_and_missing_values_are_never_written_as_numbers() -> None:
    ts = np.arange(4, dtype=np.int64)
    batch = SampleBatch(
        "d",
        ts,
        {"a": np.array([1.0, 2.0, np.nan, np.inf]), "b": np.array([5, 6, 7, 8], np.int64)},
        {
            "a": np.array([Quality.BAD, Quality.GOOD, Quality.GOOD, Quality.GOOD], np.uint8),
            "b": np.array([Quality.GOOD, Quality.MISSING, Quality.UNCERTAIN, Quality.BAD], np.uint8),
        },
    )
    text, n = batch_lines("raw", {"asset": "x"}, batch)
    assert text.splitlines() == ["raw,asset=x b=5i 0", "raw,asset=x a=2.0 1", "raw,asset=x b=7i 2"]
    assert n == 3
    payload = json.loads(encode_payload("raw", PLACE, batch))
    assert payload["values"] == {"a": [None, 2.0, None, None], "b": [5, None, 7, None]}
    assert payload["quality"] == {"a": [2, 0, 2, 2], "b": [0, 3, 1, 2]}


@settings(max_examples=60, deadline=None)
@given(batches())
def test_payload_roundtrip_keeps_every_usable_value(batch: SampleBatch) -> None:
    decoded = decode_payload(encode_payload("raw", PLACE, batch))
    assert decoded.kind == "raw" and decoded.placement == PLACE
    np.testing.assert_array_equal(decoded.batch.ts, batch.ts)
    for t, arr in batch.values.items():
        q = batch.quality[t].copy()
        if arr.dtype.kind == "f":
            q[~np.isfinite(arr) & (q < Quality.BAD)] = Quality.BAD
        np.testing.assert_array_equal(decoded.batch.quality[t], q)
        usable = q < Quality.BAD
        np.testing.assert_array_equal(decoded.batch.values[t][usable], arr[usable])


def test_kpi_payload_carries_window_and_asset() -> None:
    batch = SampleBatch.single("press1", 10, {"energy_kwh": 1.25, "good_parts": 7})
    d = decode_payload(encode_payload("kpi", Placement("s1", "a1", "l1", "press1", "60s"), batch))
    assert d.kind == "kpi" and d.placement.window == "60s" and d.batch.device == "press1"
    assert d.batch.values["good_parts"].dtype.kind == "i"


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"{oops", "Invalid JSON"),
        (b'{"v":1,"kind":"raw"}', "Field required"),
        (
            b'{"v":2,"kind":"raw","site":"s","area":"a","line":"l","asset":"x","device":"d","ts":[],"values":{}}',
            "Input should be 1",
        ),
        (
            b'{"v":1,"kind":"raw","site":"s","area":"a","line":"l","asset":"x","device":"d","ts":[1],'
            b'"values":{"p":[NaN]}}',
            "finite",
        ),
        (
            b'{"v":1,"kind":"raw","site":"s","area":"a","line":"l","asset":"x","device":"d","ts":[1],'
            b'"values":{"p":[null]}}',
            "null value with Good",
        ),
        (
            b'{"v":1,"kind":"raw","site":"s","area":"a","line":"l","asset":"x","ts":[1],"values":{"p":[1]}}',
            "without 'device'",
        ),
        (
            b'{"v":1,"kind":"raw","site":"s","area":"a","line":"l","asset":"x","device":"d","ts":[1],'
            b'"values":{"p":[1]},"quality":{"p":[7]}}',
            "less than or equal to 3",
        ),
    ],
)
def test_malformed_payloads_get_a_clear_error(data: bytes, match: str) -> None:
    with pytest.raises(PayloadError, match=match):
        decode_payload(data)


def test_oversized_payload_is_rejected_before_parsing() -> None:
    with pytest.raises(PayloadError, match="exceeds max_message_bytes=10"):
        decode_payload(b"x" * 11, max_bytes=10)


def test_shipped_json_schemas_match_the_model() -> None:
    for name, doc in schema_documents().items():
        shipped = json.loads((SCHEMAS / name).read_text())
        assert shipped == doc, (
            f"{name} is stale: regenerate it from edge_agent.delivery.payload.schema_documents()"
        )


def test_topics_and_subscription_filters() -> None:
    tpl = "plant/{site}/{area}/{line}/{asset}/{kind}"
    assert data_topic(tpl, "raw", PLACE) == "plant/s1/a1/l1/press1/raw"
    assert subscription_filters(tpl) == ["plant/+/+/+/+/raw", "plant/+/+/+/+/kpi"]
    assert subscription_filters(tpl, group="g")[0] == "$share/g/plant/+/+/+/+/raw"


@pytest.mark.parametrize(
    ("template", "match"),
    [
        ("{site}/{asset}/x{kind}", "whole level"),
        ("{site}/{asset}/{kind}/{shift}", "unknown placeholder"),
        ("{site}/{asset}", "must contain"),
        ("{site}/+/{asset}/{kind}", "wildcards"),
    ],
)
def test_bad_topic_templates_are_config_errors(template: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MqttConfig(topic_template=template)

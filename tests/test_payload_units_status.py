"""Raw samples in engineering units with the exact count beside; quality with its cause
(issue #12): through the real encoder and decoder of the UNS payload."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_agent.batch import Cause, Quality, SampleBatch, cause_of, describe_status
from edge_agent.config import TagConfig
from edge_agent.delivery.payload import decode_payload, encode_payload
from edge_agent.delivery.record import Placement
from edge_agent.delivery.units import EngineeringUnits
from edge_agent.errors import DeviceConnectError, DeviceExceptionError, DeviceTimeoutError

PLACE = Placement(site="s", area="a", line="l", asset="m1", window=None)


def test_counters_leave_in_units_and_keep_their_exact_count() -> None:
    tags = [
        TagConfig(name="kwh", asset="m1", role="energy_counter", unit="kWh", scale=0.0001),
        TagConfig(name="p", asset="m1", role="power", unit="kW"),
    ]
    raw = np.array([250102131, 2**32 - 1, 5], np.int64)
    batch = SampleBatch(
        device="d",
        ts=np.array([1, 2, 3], np.int64),
        values={"kwh": raw, "p": np.array([1.5, 2.5, 3.5])},
        quality={"kwh": np.array([0, 0, 2], np.uint8), "p": np.zeros(3, np.uint8)},
    )
    out = EngineeringUnits(tags)(batch)
    assert out.values["kwh"][0] == 25010.2131  # kWh, not counts (issue: off by 10^4)
    assert out.values["kwh_raw"].tolist() == raw.tolist()  # exact, for totals
    assert out.values["p"] is batch.values["p"]  # analog columns untouched
    doc = json.loads(encode_payload("raw", PLACE, out))
    assert doc["values"]["kwh"][:2] == [25010.2131, 429496.7295] and doc["values"]["kwh"][2] is None
    assert doc["values"]["kwh_raw"][:2] == [250102131, 4294967295]
    back = decode_payload(json.dumps(doc).encode()).batch
    assert back.values["kwh_raw"].dtype.kind == "i" and int(back.values["kwh_raw"][1]) == 2**32 - 1
    no_counters = EngineeringUnits(tags[1:])
    assert no_counters(batch) is batch  # nothing to do: no copy


def test_status_says_why_and_nonfinite_differs_from_a_lost_link() -> None:
    n = 4
    opcua_bad = 0x80340000  # BadNodeIdUnknown
    batch = SampleBatch(
        device="d",
        ts=np.arange(n, dtype=np.int64),
        values={"a": np.array([1.0, np.nan, np.inf, 2.0]), "b": np.array([1.0, np.nan, 3.0, 4.0])},
        quality={"a": np.zeros(n, np.uint8), "b": np.array([0, 2, 0, 0], np.uint8)},
        status={"a": np.zeros(n, np.uint32), "b": np.array([0, opcua_bad, 0, 0], np.uint32)},
    ).with_nonfinite_bad()
    lost = SampleBatch.bad("d", 9, ["a", "b"], cause_of(DeviceConnectError("d", "gone")))
    both = SampleBatch.concat([batch, lost])
    doc = json.loads(encode_payload("raw", PLACE, both))
    assert doc["status"]["a"] == [0, Cause.NONFINITE, Cause.NONFINITE, 0, Cause.LINK_LOST]
    assert doc["status"]["b"] == [0, opcua_bad, 0, 0, Cause.LINK_LOST]
    assert doc["quality"]["a"] == [0, Quality.BAD, Quality.BAD, 0, Quality.BAD]
    back = decode_payload(json.dumps(doc).encode()).batch
    assert back.status["b"].tolist() == doc["status"]["b"]
    good = SampleBatch.single("d", 1, {"x": 1.0})
    assert "status" not in json.loads(encode_payload("raw", PLACE, good))  # nothing on the Good path
    assert describe_status(Cause.NONFINITE) == "nonfinite"
    assert describe_status(2) == "modbus exception 0x02"
    assert describe_status(opcua_bad) == "opcua status 0x80340000"
    assert cause_of(DeviceTimeoutError("d", "slow")) == Cause.TIMEOUT
    assert cause_of(DeviceExceptionError("d", "illegal address", code=2)) == 2


def test_nonfinite_marking_over_many_columns_hits_exactly_the_usable_nonfinite_cells() -> None:
    """The vectorised check over all float columns maps every hit back to its own tag and row."""
    rng = np.random.default_rng(7)
    n, k = 3, 40
    values: dict[str, np.ndarray] = {}
    quality: dict[str, np.ndarray] = {}
    for j in range(k):
        if j % 5 == 4:  # integer counters are never non-finite
            values[f"c{j}"] = rng.integers(0, 100, n)
        else:
            v = rng.normal(size=n)
            v[rng.random(n) < 0.2] = rng.choice([np.nan, np.inf, -np.inf])
            values[f"f{j}"] = v
        quality[next(reversed(values))] = rng.integers(0, 4, n).astype(np.uint8)
    batch = SampleBatch("plc1", np.arange(n, dtype=np.int64), values, quality)
    out = batch.with_nonfinite_bad()
    for tag, v in values.items():
        q = quality[tag]
        expect_hit = (~np.isfinite(v) & (q < Quality.BAD)) if v.dtype.kind == "f" else np.zeros(n, bool)
        np.testing.assert_array_equal(out.quality[tag], np.where(expect_hit, Quality.BAD, q))
        if expect_hit.any():
            assert (out.status[tag][expect_hit] == Cause.NONFINITE).all()
        else:
            assert tag not in out.status


def test_nonfinite_check_over_mixed_columns_leaves_text_integer_and_time_columns_alone() -> None:
    """The fast check concatenates every column; text, datetimes and huge integers must neither
    break it nor hide a NaN beside them, and a clean mixed batch is returned uncopied."""
    ts = np.arange(2, dtype=np.int64)
    good = np.zeros(2, np.uint8)
    cols: dict[str, np.ndarray] = {
        "f": np.asarray([1.5, 2.5]),
        "big": np.asarray([2**64 - 1, 0], dtype=np.uint64),
        "neg": np.asarray([-(2**63), 5], dtype=np.int64),
        "text": np.asarray(["run", "nan"]),
        "when": np.asarray(["2026-01-01", "2026-01-02"], dtype="datetime64[D]"),
    }
    clean = SampleBatch("d", ts, cols, dict.fromkeys(cols, good))
    assert clean.with_nonfinite_bad() is clean
    for others in (["text"], ["when"], ["big", "neg"], ["text", "when", "big"]):
        names = ["f", *others]
        values = {n: cols[n] for n in names} | {"f": np.asarray([np.nan, np.inf])}
        out = SampleBatch("d", ts, values, dict.fromkeys(names, good)).with_nonfinite_bad()
        assert out.quality["f"].tolist() == [Quality.BAD, Quality.BAD], others
        assert out.status["f"].tolist() == [Cause.NONFINITE] * 2
        assert all(out.quality[n].tolist() == [0, 0] for n in others) and set(out.status) == {"f"}


@pytest.mark.parametrize("seed", range(8))
def test_every_counter_of_a_wide_batch_is_converted_as_it_would_be_alone(seed: int) -> None:
    """The round's counters go through units in one block: each must equal value × scale +
    offset of its own column (NaN where Bad), keep its exact count and its status beside it."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 5))
    tags, values, quality, status = [], {}, {}, {}
    for i in range(int(rng.integers(2, 30))):
        counter = rng.random() < 0.6
        scale, offset = float(rng.choice([0.001, 0.1, 1.0, 2.5])), float(rng.choice([0.0, -3.0, 10.0]))
        if counter:  # a driver hands counters over as exact integers, signed or not
            tags.append(
                TagConfig(
                    name=f"c{i}", asset="m1", role="part_counter", unit="parts", scale=scale, offset=offset
                )
            )
            dtype = np.uint64 if rng.random() < 0.3 else np.int64
            values[f"c{i}"] = rng.integers(0, 2**31, n).astype(dtype)
        else:
            tags.append(TagConfig(name=f"a{i}", asset="m1", role="generic"))
            values[f"a{i}"] = rng.random(n)
        name = tags[-1].name
        quality[name] = rng.choice([0, 0, 1, 2], n).astype(np.uint8)
        if rng.random() < 0.3:
            status[name] = rng.integers(0, 5, n).astype(np.uint32)
    batch = SampleBatch("d", np.arange(n, dtype=np.int64), values, quality, status)
    out = EngineeringUnits(tags)(batch)
    for t in tags:
        if not t.is_counter:
            assert out.values[t.name] is batch.values[t.name]
            continue
        raw = batch.values[t.name]
        want = np.where(
            batch.quality[t.name] >= Quality.BAD, np.nan, raw.astype(np.float64) * t.scale + t.offset
        )
        np.testing.assert_array_equal(out.values[t.name], want)
        assert out.values[t.name + "_raw"] is raw
        assert out.quality[t.name + "_raw"] is batch.quality[t.name]
        if t.name in status:
            assert out.status[t.name + "_raw"] is status[t.name]
        else:
            assert t.name + "_raw" not in out.status


@pytest.mark.parametrize("seed", range(10))
def test_a_message_with_shared_quality_rows_encodes_as_the_checked_path_does(seed: int) -> None:
    """A driver shares one read-only Good row (and one Bad row) among many tags, and the
    encoder makes each one's list once: the JSON must equal the column-by-column checked form."""
    from edge_agent.delivery.payload import _checked_columns, _dump

    rng = np.random.default_rng(seed)
    good, bad, uncertain = (np.full(1, c, np.uint8) for c in (Quality.GOOD, Quality.BAD, Quality.UNCERTAIN))
    values, quality = {}, {}
    for i in range(int(rng.integers(1, 25))):
        code = [good, good, good, bad, uncertain][int(rng.integers(0, 5))]
        v = float(rng.normal()) if code is not bad else float("nan")
        values[f"t{i}"] = (
            np.asarray([int(v * 100)]) if rng.random() < 0.3 and code is not bad else np.asarray([v])
        )
        quality[f"t{i}"] = code
    batch = SampleBatch.trusted("d", np.asarray([5], np.int64), values, quality)
    got = json.loads(encode_payload("raw", PLACE, batch))
    want = json.loads(_dump("raw", PLACE, batch, *_checked_columns(batch)))
    assert got == want
    assert all(got["values"][t] == [None] for t in values if quality[t] is bad)

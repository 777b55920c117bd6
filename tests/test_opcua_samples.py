"""From raw OPC UA samples to SampleBatch: quality, exact counters, rows, Bad never a number."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.batch import Quality
from edge_agent.config import TagConfig
from edge_agent.drivers.opcua._ua import ua
from edge_agent.drivers.opcua.quality import as_float, as_int, qualities
from edge_agent.drivers.opcua.samples import SampleLog, TagLayout

GOOD = ua.StatusCodes.Good
UNCERTAIN = ua.StatusCodes.UncertainLastUsableValue
BAD = ua.StatusCodes.BadSensorFailure
TAGS = [
    TagConfig(name="power", asset="a", role="power", unit="kW", scale=2.0, offset=1.0),
    TagConfig(name="energy", asset="a", role="energy_counter", unit="kWh", scale=0.001),
    TagConfig(name="temp", asset="a", role="temperature", unit="degC"),
]


def log() -> SampleLog:
    return SampleLog(TagLayout(TAGS), device="d")


def test_status_severity_maps_to_quality() -> None:
    codes = np.array([GOOD, 0x00A90000, UNCERTAIN, BAD, 0x80000000, 0xC0000000], dtype=np.uint32)
    assert qualities(codes).tolist() == [
        Quality.GOOD,
        Quality.GOOD,
        Quality.UNCERTAIN,
        Quality.BAD,
        Quality.BAD,
        2,
    ]


def test_values_become_numbers_only_when_they_are_numbers() -> None:
    assert as_float(True) == 1.0 and as_float(np.float32(2.5)) == 2.5 and as_float(7) == 7.0
    assert all(math.isnan(as_float(v)) for v in (None, "12", [1.0], math.inf, b"\x01"))
    assert as_int(4_000_000_000) == 4_000_000_000 and as_int(12.0) == 12 and as_int(np.uint16(3)) == 3
    assert as_int(12.5) is None and as_int(2**64 - 1) is None and as_int("3") is None


def test_a_poll_row_scales_analog_keeps_counters_exact_and_never_shows_bad_numbers() -> None:
    sample_log = log()
    sample_log.add_row(1_000, [0, 1, 2], [10.0, 2**40 + 1, 21.5], [GOOD, GOOD, BAD])
    batch = sample_log.drain()
    assert batch.ts.tolist() == [1_000]
    assert batch.values["power"].tolist() == [21.0]
    assert batch.values["energy"].dtype == np.int64 and batch.values["energy"].tolist() == [2**40 + 1]
    assert math.isnan(batch.values["temp"][0]) and batch.quality["temp"][0] == Quality.BAD
    assert batch.status["temp"].tolist() == [BAD]
    assert len(sample_log) == 0 and len(sample_log.drain()) == 0


def test_uncertain_keeps_its_value_but_a_null_or_text_value_is_bad() -> None:
    sample_log = log()
    sample_log.add_row(5, [0, 1, 2], [3.0, 5.5, None], [UNCERTAIN, GOOD, GOOD])
    batch = sample_log.drain()
    assert batch.quality["power"][0] == Quality.UNCERTAIN and batch.values["power"][0] == 7.0
    assert batch.quality["energy"][0] == Quality.BAD and batch.values["energy"][0] == 0  # 5.5 is no count
    assert batch.quality["temp"][0] == Quality.BAD and math.isnan(batch.values["temp"][0])


def test_notifications_are_grouped_by_timestamp_and_sorted() -> None:
    sample_log = log()
    sample_log.add(30, 0, 1.0, GOOD)
    sample_log.add(10, 2, 20.0, GOOD)
    sample_log.add(30, 2, 21.0, GOOD)
    sample_log.add(10, 2, 22.0, GOOD)  # same tag twice at the same instant: both kept, in order
    batch = sample_log.drain()
    assert batch.ts.tolist() == [10, 10, 30]
    assert batch.values["temp"].tolist() == [20.0, 22.0, 21.0]
    assert batch.quality["power"].tolist() == [Quality.MISSING, Quality.MISSING, Quality.GOOD]
    assert batch.quality["energy"].tolist() == [Quality.MISSING] * 3


def test_the_log_is_capped_and_keeps_the_newest(caplog: pytest.LogCaptureFixture) -> None:
    sample_log = SampleLog(TagLayout(TAGS), device="d", max_samples=100)
    for i in range(300):
        sample_log.add(i, 2, float(i), GOOD)
    assert len(sample_log) <= 100 + 100 // 8 and sample_log.dropped > 0
    batch = sample_log.drain()
    assert batch.values["temp"][-1] == 299.0 and batch.ts.tolist() == sorted(batch.ts.tolist())
    assert sum("dropping the oldest" in r.getMessage() for r in caplog.records) == 1


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 5),
            st.integers(0, 2),
            st.one_of(
                st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**70), 2**70), st.none()
            ),
            st.sampled_from([GOOD, UNCERTAIN, BAD]),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_no_sample_is_lost_and_bad_is_never_a_number(samples: list[tuple[int, int, object, int]]) -> None:
    sample_log = log()
    for ts, tag, value, status in samples:
        sample_log.add(ts, tag, value, status)
    batch = sample_log.drain()
    present = sum(int((batch.quality[t] != Quality.MISSING).sum()) for t in batch.tags)
    assert present == len(samples)
    assert np.all(np.diff(batch.ts) >= 0)
    for t in batch.tags:
        bad = batch.quality[t] == Quality.BAD
        values = batch.values[t].astype(np.float64)
        if batch.values[t].dtype == np.float64:
            assert np.isnan(values[bad]).all()
            assert np.isfinite(values[batch.good(t)]).all()
        else:
            assert (values[bad] == 0).all()

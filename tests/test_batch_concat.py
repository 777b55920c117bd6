"""SampleBatch.concat: the packed fast path (one concatenate per dtype group) against a plain
column-by-column join, over random shapes, dtypes, shared quality mappings and Bad rows."""

from __future__ import annotations

from types import MappingProxyType

import numpy as np
import pytest

from edge_agent.batch import Quality, SampleBatch

DTYPES = [np.float64, np.int64, np.uint64, np.dtype(">f4"), np.uint8]


def _reference(parts: list[SampleBatch]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    names = list(parts[0].values)
    return (
        {n: np.concatenate([p.values[n] for p in parts]) for n in names},
        {n: np.concatenate([p.quality[n] for p in parts]) for n in names},
    )


@pytest.mark.parametrize("seed", range(12))
def test_packed_concat_equals_a_column_by_column_join(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 40))
    names = [f"t{i}" for i in rng.permutation(k)]  # any order, not grouped by dtype
    kinds = {n: DTYPES[int(rng.integers(0, len(DTYPES)))] for n in names}
    shared = MappingProxyType({n: np.zeros(1, np.uint8) for n in names})  # a driver's all-Good rows
    parts, t = [], 0
    for _ in range(int(rng.integers(2, 6))):
        rows = int(rng.integers(0, 4)) if rng.random() < 0.3 else 1
        values = {n: (rng.random(rows) * 1000).astype(kinds[n]) for n in names}
        if rows == 1 and rng.random() < 0.5:
            quality = shared
        else:
            quality = {n: rng.integers(0, 4, rows).astype(np.uint8) for n in names}
        parts.append(SampleBatch.trusted("d", np.arange(t, t + rows, dtype=np.int64), values, quality))
        t += rows
    out = SampleBatch.concat(parts)
    want_values, want_quality = _reference(parts)
    assert list(out.values) == names and list(out.quality) == names
    np.testing.assert_array_equal(out.ts, np.arange(t))
    for n in names:
        assert out.values[n].dtype == want_values[n].dtype, n
        np.testing.assert_array_equal(out.values[n], want_values[n])
        np.testing.assert_array_equal(out.quality[n], want_quality[n])


def test_a_bad_row_among_integers_is_joined_with_numpys_promotion() -> None:
    good = SampleBatch.single("d", 1, {"count": 7, "p": 1.5})
    bad = SampleBatch.bad("d", 2, ["count", "p"])
    out = SampleBatch.concat([good, bad, good])
    assert out.values["count"].dtype == np.float64
    assert out.values["count"][0] == 7 and np.isnan(out.values["count"][1])
    assert out.quality["p"].tolist() == [Quality.GOOD, Quality.BAD, Quality.GOOD]


@pytest.mark.parametrize("seed", range(6))
def test_polls_with_status_codes_join_on_the_fast_path_and_keep_every_code(seed: int) -> None:
    """A device with a few Bad tags (a broken sensor, a NaN register) sends their status codes
    every poll: its polls still join one concatenate per dtype group (they took a loop over
    every tag, 8x slower at 1,000 tags), and each code stays on its tag and row, 0 where a
    part had none; tags without any code get no status column."""
    rng = np.random.default_rng(seed)
    names = [f"t{i}" for i in range(200)]
    bad_ever = set(rng.choice(names, 12, replace=False).tolist())
    parts, expected = [], {n: [] for n in bad_ever}
    for row in range(int(rng.integers(2, 6))):
        column = rng.random(len(names))
        values = {n: column[i : i + 1] for i, n in enumerate(names)}
        now_bad = {n for n in bad_ever if rng.random() < 0.6}
        quality = {n: np.full(1, Quality.BAD if n in now_bad else Quality.GOOD, np.uint8) for n in names}
        status = {n: np.array([1000 + row], np.uint32) for n in now_bad}
        for n in bad_ever:
            expected[n].append(1000 + row if n in now_bad else 0)
        parts.append(SampleBatch.trusted("d", np.array([row], np.int64), values, quality, status))
    joined = SampleBatch.concat(parts)
    ref_values, ref_quality = _reference(parts)
    for n in names:
        np.testing.assert_array_equal(joined.values[n], ref_values[n])
        np.testing.assert_array_equal(joined.quality[n], ref_quality[n])
    assert {n: joined.status[n].tolist() for n in joined.status} == {
        n: codes for n, codes in expected.items() if any(codes)
    }
    assert all(joined.status[n].dtype == np.uint32 for n in joined.status)

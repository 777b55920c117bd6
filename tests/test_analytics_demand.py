"""The demand tracker's counter history: counts on the sample instants, exact through trims.

The streaming-vs-oracle tests cover peak demand end to end; these pin the history itself:
the count booked before any instant a later candidate can ask for equals the plain sum of
the bookings, whether a count lands on a sample instant (always, in the streaming path) or
not, and a tracker saved by the version that kept booking instants apart still answers the
same.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from edge_agent.analytics.demand import DemandTracker

L = 900 * 10**9
S = 10**9


def _naive(tb: list[int], delta: list[int], x: np.ndarray) -> np.ndarray:
    t, d = np.asarray(tb, np.int64), np.asarray(delta, np.uint64)
    return np.array([int(d[t < xi].sum()) for xi in x.tolist()], np.uint64)


@pytest.mark.parametrize("seed", range(12))
def test_counts_before_any_later_instant_equal_the_bookings(seed: int) -> None:
    rng = np.random.default_rng(seed)
    tr = DemandTracker(L, 0.001)
    all_tb: list[int] = []
    all_delta: list[int] = []
    t = 10**12
    det = None
    for _ in range(60):
        n = int(rng.integers(1, 40))
        samples = t + np.cumsum(rng.integers(S // 2, 3 * S, n))
        t = int(samples[-1])
        tr.add_samples(samples)
        # as the streaming path books: at a sample (often the one before), sometimes between
        k = int(rng.integers(1, n + 1))
        tb = np.sort(rng.choice(samples, k))
        if rng.random() < 0.3:
            tb = np.sort(np.concatenate((tb, tb[:1] - int(rng.integers(1, S)))))
        big = rng.random() < 0.1  # a count past 2**32 in the history: 8-byte counts
        delta = rng.integers(0, 2**33 if big else 50, tb.size).astype(np.uint64)
        tr.add_counts(tb.astype(np.int64), delta)
        all_tb += tb.tolist()
        all_delta += delta.tolist()
        det = t - int(rng.integers(0, 5 * S))
        tr.advance(det)  # trims what no later candidate needs
        # what later candidates ask: any instant after det − L, the instants themselves above all
        x = np.concatenate((rng.integers(det - L + 1, t + 2 * S, 50), np.asarray(all_tb), samples))
        x = np.sort(x[x > det - L]).astype(np.int64)
        got = tr._count(x) + np.uint64(tr._base)
        assert got.tolist() == _naive(all_tb, all_delta, x).tolist()
        assert pickle.loads(pickle.dumps(tr))._count(x).tolist() == tr._count(x).tolist()


def test_a_tracker_saved_before_counts_moved_onto_the_samples_answers_the_same() -> None:
    old = {  # the earlier layout: booking instants apart, absolute counts after each
        "block_ns": L,
        "scale": 0.001,
        "_first": 1 * S,
        "_det": None,
        "_samples": np.array([2, 3, 4, 6], np.int64) * S,
        "_t0": np.zeros(0, np.int64),
        "_t1": np.zeros(0, np.int64),
        "_v0": np.zeros(0),
        "_v1": np.zeros(0),
        "_ok": np.zeros(0, np.bool_),
        "_cum0": np.zeros(0),
        "_total": 0.0,
        "_tb": np.array([1, 2, 3, 5], np.int64) * S,
        "_cum": np.array([105, 107, 110, 111], np.uint64),
        "_base": np.uint64(100),
    }
    tr = DemandTracker.__new__(DemandTracker)
    tr.__setstate__(dict(old))
    x = np.arange(0, 9, dtype=np.int64) * S
    got = (tr._count(x) + np.uint64(tr._base)).tolist()
    # before 0 s and 1 s: the base; then each booking counts for instants after it
    assert got == [100, 100, 105, 107, 110, 110, 111, 111, 111]
    assert tr._samples[tr._seed].tolist() == old["_samples"].tolist()  # candidates unchanged


def test_fifteen_minutes_of_one_second_samples_take_13_bytes_an_instant() -> None:
    tr = DemandTracker(L, 0.001)
    t = 10**12 + np.arange(3600, dtype=np.int64) * S
    for i in range(0, t.size, 60):
        chunk = t[i : i + 60]
        tr.add_samples(chunk)
        tr.add_counts(chunk[:-1], np.full(chunk.size - 1, 6, np.uint64))
        tr.advance(int(chunk[-1]))
    held = tr._samples.size
    assert 900 <= held <= 961
    assert tr._samples.nbytes + tr._cum.nbytes + tr._seed.nbytes == 13 * held

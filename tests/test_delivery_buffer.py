"""The durable buffer on its own: cursors, deletion, restart, kill -9, full disk, policies."""

from __future__ import annotations

import logging
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from servers import synthetic_batch

from edge_agent.config import BufferConfig
from edge_agent.delivery import Placement, SinkStats
from edge_agent.delivery.buffer import SyncBuffer
from edge_agent.errors import BufferFullError

PLACE = Placement("s1", "a1", "l1", "press1")
PER = 100 * 4
CAP = 200_000  # bytes of files on disk; leaves about 100 kB for rows next to SQLite's pages and WAL
N = 150  # batches of about 0.9 kB: well past the cap


def _open(path: Path, sinks: tuple[str, ...] = ("mqtt", "influxdb"), **kw: object) -> SyncBuffer:
    buf = SyncBuffer(BufferConfig(path=path, **kw), sinks, {})
    buf.open()
    return buf


def _fill(buf: SyncBuffer, n: int, start: int = 0) -> list[int]:
    ids = []
    for i in range(start, start + n):
        res = buf.append("raw", PLACE, synthetic_batch("plc1", i * 10**9, 100))
        assert res.id is not None
        ids.append(res.id)
    return ids


def test_sinks_advance_independently_and_rows_go_only_when_all_confirmed(tmp_path: Path) -> None:
    buf = _open(tmp_path / "b.db")
    ids = _fill(buf, 5)
    got = buf.fetch("mqtt", 10, 10**9)
    assert [r.id for r in got] == ids
    buf.confirm("mqtt", ids)
    assert buf.stats.records == 5, "influxdb has not confirmed yet"
    assert buf.sink_stats["mqtt"].backlog == 0 and buf.sink_stats["influxdb"].backlog == 5 * PER
    first = buf.fetch("influxdb", 2, 10**9)
    buf.confirm("influxdb", [first[1].id])  # out of order: nothing can go yet
    assert buf.stats.records == 5
    buf.confirm("influxdb", [first[0].id])
    assert buf.stats.records == 3
    assert buf.sink_stats["influxdb"].delivered == 2 * PER
    buf.close()


def test_restart_replays_everything_unconfirmed(tmp_path: Path) -> None:
    buf = _open(tmp_path / "b.db")
    ids = _fill(buf, 6)
    buf.fetch("mqtt", 6, 10**9)
    buf.confirm("mqtt", ids[:2])
    buf.confirm("mqtt", ids[3:4])  # confirmed out of order, but 2 is still open
    buf.close()
    again = _open(tmp_path / "b.db")
    assert [r.id for r in again.fetch("mqtt", 10, 10**9)] == ids[2:]
    assert [r.id for r in again.fetch("influxdb", 10, 10**9)] == ids
    assert again.sink_stats["mqtt"].backlog == 4 * PER
    again.close()


def test_a_sink_removed_from_config_no_longer_holds_rows(tmp_path: Path) -> None:
    buf = _open(tmp_path / "b.db")
    ids = _fill(buf, 3)
    buf.fetch("mqtt", 3, 10**9)
    buf.confirm("mqtt", ids)
    buf.close()
    only_mqtt = _open(tmp_path / "b.db", ("mqtt",))
    assert only_mqtt.stats.records == 0
    only_mqtt.close()


def test_fetch_respects_sample_budget_but_always_returns_one(tmp_path: Path) -> None:
    buf = _open(tmp_path / "b.db")
    _fill(buf, 4)
    assert len(buf.fetch("mqtt", 10, 2 * PER)) == 2
    assert len(buf.fetch("mqtt", 10, 1)) == 1
    buf.close()


def test_full_disk_drops_by_count_keeps_what_is_stored_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    buf = _open(tmp_path / "b.db", ("mqtt",))
    ids = _fill(buf, 3)
    pages = buf.db.execute("PRAGMA page_count").fetchone()[0]
    buf.db.execute(f"PRAGMA max_page_count={pages}")  # SQLite now answers SQLITE_FULL, as on a full disk
    dropped = 0
    with caplog.at_level(logging.WARNING, logger="edge_agent.delivery.buffer"):
        for i in range(3, 50):  # the WAL may still take a page or two; nothing raises
            res = buf.append("raw", PLACE, synthetic_batch("plc1", i * 10**9, 100))
            if res.id is not None:
                ids.append(res.id)
            dropped += res.dropped_samples
        assert dropped >= PER and dropped == buf.stats.dropped == buf.sink_stats["mqtt"].dropped
        full = [r for r in caplog.records if "is full" in r.getMessage()]
        assert len(full) == 1 and "disk full" in full[0].getMessage()  # once per episode
        buf.db.execute("PRAGMA max_page_count=1073741823")  # room returns: the next append just works
        res = buf.append("raw", PLACE, synthetic_batch("plc1", 50 * 10**9, 100))
        assert res.id is not None
        ids.append(res.id)
        buf.episode_quiet_s = 0.0  # the spell ends after a quiet period (5 s by default)
        res = buf.append("raw", PLACE, synthetic_batch("plc1", 51 * 10**9, 100))
        assert res.id is not None
        ids.append(res.id)
        assert any("has room again" in r.getMessage() for r in caplog.records)
    assert buf.sink_stats["mqtt"].backlog == len(ids) * PER
    buf.close()
    again = _open(tmp_path / "b.db", ("mqtt",))
    assert [r.id for r in again.fetch("mqtt", 100, 10**9)] == ids
    again.close()


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_cap_policies_count_every_dropped_sample(tmp_path: Path, policy: str) -> None:
    buf = _open(tmp_path / "b.db", max_bytes=CAP, policy=policy)
    kept, dropped = 0, 0
    for i in range(N):
        res = buf.append("raw", PLACE, synthetic_batch("plc1", i * 10**9, 100))
        dropped += res.dropped_samples + res.evicted_samples
        kept += PER if res.id is not None else 0
    assert buf.stats.bytes <= buf.data_cap and dropped > 0
    assert buf.refresh_file_bytes() <= CAP  # the whole file set, WAL included
    remaining = sum(r.samples for r in buf.fetch("mqtt", N, 10**9))
    assert remaining == N * PER - dropped == buf.sink_stats["mqtt"].backlog
    assert buf.sink_stats["mqtt"].dropped == dropped == buf.stats.dropped
    first = buf.fetch("influxdb", 1, 10**9)[0]
    if policy == "drop_oldest":
        assert first.batch.ts[0] > 0
    else:
        assert first.batch.ts[0] == 0
    buf.close()


def test_drop_oldest_never_evicts_a_batch_a_sink_is_sending(tmp_path: Path) -> None:
    buf = _open(tmp_path / "b.db", ("mqtt",), max_bytes=CAP, policy="drop_oldest")
    ids = _fill(buf, 2)
    sending = buf.fetch("mqtt", 1, 10**9)[0]
    for i in range(2, N):
        buf.append("raw", PLACE, synthetic_batch("plc1", i * 10**9, 100))
    assert buf.db.execute("SELECT 1 FROM batches WHERE id=?", (sending.id,)).fetchone() is not None
    assert buf.db.execute("SELECT 1 FROM batches WHERE id=?", (ids[1],)).fetchone() is None
    buf.close()


def test_block_policy_reports_full_and_oversized_batches_fail_loudly(tmp_path: Path) -> None:
    buf = _open(tmp_path / "b.db", ("mqtt",), max_bytes=CAP, policy="block")
    results = [buf.append("raw", PLACE, synthetic_batch("plc1", i * 10**9, 100)) for i in range(N)]
    assert any(r.full for r in results) and buf.stats.dropped == 0
    with pytest.raises(BufferFullError, match=r"larger than .* buffer.max_bytes=200000"):
        buf.append("raw", PLACE, synthetic_batch("plc1", 0, 50_000))
    buf.close()


def test_buffer_is_wal_and_stores_one_row_per_batch(tmp_path: Path) -> None:
    buf = _open(tmp_path / "b.db")
    _fill(buf, 3)
    assert buf.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # exclusive locking: no -shm file (it would count against max_bytes), no second writer
    assert not (tmp_path / "b.db-shm").exists()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        sqlite3.connect(tmp_path / "b.db", timeout=0.1).execute("SELECT COUNT(*) FROM batches").fetchone()
    buf.close()
    db = sqlite3.connect(tmp_path / "b.db")
    assert db.execute("SELECT COUNT(*) FROM batches").fetchone()[0] == 3
    db.close()


_WRITER = """
import sys
sys.path.insert(0, {tests!r})
from servers import synthetic_batch
from edge_agent.config import BufferConfig
from edge_agent.delivery import Placement
from edge_agent.delivery.buffer import SyncBuffer
buf = SyncBuffer(BufferConfig(path={path!r}), ["mqtt"], {{}})
buf.open()
for i in range(10**6):
    buf.append("raw", Placement("s1", "a1", "l1", "press1"), synthetic_batch("plc1", i * 10**9, 100))
    print(i + 1, flush=True)
"""


def test_every_append_that_returned_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    code = _WRITER.format(tests=str(Path(__file__).parent), path=str(path))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    done = 0
    deadline = time.monotonic() + 30
    while done < 200 and time.monotonic() < deadline:
        done = int(proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    for line in proc.stdout:  # lines already reported before the kill
        done = int(line)
    buf = _open(path, ("mqtt",))
    n = len(buf.fetch("mqtt", 10**6, 10**12))
    assert done <= n <= done + 1  # at most one append was committed but not yet reported
    assert buf.sink_stats["mqtt"].backlog == n * PER
    buf.close()


def test_sink_stats_identity_holds(tmp_path: Path) -> None:
    stats: dict[str, SinkStats] = {}
    buf = SyncBuffer(BufferConfig(path=tmp_path / "b.db", max_bytes=CAP), ["mqtt"], stats)
    buf.open()
    for i in range(N):
        buf.append("raw", PLACE, synthetic_batch("plc1", i * 10**9, 100))
    recs = buf.fetch("mqtt", 3, 10**9)
    buf.confirm("mqtt", [recs[0].id])
    buf.quarantine("mqtt", recs[1], "test")
    s = stats["mqtt"]
    assert s.delivered + s.quarantined + s.dropped + s.backlog == N * PER
    assert [q.reason for q in buf.quarantined("mqtt")] == ["test"]
    buf.close()


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_append_many_counts_like_one_append_per_batch(tmp_path: Path, policy: str) -> None:
    """A device round in one transaction: same ids in order, same drops, same backlog as appends."""
    buf = _open(tmp_path / "b.db", max_bytes=CAP, policy=policy)
    kept, dropped, ids = 0, 0, []
    for r in range(N // 10):
        items = [("raw", PLACE, synthetic_batch("plc1", (10 * r + i) * 10**9, 100)) for i in range(10)]
        results = buf.append_many(items)
        assert len(results) == len(items)
        for res in results:
            dropped += res.dropped_samples + res.evicted_samples
            if res.id is not None:
                kept += PER
                ids.append(res.id)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert buf.stats.bytes <= buf.data_cap and dropped > 0
    assert buf.refresh_file_bytes() <= CAP
    fetched = buf.fetch("mqtt", N, 10**9)
    assert sum(r.samples for r in fetched) == N * PER - dropped == buf.sink_stats["mqtt"].backlog
    assert buf.sink_stats["mqtt"].dropped == dropped == buf.stats.dropped
    assert {r.id for r in fetched} <= set(ids)
    buf.close()


def test_append_many_stops_at_the_first_full_batch_under_block(tmp_path: Path) -> None:
    buf = _open(tmp_path / "b.db", ("mqtt",), max_bytes=CAP, policy="block")
    items = [("raw", PLACE, synthetic_batch("plc1", i * 10**9, 100)) for i in range(N)]
    results = buf.append_many(items)
    assert results[-1].full and all(r.id is not None for r in results[:-1]) and len(results) < N
    assert buf.stats.records == len(results) - 1 and buf.stats.dropped == 0
    buf.close()


def test_append_many_on_a_full_disk_drops_the_round_counted_and_recovers(tmp_path: Path) -> None:
    buf = _open(tmp_path / "b.db", ("mqtt",))
    _fill(buf, 3)
    pages = buf.db.execute("PRAGMA page_count").fetchone()[0]
    buf.db.execute(f"PRAGMA max_page_count={pages}")
    dropped = 0
    for r in range(20):
        items = [("raw", PLACE, synthetic_batch("plc1", (10 * r + i) * 10**9, 100)) for i in range(10)]
        dropped += sum(res.dropped_samples for res in buf.append_many(items))
    assert dropped >= 10 * PER and dropped == buf.stats.dropped == buf.sink_stats["mqtt"].dropped
    buf.db.execute("PRAGMA max_page_count=1073741823")
    res = buf.append_many([("raw", PLACE, synthetic_batch("plc1", 10**12 + i, 100)) for i in range(3)])
    assert [r.id is not None for r in res] == [True] * 3
    assert buf.sink_stats["mqtt"].backlog == sum(r.samples for r in buf.fetch("mqtt", 10**6, 10**9))
    buf.close()


def test_a_device_round_is_one_row_handed_out_per_asset_and_confirmed_when_all_are(tmp_path: Path) -> None:
    """Many assets of one device round: one encode and one row, one record per asset to the
    sinks; the row goes only when every asset's record is confirmed (or quarantined)."""
    buf = _open(tmp_path / "b.db", sinks=("mqtt",))
    batch = synthetic_batch("plc1", 10**9, 3, tags=5)
    places = tuple(Placement("s1", "a1", "l1", f"m{i}") for i in range(3))
    res = buf.append("raw", ((places[0], 2), (places[1], 1), (places[2], 2)), batch)
    assert res.id is not None and buf.stats.records == 1
    got = buf.fetch("mqtt", 10, 10**9)
    assert [(r.id, r.placement.asset, list(r.batch.values)) for r in got] == [
        (res.id, "m0", ["t0", "t1"]),
        (res.id, "m1", ["t2"]),
        (res.id, "m2", ["t3", "t4"]),
    ]
    assert got[1].batch.values["t2"].tolist() == batch.values["t2"].tolist()
    buf.confirm("mqtt", [got[0].id, got[2].id])
    assert buf.stats.records == 1 and buf.sink_stats["mqtt"].backlog == 15, "m1 is still in flight"
    buf.quarantine("mqtt", got[1], "refused")
    s = buf.sink_stats["mqtt"]
    assert buf.stats.records == 0 and s.backlog == 0
    assert (s.delivered, s.quarantined) == (12, 3)
    [q] = buf.quarantined("mqtt")
    assert q.record.placement.asset == "m1" and list(q.record.batch.values) == ["t2"]
    buf.close()


def test_a_round_appended_as_parts_reads_the_same_from_memory_and_from_disk(tmp_path: Path) -> None:
    """Sinks that keep up get the very batches appended (no decode); after a restart the same
    record decoded from disk hands out the same per-asset batches, values, quality and status."""
    round_ = synthetic_batch("plc1", 10**9, 4, tags=5)
    names = list(round_.values)
    parts = (round_.select(names[:2]), round_.select(names[2:3]), round_.select(names[3:]))
    places = tuple(Placement("s1", "a1", "l1", f"m{i}") for i in range(3))
    segments = tuple((p, len(b.values)) for p, b in zip(places, parts, strict=True))
    buf = _open(tmp_path / "b.db")
    res = buf.append("raw", segments, parts)
    assert res.id is not None and buf.stats.records == 1
    live = buf.fetch("mqtt", 10, 10**9)
    assert len(live) == 3 and all(r.batch is p for r, p in zip(live, parts, strict=True)), "not decoded"
    buf.close()
    buf = _open(tmp_path / "b.db")
    for sink in ("mqtt", "influxdb"):
        got = buf.fetch(sink, 10, 10**9)
        assert [(r.id, r.placement) for r in got] == [(res.id, p) for p in places]
        for rec, part in zip(got, parts, strict=True):
            assert rec.batch is not part and list(rec.batch.values) == list(part.values)
            assert rec.batch.ts.tolist() == part.ts.tolist()
            for tag in part.values:
                assert rec.batch.values[tag].tolist() == part.values[tag].tolist()
                assert rec.batch.quality[tag].tolist() == part.quality[tag].tolist()
            assert {t: s.tolist() for t, s in rec.batch.status.items()} == {
                t: s.tolist() for t, s in part.status.items()
            }
    buf.close()

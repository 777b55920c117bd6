"""Durable, byte-capped SQLite (WAL) buffer with one replay cursor per sink.

A batch is one row (columnar blob). Each sink reads forward from its own cursor and
confirms what it delivered; a row is deleted once every sink has confirmed it
(at-least-once). Each append is its own transaction, so once :meth:`append` returns the
batch survives ``kill -9`` (and power loss with ``synchronous: full``).

``max_bytes`` caps the whole file set on disk, not only the stored rows: the database is
opened in exclusive locking mode (no ``-shm`` file), the write-ahead log is checkpointed and
truncated well inside a budget, freed pages are returned with incremental vacuum, and the
file set is measured after every append; if it ever exceeds the cap, the cap on stored rows
shrinks by the excess so the policy applies from then on. A full disk (or any write error)
drops the incoming batch by count, logged once per episode, and the next append tries again.
A sink may have its own backlog limit (``SinkLimits``): past it, that sink alone skips its
oldest unread rows, so a dead sink never holds the shared buffer full for the others.

:class:`SyncBuffer` is the thread-confined core; :class:`DurableBuffer` runs it on one
worker thread for asyncio and adds waiting (new data, room under ``block``).
"""

from __future__ import annotations

__all__ = ["Appended", "DurableBuffer", "Entry", "SyncBuffer"]

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from edge_agent.batch import SampleBatch
from edge_agent.config import BufferConfig, SinkLimits
from edge_agent.delivery.codec import decode_batch, encode_batch
from edge_agent.delivery.quarantine import Quarantine, QuarantinedBatch
from edge_agent.delivery.record import (
    Kind,
    Placement,
    Record,
    Segments,
    place_from_json,
    place_json,
    sample_count,
)
from edge_agent.delivery.stats import BufferStats, SinkStats
from edge_agent.errors import BufferFullError
from edge_agent.runtime.instance_lock import InstanceLock

log = logging.getLogger("edge_agent.delivery.buffer")
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL, place TEXT NOT NULL,
    samples INTEGER NOT NULL, nbytes INTEGER NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS cursors(sink TEXT PRIMARY KEY, pos INTEGER NOT NULL);
"""
_SAVE_CURSOR = "INSERT INTO cursors(sink, pos) VALUES(?, ?) ON CONFLICT(sink) DO UPDATE SET pos=excluded.pos"
_ROW_OVERHEAD = 32  # rowid, integers and page slot of one batch row, counted against the cap
_BASE_PAGES = 12  # schema, cursors, sequence and quarantine pages of an empty buffer
_PAGE_FILL = 0.85  # rows fill SQLite's pages to about this share (headers, slack, free lists)
_ROOM_AGAIN = 0.8  # a full spell ends once stored bytes fall below this share of the cap
#: Records kept in memory, as the batches appended (or decoded once), so that sinks keeping up
#: never decode at all and every other sink shares one decode: at most this many samples
#: (a record may be one asset's poll or a whole device round). A sink further behind than
#: this decodes what it reads itself, so a dead sink does not grow the agent.
_KEPT_SAMPLES = 100_000


@dataclass(frozen=True, slots=True)
class Appended:
    """Outcome of one append: stored (with id), dropped (the batch itself) or full (policy block)."""

    id: int | None = None
    dropped_samples: int = 0  # samples of *this* batch not stored
    evicted_samples: int = 0  # older samples removed to make room (drop_oldest)
    full: bool = False


#: What the runtime submits: a batch with its kind and place in the namespace (or, for a
#: device round of many assets stored as one record, each asset's place and column count,
#: and either the round as one batch or its parts, one per asset).
Entry = tuple[Kind, Placement | Segments, SampleBatch | tuple[SampleBatch, ...]]


def _parts(
    place: Placement | Segments, batch: SampleBatch | tuple[SampleBatch, ...]
) -> tuple[SampleBatch, ...]:
    """The batches a record is handed out as: one, or one per asset of a device round."""
    if isinstance(batch, tuple):
        return batch
    if isinstance(place, Placement):
        return (batch,)
    # slices of the decoded round's columns (kept in record order by the codec), C-level
    names, cols, codes = list(batch.values), list(batch.values.values()), list(batch.quality.values())
    at, out = 0, []
    for _, k in place:
        out.append(batch.part(names[at : at + k], cols[at : at + k], codes[at : at + k]))
        at += k
    return tuple(out)


@dataclass(slots=True)
class _Rows:
    """Rows admitted but not yet inserted, with where their outcome goes."""

    values: list[tuple[Kind, str, int, int, bytes]] = field(default_factory=list)
    at: list[int] = field(default_factory=list)
    early: list[Appended | None] = field(default_factory=list)
    parts: list[tuple[SampleBatch, ...]] = field(default_factory=list)

    def add(
        self,
        row: tuple[Kind, str, int, int, bytes],
        at: int,
        early: Appended | None,
        parts: tuple[SampleBatch, ...],
    ) -> None:
        self.values.append(row)
        self.at.append(at)
        self.early.append(early)
        self.parts.append(parts)

    def clear(self) -> None:
        self.values.clear()
        self.at.clear()
        self.early.clear()
        self.parts.clear()


@dataclass(slots=True)
class _Cursor:
    """One sink's view: ``read`` = last id handed out; ``pending`` = handed out, not yet confirmed."""

    pos: int
    read: int
    # id -> [samples, nbytes, segments not yet confirmed, samples quarantined]
    pending: dict[int, list[int]] = field(default_factory=dict)

    @property
    def confirmed(self) -> int:
        return min(self.pending) - 1 if self.pending else self.read


def _is_full(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "full" in str(exc)


def _wal_budget(max_bytes: int) -> int:
    """Bytes the write-ahead log may use: an eighth of the cap, between 16 KiB and 4 MiB."""
    return max(16 * 1024, min(4 * 2**20, max_bytes // 8))


class SyncBuffer:
    """The buffer proper; not thread-safe, use from one thread (DurableBuffer does)."""

    #: A full spell (and its log line) ends once appends succeed for this long without a drop.
    episode_quiet_s = 5.0

    def __init__(
        self,
        config: BufferConfig,
        sinks: Sequence[str],
        stats: dict[str, SinkStats],
        limits: Mapping[str, SinkLimits] | None = None,
    ) -> None:
        self.config = config
        self.path = Path(config.path)
        self.sinks = list(sinks)
        self.sink_stats = stats
        self.limits = {s: lim for s, lim in (limits or {}).items() if s in self.sinks}
        self.stats = BufferStats()
        self._wal_budget = _wal_budget(config.max_bytes)
        self._quarantine_cap = min(config.quarantine_max_bytes, config.max_bytes // 8)
        self._page_size = 4096
        self.data_cap = config.max_bytes  # set in open(): what stored rows may use
        self._kept: OrderedDict[int, tuple[SampleBatch, ...]] = OrderedDict()
        self._kept_samples = 0
        self._io_failing = False
        self._lock = InstanceLock(self.path)
        self._files = [str(self.path) + suffix for suffix in ("", "-wal", "-shm")]
        self._appends = 0
        self._limited: set[str] = set()  # sinks currently past their own backlog limit
        self._db: sqlite3.Connection | None = None
        self._cursors: dict[str, _Cursor] = {}
        self._deleted_upto = 0
        self._quarantine: Quarantine | None = None
        self._episode: list[int] | None = None  # [samples, batches] dropped in the current full spell
        self._last_drop = 0.0  # monotonic time of the last drop: a spell ends after a quiet period

    # -- lifecycle -----------------------------------------------------------------------------
    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()  # before SQLite's own lock, so a second agent gets the holder's pid
        try:
            self._open()
        except sqlite3.OperationalError as exc:
            self._abandon()
            raise BufferFullError(
                f"buffer {self.path} cannot be opened: {exc}. Free disk space on its file system "
                "(or point buffer.path at a disk with room); stored data is left untouched."
            ) from exc
        except BaseException:
            self._abandon()
            raise

    def _abandon(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self._lock.release()

    def _open(self) -> None:
        new = not self.path.exists() or self.path.stat().st_size == 0
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db = db
        db.execute("PRAGMA locking_mode=EXCLUSIVE")  # one process per buffer: no -shm file
        if new:  # only a new file takes it (and on a full disk an old one must not be written here)
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # freed pages go back to the file system
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise BufferFullError(
                f"buffer {self.path}: SQLite refused WAL mode (got {mode!r}); put buffer.path on a local disk"
            )
        db.execute(f"PRAGMA synchronous={self.config.synchronous.upper()}")
        self._page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
        db.execute(f"PRAGMA journal_size_limit={self._wal_budget // 2}")
        db.execute(f"PRAGMA wal_autocheckpoint={max(4, self._wal_budget // 2 // (self._page_size + 24))}")
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(_SCHEMA)
        room = self.config.max_bytes - self._wal_budget - self._quarantine_cap - _BASE_PAGES * self._page_size
        self.data_cap = int(room * _PAGE_FILL)
        stored = dict(db.execute("SELECT sink, pos FROM cursors").fetchall())
        for gone in stored.keys() - set(self.sinks):
            log.info("buffer %s: sink %r is no longer configured; forgetting its cursor", self.path, gone)
            with contextlib.suppress(sqlite3.OperationalError):  # a full disk: forgotten next start
                db.execute("DELETE FROM cursors WHERE sink=?", (gone,))
        for sink in self.sinks:
            pos = int(stored.get(sink, 0))
            if sink not in stored:
                with contextlib.suppress(sqlite3.OperationalError):  # a full disk: saved at its first confirm
                    db.execute("INSERT INTO cursors(sink, pos) VALUES(?, ?)", (sink, pos))
            self._cursors[sink] = _Cursor(pos=pos, read=pos)
            st = self.sink_stats.setdefault(sink, SinkStats())
            samples, nbytes = db.execute(
                "SELECT COALESCE(SUM(samples),0), COALESCE(SUM(nbytes),0) FROM batches WHERE id>?", (pos,)
            ).fetchone()
            st.backlog, st.backlog_bytes = int(samples), int(nbytes)
        self._collect()
        self.stats.bytes, self.stats.records = (
            int(v) for v in db.execute("SELECT COALESCE(SUM(nbytes),0), COUNT(*) FROM batches").fetchone()
        )
        self._quarantine = Quarantine(db, self._quarantine_cap, str(self.path))
        self._shrink()

    def close(self) -> None:
        if self._db is not None:
            try:
                with contextlib.suppress(sqlite3.OperationalError):  # a full disk: the WAL stays, intact
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._db.close()
                self._db = None
                self._lock.release()

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"buffer {self.path} is not open")
        return self._db

    def refresh_file_bytes(self) -> int:
        total = 0
        for name in self._files:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(name).st_size
        self.stats.file_bytes = total
        return total

    # -- producer side -------------------------------------------------------------------------
    def append(self, kind: Kind, place: Placement, batch: SampleBatch) -> Appended:
        return self.append_many([(kind, place, batch)])[0]

    def append_many(self, items: Sequence[Entry]) -> list[Appended]:
        """Store ``items`` in order, in one transaction: the runtime hands one device round at once.

        Returns one outcome per item, up to and including the first ``full`` one (policy
        ``block``): the caller waits for room and hands the rest again.
        """
        out: list[Appended] = []
        rows = _Rows()
        for kind, place, batch in items:
            parts = _parts(place, batch)
            samples = sum(map(sample_count, parts))
            if samples == 0 or not self.sinks:  # nothing to store, or nothing would ever confirm it
                out.append(Appended())
                continue
            body = encode_batch(parts)
            place_text = place_json(place)
            nbytes = len(body) + len(place_text) + _ROW_OVERHEAD
            outcome = self._admit(nbytes, samples, parts[0].device, rows, out)
            if outcome is not None and outcome.id is None:  # dropped, or full under block
                out.append(outcome)
                if outcome.full:
                    break
                continue
            rows.add((kind, place_text, samples, nbytes, body), len(out), outcome, parts)
            out.append(Appended())
            self.stats.bytes += nbytes  # provisional, so the next item's room is counted right
        self._insert(rows, out)
        return out

    def _admit(
        self, nbytes: int, samples: int, device: str, unsaved: _Rows, out: list[Appended]
    ) -> Appended | None:
        """None if the batch fits; else its outcome (dropped, full, or fits after evicting: ``id`` 0)."""
        self._limit_sinks(nbytes)
        cap = self.data_cap
        if self.stats.bytes + nbytes <= cap:
            return None
        policy = self.config.policy
        if policy == "block":
            if nbytes > cap:
                raise BufferFullError(
                    f"buffer {self.path}: a batch of {nbytes} bytes from {device!r} is larger than "
                    f"the {cap} bytes buffer.max_bytes={self.config.max_bytes} leaves for data; "
                    "raise max_bytes or submit smaller batches"
                )
            return Appended(full=True)
        evicted = 0
        if policy == "drop_oldest" and nbytes <= cap:
            self._insert(unsaved, out)  # eviction works on what is on disk
            evicted = self._evict(self.stats.bytes + nbytes - cap)
        if self.stats.bytes + nbytes > cap:  # drop_newest, or nothing evictable left
            self._count_drop(samples, 1, {s: samples for s in self.sinks}, "the incoming batch")
            return Appended(dropped_samples=samples, evicted_samples=evicted)
        return Appended(id=0, evicted_samples=evicted)

    def _insert(self, rows: _Rows, out: list[Appended]) -> None:
        """Insert admitted rows in one transaction and fill in their outcomes; a full or failing
        disk drops them all, counted."""
        if not rows.values:
            return
        nbytes = sum(r[3] for r in rows.values)
        samples = sum(r[2] for r in rows.values)
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT INTO batches(kind, place, samples, nbytes, body) VALUES(?,?,?,?,?)", rows.values
            )
            last = int(db.execute("SELECT last_insert_rowid()").fetchone()[0])
            db.execute("COMMIT")
        except sqlite3.OperationalError as exc:  # disk full, or the disk failing: drop, count, go on
            with contextlib.suppress(sqlite3.Error):
                if db.in_transaction:
                    db.execute("ROLLBACK")
            self.stats.bytes -= nbytes
            what = "the incoming batch (disk full)" if _is_full(exc) else f"the incoming batch ({exc})"
            self._count_drop(samples, len(rows.values), {s: samples for s in self.sinks}, what)
            self._io_failing = True
            with contextlib.suppress(sqlite3.Error):  # give the WAL's space back if we can
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            for (_, _, n, _, _), at, early in zip(rows.values, rows.at, rows.early, strict=True):
                out[at] = Appended(dropped_samples=n, evicted_samples=early.evicted_samples if early else 0)
            rows.clear()
            return
        self._io_failing = False
        self.stats.records += len(rows.values)
        for s in self.sinks:
            st = self.sink_stats[s]
            st.backlog += samples
            st.backlog_bytes += nbytes
        if (
            self._episode is not None
            and self.stats.bytes <= _ROOM_AGAIN * self.data_cap
            and time.monotonic() - self._last_drop >= self.episode_quiet_s
        ):
            self._end_episode()
        first = last - len(rows.values) + 1  # AUTOINCREMENT in one transaction: consecutive ids
        for i, (at, early) in enumerate(zip(rows.at, rows.early, strict=True)):
            out[at] = Appended(id=first + i, evicted_samples=early.evicted_samples if early else 0)
        for i, (row, parts) in enumerate(zip(rows.values, rows.parts, strict=True)):
            self._keep(first + i, parts, row[2])  # the sinks read these, not a decode of them
        rows.clear()
        self._keep_inside_cap(nbytes)

    def _keep_inside_cap(self, nbytes: int) -> None:
        """Measure the file set; over the cap, checkpoint and vacuum, then lower the data cap.

        Far below the data cap the files cannot be near max_bytes (the WAL has its own budget),
        so there it is measured every 32nd append only.
        """
        self._appends += 1
        if self.stats.bytes < self.data_cap // 2 and self._appends % 32:
            return
        over = self.refresh_file_bytes() - self.config.max_bytes
        if over <= 0:
            return
        over = self._shrink() - self.config.max_bytes
        if over > 0:
            self.data_cap = max(nbytes, self.data_cap - over)
            log.info(
                "buffer %s: files use %d bytes, over max_bytes=%d; stored data now capped at %d bytes",
                self.path,
                self.stats.file_bytes,
                self.config.max_bytes,
                self.data_cap,
            )

    def _shrink(self) -> int:
        """Truncate the WAL and give free pages back to the file system; returns the new file-set size."""
        with contextlib.suppress(sqlite3.Error):
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.db.execute("PRAGMA incremental_vacuum")
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return self.refresh_file_bytes()

    def _limit_sinks(self, nbytes: int) -> None:
        """Sinks over their own backlog limit skip their oldest unread rows (policy drop_oldest)."""
        for sink, lim in self.limits.items():
            st = self.sink_stats[sink]
            need = st.backlog_bytes + nbytes - lim.max_backlog_bytes
            if need <= 0 or lim.when_full != "drop_oldest":
                continue
            cur = self._cursors[sink]
            skipped = freed = rows = 0
            last = cur.read
            for rid, samples, size in self.db.execute(
                "SELECT id, samples, nbytes FROM batches WHERE id>? ORDER BY id", (cur.read,)
            ):
                if freed >= need:
                    break
                last, skipped, freed, rows = rid, skipped + samples, freed + size, rows + 1
            if not rows:
                continue
            cur.read = last
            st.backlog_bytes -= freed
            st.backlog -= skipped
            st.dropped += skipped
            if sink not in self._limited:
                self._limited.add(sink)
                log.warning(
                    "sink %s is %d bytes behind, over its buffer.max_backlog_bytes=%d: it skips its oldest "
                    "batches (the other sinks keep theirs); check its connection",
                    sink,
                    st.backlog_bytes + freed,
                    lim.max_backlog_bytes,
                )
            self._collect()

    def _evict(self, need: int) -> int:
        """Delete the oldest rows no sink is currently sending until ``need`` bytes are free."""
        pinned: set[int] = set()
        for c in self._cursors.values():
            pinned.update(c.pending)
        victims: list[tuple[int, int, int]] = []
        freed = 0
        for rid, samples, nbytes in self.db.execute("SELECT id, samples, nbytes FROM batches ORDER BY id"):
            if rid in pinned:
                continue
            victims.append((rid, samples, nbytes))
            freed += nbytes
            if freed >= need:
                break
        if freed < need:
            return 0
        try:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("DELETE FROM batches WHERE id=?", [(v[0],) for v in victims])
            self.db.execute("COMMIT")
        except sqlite3.OperationalError:  # full disk: nothing evicted, the incoming batch is dropped
            with contextlib.suppress(sqlite3.Error):
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
            return 0
        self.stats.bytes -= freed
        self.stats.records -= len(victims)
        lost: dict[str, int] = dict.fromkeys(self.sinks, 0)
        total = 0
        for rid, samples, size in victims:
            unsent = [s for s in self.sinks if rid > self._cursors[s].read]
            for s in unsent:
                lost[s] += samples
                self.sink_stats[s].backlog_bytes -= size
            if unsent:
                total += samples
        self._count_drop(total, len(victims), lost, "the oldest batches", stored=True)
        return total

    def _count_drop(
        self, samples: int, batches: int, per_sink: dict[str, int], what: str, *, stored: bool = False
    ) -> None:
        for s, n in per_sink.items():
            self.sink_stats[s].dropped += n
            if stored:  # evicted rows were part of the backlog; an incoming batch never was
                self.sink_stats[s].backlog -= n
        self.stats.dropped += samples
        if self._episode is None:
            self._episode = [0, 0]
            log.warning(
                "buffer %s is full (%d of %d bytes, policy %s): dropping %s; %s. Totals are logged "
                "when room returns.",
                self.path,
                self.stats.bytes,
                self.config.max_bytes,
                self.config.policy,
                what,
                "free disk space" if "disk" in what else "delivery is behind, check the sinks' connections",
            )
        self._episode[0] += samples
        self._episode[1] += batches
        self._last_drop = time.monotonic()

    def _end_episode(self) -> None:
        assert self._episode is not None
        log.warning(
            "buffer %s has room again: %d samples in %d batches were dropped during this spell "
            "(%d dropped since start)",
            self.path,
            self._episode[0],
            self._episode[1],
            self.stats.dropped,
        )
        self._episode = None

    # -- sink side -----------------------------------------------------------------------------
    def fetch(self, sink: str, max_records: int, max_samples: int) -> list[Record]:
        cur = self._cursors[sink]
        rows = self.db.execute(
            "SELECT id, kind, place, samples, nbytes, body FROM batches WHERE id>? ORDER BY id LIMIT ?",
            (cur.read, max_records),
        ).fetchall()
        out: list[Record] = []
        total = 0
        for rid, kind, place_text, samples, nbytes, body in rows:
            if out and total + samples > max_samples:
                break
            place = place_from_json(place_text)
            parts = self._batches_of(sink, rid, place, body)
            if isinstance(place, Placement):
                out.append(Record(rid, kind, place, parts[0]))
            else:  # a device round: one record per asset, all confirmed before the row is
                out.extend(Record(rid, kind, p, b) for (p, _), b in zip(place, parts, strict=True))
            cur.pending[rid] = [samples, nbytes, len(parts), 0]
            cur.read = rid
            total += samples
        return out

    def _batches_of(
        self, sink: str, rid: int, place: Placement | Segments, body: bytes
    ) -> tuple[SampleBatch, ...]:
        """A record's batches: as appended while kept in memory, else decoded once for all the
        sinks still to read it (batches are immutable, so sharing is safe)."""
        parts = self._kept.get(rid)
        if parts is None:
            parts = _parts(place, decode_batch(body))
            if any(c.read < rid for s, c in self._cursors.items() if s != sink):
                self._keep(rid, parts, sum(map(sample_count, parts)))
        elif all(rid <= c.read for s, c in self._cursors.items() if s != sink):
            self._kept_samples -= sum(map(sample_count, self._kept.pop(rid)))  # the last reader
        return parts

    def _keep(self, rid: int, parts: tuple[SampleBatch, ...], samples: int) -> None:
        """Keep a record's batches for the sinks yet to read it, within ``_KEPT_SAMPLES``."""
        self._kept[rid] = parts
        self._kept_samples += samples
        while self._kept_samples > _KEPT_SAMPLES and self._kept:
            self._kept_samples -= sum(map(sample_count, self._kept.popitem(last=False)[1]))

    def confirm(self, sink: str, ids: Iterable[int], *, quarantined: int = 0) -> None:
        """``ids`` delivered (or, with ``quarantined`` samples, put aside) by ``sink``: one id per
        record handed out, so a device round's row counts once it has every asset's."""
        cur, st = self._cursors[sink], self.sink_stats[sink]
        for rid in ids:
            entry = cur.pending.get(rid)
            if entry is None:
                continue
            entry[2] -= 1
            entry[3] += quarantined
            if entry[2] > 0:
                continue
            del cur.pending[rid]
            samples, nbytes, _, put_aside = entry
            st.backlog -= samples
            st.backlog_bytes -= nbytes
            st.quarantined += put_aside
            st.delivered += samples - put_aside
        lim = self.limits.get(sink)
        if sink in self._limited and lim is not None and st.backlog_bytes <= lim.max_backlog_bytes // 2:
            self._limited.discard(sink)
            log.warning(
                "sink %s has caught up within its backlog limit (%d samples skipped so far)", sink, st.dropped
            )
        pos = cur.confirmed
        if pos > cur.pos:
            self._collect((sink, pos))

    def _collect(self, save: tuple[str, int] | None = None) -> None:
        """Save a sink's cursor (if given) and delete rows every sink has confirmed, in one transaction."""
        low = min((c.confirmed for c in self._cursors.values()), default=0)
        if low <= self._deleted_upto and save is None:
            return
        db = self.db
        freed = n = 0
        try:
            db.execute("BEGIN IMMEDIATE")
            if save is not None:
                db.execute(_SAVE_CURSOR, save)
            if low > self._deleted_upto:
                freed, n = db.execute(
                    "SELECT COALESCE(SUM(nbytes),0), COUNT(*) FROM batches WHERE id>? AND id<=?",
                    (self._deleted_upto, low),
                ).fetchone()
                db.execute("DELETE FROM batches WHERE id<=?", (low,))
            db.execute("COMMIT")
        except sqlite3.OperationalError as exc:  # full disk: cursor and deletions go at the next confirm
            with contextlib.suppress(sqlite3.Error):
                if db.in_transaction:
                    db.execute("ROLLBACK")
            log.debug("buffer %s: cursor/deletions not saved yet: %s", self.path, exc)
            return
        if save is not None:
            self._cursors[save[0]].pos = save[1]
        self._deleted_upto = max(self._deleted_upto, low)
        self.stats.bytes -= int(freed)
        self.stats.records -= int(n)

    def quarantine(self, sink: str, record: Record, reason: str) -> None:
        """Keep a batch a sink can never deliver for inspection, then move that sink past it."""
        assert self._quarantine is not None
        self.db.execute("BEGIN IMMEDIATE")
        self._quarantine.add(sink, record, reason)
        self.db.execute("COMMIT")
        self.confirm(sink, [record.id], quarantined=record.samples)

    def quarantined(self, sink: str | None = None) -> list[QuarantinedBatch]:
        assert self._quarantine is not None
        return self._quarantine.list(sink)

    def rewind(self, sink: str) -> None:
        """Forget what ``sink`` has in flight so it is fetched again (after its loop failed)."""
        cur, st = self._cursors[sink], self.sink_stats[sink]
        cur.read = cur.confirmed
        cur.pending.clear()
        samples, nbytes = self.db.execute(
            "SELECT COALESCE(SUM(samples),0), COALESCE(SUM(nbytes),0) FROM batches WHERE id>?", (cur.read,)
        ).fetchone()
        st.backlog, st.backlog_bytes = int(samples), int(nbytes)

    def has_unread(self, sink: str) -> bool:
        cur = self._cursors[sink]
        return self.db.execute("SELECT 1 FROM batches WHERE id>? LIMIT 1", (cur.read,)).fetchone() is not None


class DurableBuffer:
    """Asyncio face of :class:`SyncBuffer`: every SQLite call runs on one dedicated thread."""

    def __init__(
        self,
        config: BufferConfig,
        sinks: Sequence[str],
        stats: dict[str, SinkStats],
        limits: Mapping[str, SinkLimits] | None = None,
    ) -> None:
        self.core = SyncBuffer(config, sinks, stats, limits)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge-agent-buffer")
        self._new = {s: asyncio.Event() for s in sinks}
        self._room = asyncio.Event()

    @property
    def stats(self) -> BufferStats:
        return self.core.stats

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def open(self) -> None:
        await self._run(self.core.open)
        for ev in self._new.values():
            ev.set()

    async def close(self) -> None:
        try:
            await self._run(self.core.close)
        finally:
            self._executor.shutdown(wait=True)

    async def append(self, kind: Kind, place: Placement, batch: SampleBatch) -> Appended:
        """Store durably; under ``block`` wait up to block_timeout for the sinks to make room."""
        return (await self.append_many([(kind, place, batch)]))[0]

    async def append_many(self, items: Sequence[Entry]) -> list[Appended]:
        """Store ``items`` durably in order, in one transaction per try (see ``append``)."""
        deadline: float | None = None
        loop = asyncio.get_running_loop()
        done: list[Appended] = []
        while True:
            self._room.clear()
            res = await self._run(self.core.append_many, items[len(done) :])
            if any(r.id is not None for r in res):
                for ev in self._new.values():
                    ev.set()
            if not res or not res[-1].full:
                return done + res
            done += res[:-1]
            if deadline is None:
                self.core.stats.blocked += 1
                deadline = loop.time() + self.core.config.block_timeout
            remaining = deadline - loop.time()
            if remaining <= 0:
                rest = [b for _, place, batch in items[len(done) :] for b in _parts(place, batch)]
                device, left = rest[0].device, sum(map(sample_count, rest))
                raise BufferFullError(
                    f"buffer {self.core.path} stayed full ({self.core.stats.bytes} of "
                    f"{self.core.config.max_bytes} bytes) for "
                    f"block_timeout={self.core.config.block_timeout}s; "
                    f"the batch from {device!r} was not stored. The sinks are not delivering: check "
                    "their connections, or raise buffer.max_bytes / choose a drop policy.",
                    samples=left,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), remaining)

    async def fetch(self, sink: str, max_records: int, max_samples: int) -> list[Record]:
        """Next records for ``sink``, waiting until there are some."""
        ev = self._new[sink]
        while True:
            await ev.wait()
            ev.clear()
            recs = await self._run(self.core.fetch, sink, max_records, max_samples)
            if recs:
                ev.set()  # there may be more
                return recs

    async def confirm(self, sink: str, ids: Sequence[int]) -> None:
        await self._run(self.core.confirm, sink, ids)
        self._room.set()

    async def quarantine(self, sink: str, record: Record, reason: str) -> None:
        await self._run(self.core.quarantine, sink, record, reason)
        self._room.set()

    async def rewind(self, sink: str) -> None:
        await self._run(self.core.rewind, sink)
        self._new[sink].set()

    async def refresh_file_bytes(self) -> int:
        return await self._run(self.core.refresh_file_bytes)

"""What the analytics needs to continue after the agent restarts, kept beside the buffer.

A kill -9, an upgrade or a power cut must not cost the KPIs: the last counter readings let
the first delta after the restart recover the energy and parts made while the agent was
down (booked in the ``unknown`` state — unattributed — with the gap counted), and the open
windows continue, so a window reported twice is always the fuller one.

The file ``<buffer>.analytics-state`` is a small SQLite database with one row per asset in
two tables: ``asset`` (its :class:`StreamingAnalytics`, with a digest of the config inputs
it was built from) and ``held`` (its held rows). A stream changes only when its rows are
booked, once a hold, so the saves in between write only the held rows; in their own table,
because SQLite rewrites a whole row when a value in it changes size, and a stream with a
15-min demand history is ~33 kB (one table: 138 µs a held-rows write, two: 12 µs). Then
the outbox of KPI windows closed but not yet handed to delivery.
Saving is per asset, because a plant's state is thousands of assets and a window closes
for a few of them at a time: when a window closes, only the assets whose windows closed are
written (in one transaction with the windows they closed, replayed after a crash before
their hand-over, so a window is never lost and an emitted one is never open again in the
saved state); every ``interval`` seconds a periodic pass writes the assets changed since
(spaced further when that is big, so saving costs at most 2 % of the time; the closing saves
in between do not postpone it, so a crash loses at most that long of an asset's rows, held
or booked); and everything at shutdown. Never per poll. A pass is written in chunks of
``_PASS_CHUNK`` assets, one per device round (:meth:`periodic_chunk`): pickling 5,000 assets
at once held the event loop for a second, and every device skipped a poll.

A row whose digest no longer matches its asset's config (tags, thresholds or the analytics
section changed) is ignored: that asset starts clean, the others continue. A missing,
corrupt or foreign file (an older format, bit rot) means a clean start with one warning,
never a crash. Loading only accepts edge_agent and numpy types. The database runs in WAL
mode with ``synchronous=NORMAL``: a crash of the agent loses nothing committed, a power cut
at most the last saves (the file stays consistent).
"""

from __future__ import annotations

__all__ = ["AnalyticsStateStore"]

import asyncio
import io
import logging
import pickle
import sqlite3
import threading
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.config import AgentConfig

log = logging.getLogger("edge_agent.agent")

#: v3: SQLite, one row per asset; v4: stream and rows pickled apart; v5: in two tables
_FORMAT = "edge-agent analytics state v5"
_FORMAT_V4 = "edge-agent analytics state v4"  # migrated in place on open
_SQLITE_MAGIC = b"SQLite format 3\x00"
_ALLOWED = ("edge_agent.", "numpy", "builtins", "collections", "datetime", "zoneinfo", "copyreg")
_META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS asset (id TEXT PRIMARY KEY, inputs BLOB NOT NULL, stream BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS held (id TEXT PRIMARY KEY, rows BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, item BLOB NOT NULL)",
)
#: v4 → v5: the held rows move to their own table (SQLite cannot drop a column before 3.35)
_MIGRATE_V4 = (
    "CREATE TABLE held (id TEXT PRIMARY KEY, rows BLOB NOT NULL)",
    "INSERT INTO held SELECT id, rows FROM asset",
    "CREATE TABLE asset_v5 (id TEXT PRIMARY KEY, inputs BLOB NOT NULL, stream BLOB NOT NULL)",
    "INSERT INTO asset_v5 SELECT id, inputs, stream FROM asset",
    "DROP TABLE asset",
    "ALTER TABLE asset_v5 RENAME TO asset",
    f"UPDATE meta SET value = '{_FORMAT}' WHERE key = 'format'",
)


class _Unpickler(pickle.Unpickler):
    """Only the types the analytics state is made of: a tampered file cannot run code."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in ("eval", "exec", "compile", "open", "__import__", "getattr"):
            raise pickle.UnpicklingError(f"refusing builtins.{name}")
        if not module.startswith(_ALLOWED):
            raise pickle.UnpicklingError(f"refusing type {module}.{name}")
        return super().find_class(module, name)


def _loads(blob: bytes) -> Any:
    return _Unpickler(io.BytesIO(blob)).load()


def _dumps(obj: object) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


#: Periodic saves are spaced so that pickling takes at most 1/50 (2 %) of the time.
_COST_SHARE = 50
#: :meth:`AnalyticsStateStore.save_async` gives the event loop a turn this often (s) while it pickles.
_TURN_S = 0.002
#: Assets a periodic pass writes per device round (about 10 ms of pickling: the round
#: holds the event loop meanwhile, and the pollers wait for their turn).
_PASS_CHUNK = 50


@dataclass(frozen=True, slots=True)
class _Save:
    """One save, pickled: what :meth:`AnalyticsStateStore._write` writes in one transaction."""

    busy_s: float  # seconds spent pickling (not the pauses)
    items: list[tuple[str, bytes, bytes]]
    held_items: list[tuple[str, bytes]]
    outbox: list[tuple[bytes]]
    keep: set[str] | None  # every asset of the config: remove the others' rows
    periodic: bool
    streams: list[str]  # assets whose stream is written
    missing: list[str]  # assets with held rows whose stream is in neither the save nor the file


def _pauses(pickling: Generator[None, None, _Save], into: list[_Save]) -> Generator[None, None, None]:
    """The pauses of a :meth:`AnalyticsStateStore._prepare`; its save is appended to ``into``."""
    into.append((yield from pickling))


class _Damaged(Exception):
    """The file is not a state database of this format (why: the message)."""


class AnalyticsStateStore:
    """Saves and restores the analytics state of one agent (see the module docstring).

    The state it takes and gives back is :meth:`AnalyticsStage.state`'s dict: ``streams``
    and ``rows`` by asset, ``inputs`` (each asset's config digest) and ``outbox``.
    """

    def __init__(self, path: Path, *, interval: float = 5.0) -> None:
        self.path = path
        self.interval = interval
        self._db: sqlite3.Connection | None = None
        self._last_save = 0.0  # when the last periodic pass started
        self._spacing = interval
        self._pass: list[str] = []  # assets of the periodic pass still to write
        self._pass_cost = 0.0  # seconds its chunks took so far
        self._failing = False
        self._writing = threading.Lock()  # one transaction at a time (see _write)
        self.saves = 0
        #: Assets whose rows a save could not update because their stream was never written
        #: (a fresh file): the next save of them must include their stream.
        self.missing_streams: set[str] = set()
        self._streams_in_file: set[str] = set()  # assets whose stream is in the file (load, saves)

    @classmethod
    def beside_buffer(cls, config: AgentConfig) -> AnalyticsStateStore:
        buf = config.buffer.path
        return cls(buf.with_name(buf.name + ".analytics-state"))

    # ---- the database ----------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        """The connection, created with its schema on first use; raises _Damaged for a file
        that is not a state database of this format."""
        if self._db is not None:
            return self._db
        if self.path.exists():
            with open(self.path, "rb") as f:
                head = f.read(len(_SQLITE_MAGIC))
            if head and head != _SQLITE_MAGIC:
                older = head.startswith(b"edge-agent")
                raise _Damaged("written by an older agent version" if older else "not a state database")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_META)
            row = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
            if row is not None and row[0] == _FORMAT_V4:
                with db:  # one transaction: a crash midway leaves the v4 file as it was
                    db.execute("BEGIN")
                    for stmt in _MIGRATE_V4:
                        db.execute(stmt)
            elif row is not None and row[0] != _FORMAT:
                raise _Damaged(f"of another format ({row[0]!r})")
            for stmt in _SCHEMA:
                db.execute(stmt)
            if row is None:
                db.execute("INSERT INTO meta VALUES ('format', ?)", (_FORMAT,))
        except sqlite3.DatabaseError as exc:
            db.close()
            raise _Damaged(str(exc)) from exc
        except _Damaged:
            db.close()
            raise
        self._db = db
        return db

    def _discard(self) -> None:
        """Remove a damaged or foreign file (and its WAL) so the next save starts a fresh one."""
        self.close()
        self._streams_in_file.clear()
        for suffix in ("", "-wal", "-shm"):
            self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # ---- load and save ---------------------------------------------------------------------
    def load(self) -> dict[str, Any] | None:
        """The saved state, or None (clean start; warned once unless the file is simply new).

        An asset whose row cannot be read is left out with a warning; the others continue.
        """
        if not self.path.exists():
            log.warning("no analytics state at %s: KPIs start clean (normal on the first start)", self.path)
            return None
        try:
            db = self._open()
            rows = db.execute(
                "SELECT asset.id, inputs, stream, rows FROM asset LEFT JOIN held ON held.id = asset.id"
            ).fetchall()
            outbox_rows = db.execute("SELECT item FROM outbox ORDER BY seq").fetchall()
        except (_Damaged, sqlite3.DatabaseError, OSError) as exc:
            log.warning(
                "analytics state %s is damaged or from another agent version (%s): KPIs start clean "
                "(energy made while the agent was down is not recovered this once)",
                self.path,
                exc,
            )
            self._discard()
            return None
        streams: dict[str, Any] = {}
        held: dict[str, Any] = {}
        inputs: dict[str, bytes] = {}
        damaged: list[str] = []
        self._streams_in_file = {asset_id for asset_id, *_ in rows}
        for asset_id, digest, stream_blob, rows_blob in rows:
            try:
                streams[asset_id] = _loads(stream_blob)
                held[asset_id] = None if rows_blob is None else _loads(rows_blob)
            except Exception:  # truncated, bit rot, tampering: this asset starts clean
                damaged.append(asset_id)
                continue
            inputs[asset_id] = bytes(digest)
        outbox = []
        for (blob,) in outbox_rows:
            try:
                outbox.append(_loads(blob))
            except Exception:
                damaged.append("the outbox")
        if damaged:
            log.warning(
                "analytics state %s is damaged for %s: those start clean, the others continue",
                self.path,
                ", ".join(damaged[:10]) + (" …" if len(damaged) > 10 else ""),
            )
        return {"streams": streams, "rows": held, "inputs": inputs, "outbox": outbox}

    def periodic_chunk(self, changed: Callable[[], Iterable[str]]) -> list[str]:
        """The assets the periodic save writes now: the next chunk of the pass under way, or,
        when a pass is due, the first chunk of a new one over ``changed()``; else none. Save
        them with ``periodic=True``."""
        if not self._pass:
            if not self.due():
                return []
            self._last_save = time.monotonic()
            self._pass, self._pass_cost = sorted(changed()), 0.0
        chunk, self._pass = self._pass[:_PASS_CHUNK], self._pass[_PASS_CHUNK:]
        return chunk

    def save(
        self, state: dict[str, Any], *, keep_only: Iterable[str] | None = None, periodic: bool = False
    ) -> None:
        """Write the assets in ``state`` and replace the outbox, in one transaction.

        ``state["rows"]`` may name assets absent from ``state["streams"]``: their stream is
        unchanged since it was saved, and only their held rows are written (one whose stream
        was never written, as in a fresh file, is put in :attr:`missing_streams`).
        Assets not in ``state`` keep their saved rows; ``keep_only`` (every asset of the
        config) removes the rows of assets no longer configured. ``periodic``: a chunk of
        the periodic pass (:meth:`periodic_chunk`), whose cost spaces the next pass. Other
        saves (the assets whose windows just closed, the full save at shutdown) leave the
        periodic clock alone: with held rows the assets' slots are staggered, so some window
        closes every few seconds, and if each of those saves restarted the clock, the
        periodic save of every other changed asset never came — a crash then lost up to a
        hold of their rows (issue #13: a counter restart in those rows was seen, after the
        restart, as a jump over the whole downtime).
        """
        done: list[_Save] = []
        for _ in _pauses(self._prepare(state, keep_only, periodic), done):
            pass
        self._finish(done[0], self._write(done[0]))

    async def save_async(
        self, state: dict[str, Any], *, keep_only: Iterable[str] | None = None, periodic: bool = False
    ) -> None:
        """:meth:`save`, giving the event loop a turn every few ms while it pickles, and with
        the database write in a worker thread. The assets whose windows closed in a round
        are a hundred streams and windows to pickle at 50,000 tags, and a write of big
        streams, or a WAL checkpoint, took 15-70 ms: the pollers' Modbus turns waited for
        both. The objects must not change until this returns (the caller holds the round)."""
        done: list[_Save] = []
        for _ in _pauses(self._prepare(state, keep_only, periodic), done):
            await asyncio.sleep(0)
        self._finish(done[0], await asyncio.to_thread(self._write, done[0]))

    def _prepare(
        self, state: dict[str, Any], keep_only: Iterable[str] | None, periodic: bool
    ) -> Generator[None, None, _Save]:
        """Everything the write needs, pickled in the caller's thread; pauses (yields) every
        ``_TURN_S`` of pickling, and returns the save."""
        busy = 0.0
        turn = time.perf_counter()
        streams, held, inputs = state["streams"], state.get("rows", {}), state.get("inputs", {})
        # an asset whose stream has not changed since it was saved: its held rows only (if
        # its stream is in the file: held rows without their stream could not continue)
        in_file = self._streams_in_file
        rows_only = [a for a in held if a not in streams and a in in_file]
        items: list[tuple[str, bytes, bytes]] = []
        held_items: list[tuple[str, bytes]] = []
        outbox: list[tuple[bytes]] = []
        # an asset's stream and held rows are pickled together (no pause between them), so
        # each asset is saved as it stood at one instant
        for asset_id in [*streams, *rows_only]:
            if asset_id in streams:
                items.append((asset_id, inputs.get(asset_id, b""), _dumps(streams[asset_id])))
            held_items.append((asset_id, _dumps(held.get(asset_id))))
            if time.perf_counter() - turn > _TURN_S:
                busy += time.perf_counter() - turn
                yield
                turn = time.perf_counter()
        for item in state.get("outbox", []):  # closed windows: they never change
            outbox.append((_dumps(item),))
            if time.perf_counter() - turn > _TURN_S:
                busy += time.perf_counter() - turn
                yield
                turn = time.perf_counter()
        return _Save(
            busy + time.perf_counter() - turn,
            items,
            held_items,
            outbox,
            None if keep_only is None else set(keep_only),
            periodic,
            list(streams),
            [a for a in held if a not in streams and a not in in_file],
        )

    def _write(self, job: _Save) -> float | None:
        """One transaction: the CPU seconds it took (this thread's: in a worker thread the
        wall time counts the event loop's work too), or None (logged once) when the file cannot
        be written. Serialised: a save in a worker thread may still run when the agent stops
        and saves once more."""
        with self._writing:
            started = time.thread_time()
            try:
                try:
                    db = self._open()
                except _Damaged:
                    self._discard()
                    db = self._open()
                with db:
                    db.execute("BEGIN")
                    db.executemany("INSERT OR REPLACE INTO asset VALUES (?, ?, ?)", job.items)
                    db.executemany("INSERT OR REPLACE INTO held VALUES (?, ?)", job.held_items)
                    db.execute("DELETE FROM outbox")
                    db.executemany("INSERT INTO outbox (item) VALUES (?)", job.outbox)
                    if job.keep is not None:
                        gone = [(a,) for (a,) in db.execute("SELECT id FROM asset") if a not in job.keep]
                        db.executemany("DELETE FROM asset WHERE id = ?", gone)
                        db.executemany("DELETE FROM held WHERE id = ?", gone)
                        self._streams_in_file.difference_update(a for (a,) in gone)
            except (sqlite3.Error, OSError, _Damaged) as exc:
                if not self._failing:
                    log.warning(
                        "cannot save the analytics state to %s (%s); measuring goes on, but a restart "
                        "now would start the KPIs clean. Free space or fix permissions there.",
                        self.path,
                        exc,
                    )
                self._failing = True
                self.close()
                return None
            return time.thread_time() - started

    def _finish(self, job: _Save, write_s: float | None) -> None:
        # Periodic saves may cost at most 1/_COST_SHARE of the time: thousands of assets
        # make them big, and continuity must never eat the gateway's CPU. Their cost is the
        # pickling and the write, not the pauses between them (other tasks' time).
        if job.periodic:
            self._pass_cost += job.busy_s + (write_s or 0.0)
            if not self._pass:  # the pass is complete
                self._spacing = max(self.interval, _COST_SHARE * self._pass_cost)
        if write_s is None:
            return
        self._streams_in_file.update(job.streams)
        self.missing_streams.difference_update(job.streams)
        self.missing_streams.update(job.missing)
        if self._failing:
            log.info("analytics state saved again to %s", self.path)
        self._failing = False
        self.saves += 1

    def due(self) -> bool:
        """True when a periodic pass is due (``interval`` after the last one started, or
        longer when those are big)."""
        return time.monotonic() - self._last_save >= self._spacing

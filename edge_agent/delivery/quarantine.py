"""Quarantine table: batches a destination refused for good, kept for inspection, capped in bytes."""

from __future__ import annotations

__all__ = ["Quarantine", "QuarantinedBatch", "RejectedMessage"]


import logging
import sqlite3
import time
from dataclasses import dataclass

from edge_agent.delivery.codec import decode_batch, encode_batch
from edge_agent.delivery.record import Placement, Record, place_from_json, place_json

log = logging.getLogger("edge_agent.delivery.quarantine")

SCHEMA = """
CREATE TABLE IF NOT EXISTS quarantine(
    id INTEGER PRIMARY KEY AUTOINCREMENT, sink TEXT NOT NULL, batch_id INTEGER NOT NULL,
    kind TEXT NOT NULL, place TEXT NOT NULL, samples INTEGER NOT NULL, reason TEXT NOT NULL,
    at_ns INTEGER NOT NULL, nbytes INTEGER NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS rejected(
    id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, reason TEXT NOT NULL,
    at_ns INTEGER NOT NULL, nbytes INTEGER NOT NULL, payload BLOB NOT NULL);
"""


def _one_place(text: str) -> Placement:
    """A quarantined record is one asset's batch (a device round's segment), never a group."""
    place = place_from_json(text)
    if not isinstance(place, Placement):
        raise ValueError(f"quarantine row has a device round's place {text[:80]!r}; expected one asset's")
    return place


@dataclass(frozen=True, slots=True)
class QuarantinedBatch:
    id: int
    sink: str
    reason: str
    at_ns: int
    record: Record


@dataclass(frozen=True, slots=True)
class RejectedMessage:
    """A message ingest could not decode or validate, kept byte for byte with the reason."""

    id: int
    topic: str
    reason: str
    at_ns: int
    payload: bytes


class Quarantine:
    """Lives in a caller's SQLite connection; the caller owns transactions and threads."""

    def __init__(self, db: sqlite3.Connection, max_bytes: int, where: str) -> None:
        self.db, self.max_bytes, self.where = db, max_bytes, where
        db.executescript(SCHEMA)
        self.bytes = sum(
            int(db.execute(f"SELECT COALESCE(SUM(nbytes),0) FROM {t}").fetchone()[0])
            for t in ("quarantine", "rejected")
        )

    def add(self, sink: str, record: Record, reason: str) -> None:
        """Insert (inside the caller's transaction), discarding the oldest rows beyond the cap."""
        body = encode_batch(record.batch)
        nbytes = len(body) + 32
        self.db.execute(
            "INSERT INTO quarantine(sink, batch_id, kind, place, samples, reason, at_ns, nbytes, body) "
            "VALUES(?,?,?,?,?,?,?,?,?)",
            (
                sink,
                record.id,
                record.kind,
                place_json(record.placement),
                record.samples,
                reason,
                time.time_ns(),
                nbytes,
                body,
            ),
        )
        self.bytes += nbytes
        self._trim()

    def reject(self, topic: str, payload: bytes, reason: str) -> None:
        """Keep a message that never became a batch (bad JSON, schema, timestamps), with its reason."""
        nbytes = len(payload) + len(topic) + len(reason) + 32
        self.db.execute(
            "INSERT INTO rejected(topic, reason, at_ns, nbytes, payload) VALUES(?,?,?,?,?)",
            (topic, reason, time.time_ns(), nbytes, payload),
        )
        self.bytes += nbytes
        self._trim()

    def _trim(self) -> None:
        """Discard the oldest rows of either table while over the cap."""
        while self.bytes > self.max_bytes:
            rows = [
                (t, *r)
                for t in ("quarantine", "rejected")
                for r in self.db.execute(f"SELECT id, nbytes, at_ns FROM {t} ORDER BY id LIMIT 1")
            ]
            if not rows:
                break
            table, rid, nbytes, _ = min(rows, key=lambda r: r[3])
            self.db.execute(f"DELETE FROM {table} WHERE id=?", (rid,))
            self.bytes -= int(nbytes)
            log.warning(
                "%s: quarantine is over its %d-byte cap, discarded %s row %d",
                self.where,
                self.max_bytes,
                table,
                rid,
            )

    def rejected(self) -> list[RejectedMessage]:
        cur = self.db.execute("SELECT id, topic, reason, at_ns, payload FROM rejected ORDER BY id")
        return [RejectedMessage(i, t, r, a, bytes(p)) for i, t, r, a, p in cur.fetchall()]

    def list(self, sink: str | None = None) -> list[QuarantinedBatch]:
        q = "SELECT id, sink, reason, at_ns, batch_id, kind, place, body FROM quarantine"
        cur = (
            self.db.execute(q + " WHERE sink=? ORDER BY id", (sink,))
            if sink
            else self.db.execute(q + " ORDER BY id")
        )
        return [
            QuarantinedBatch(qid, s, reason, at, Record(bid, kind, _one_place(place), decode_batch(body)))
            for qid, s, reason, at, bid, kind, place, body in cur.fetchall()
        ]

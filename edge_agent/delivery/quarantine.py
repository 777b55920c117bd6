"""Quarantine table: batches a destination refused for good, kept for inspection, capped in bytes."""

from __future__ import annotations

__all__ = ["Quarantine", "QuarantinedBatch"]

import json
import logging
import sqlite3
import time
from dataclasses import dataclass

from edge_agent.delivery.codec import decode_batch, encode_batch
from edge_agent.delivery.record import Placement, Record

log = logging.getLogger("edge_agent.delivery.quarantine")

SCHEMA = """
CREATE TABLE IF NOT EXISTS quarantine(
    id INTEGER PRIMARY KEY AUTOINCREMENT, sink TEXT NOT NULL, batch_id INTEGER NOT NULL,
    kind TEXT NOT NULL, place TEXT NOT NULL, samples INTEGER NOT NULL, reason TEXT NOT NULL,
    at_ns INTEGER NOT NULL, nbytes INTEGER NOT NULL, body BLOB NOT NULL);
"""


def place_json(p: Placement) -> str:
    return json.dumps([p.site, p.area, p.line, p.asset, p.window])


def place_from_json(text: str) -> Placement:
    site, area, line, asset, window = json.loads(text)
    return Placement(site, area, line, asset, window)


@dataclass(frozen=True, slots=True)
class QuarantinedBatch:
    id: int
    sink: str
    reason: str
    at_ns: int
    record: Record


class Quarantine:
    """Lives in a caller's SQLite connection; the caller owns transactions and threads."""

    def __init__(self, db: sqlite3.Connection, max_bytes: int, where: str) -> None:
        self.db, self.max_bytes, self.where = db, max_bytes, where
        db.executescript(SCHEMA)
        self.bytes = int(db.execute("SELECT COALESCE(SUM(nbytes),0) FROM quarantine").fetchone()[0])

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
        while self.bytes > self.max_bytes:
            row = self.db.execute("SELECT id, nbytes FROM quarantine ORDER BY id LIMIT 1").fetchone()
            if row is None:
                break
            self.db.execute("DELETE FROM quarantine WHERE id=?", (row[0],))
            self.bytes -= int(row[1])
            log.warning(
                "%s: quarantine is over its %d-byte cap, discarded quarantined row %d",
                self.where,
                self.max_bytes,
                row[0],
            )

    def list(self, sink: str | None = None) -> list[QuarantinedBatch]:
        q = "SELECT id, sink, reason, at_ns, batch_id, kind, place, body FROM quarantine"
        cur = (
            self.db.execute(q + " WHERE sink=? ORDER BY id", (sink,))
            if sink
            else self.db.execute(q + " ORDER BY id")
        )
        return [
            QuarantinedBatch(
                qid, s, reason, at, Record(bid, kind, place_from_json(place), decode_batch(body))
            )
            for qid, s, reason, at, bid, kind, place, body in cur.fetchall()
        ]

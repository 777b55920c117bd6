"""Local SQLite store sink: every sample queryable on the gateway without any server.

A long table keyed by (kind, asset, source, name, ts) so re-delivery overwrites, like
InfluxDB does; ``source`` is the device for raw samples and the window for KPIs.
Bad and Missing cells are stored with a NULL value and their quality code.
"""

from __future__ import annotations

__all__ = ["StoreSink"]

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_agent.batch import Quality
from edge_agent.delivery.record import Record
from edge_agent.delivery.sink import Sink
from edge_agent.errors import TransientSinkError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples(
    kind TEXT NOT NULL, site TEXT NOT NULL, area TEXT NOT NULL, line TEXT NOT NULL, asset TEXT NOT NULL,
    source TEXT NOT NULL, name TEXT NOT NULL, ts INTEGER NOT NULL, value REAL, quality INTEGER NOT NULL,
    PRIMARY KEY (kind, asset, source, name, ts)) WITHOUT ROWID;
"""


class StoreSink(Sink):
    max_records = 1000
    max_samples = 50_000

    def __init__(self, path: Path, *, name: str = "store") -> None:
        self.name = name
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    async def stop(self) -> None:
        if self._db is not None:
            self._db.close()

    def _write(self, records: Sequence[Record]) -> None:
        assert self._db is not None, "StoreSink used before start()"
        rows: list[tuple[object, ...]] = []
        for rec in records:
            p, b = rec.placement, rec.batch
            source = b.device if rec.kind == "raw" else (p.window or "")
            ts = b.ts.tolist()
            for tag, arr in b.values.items():
                q = b.quality[tag]
                vals: list[object] = arr.astype(np.float64).tolist()
                for i in np.flatnonzero(q >= Quality.BAD).tolist():
                    vals[i] = None
                head = (rec.kind, p.site, p.area, p.line, p.asset, source, tag)
                rows.extend((*head, t, v, qq) for t, v, qq in zip(ts, vals, q.tolist(), strict=True))
        try:
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO samples VALUES(?,?,?,?,?,?,?,?,?,?)", rows)
        except sqlite3.OperationalError as exc:
            raise TransientSinkError(f"store {self.path}: {exc}") from exc

    async def send(self, records: Sequence[Record]) -> None:
        await asyncio.to_thread(self._write, records)

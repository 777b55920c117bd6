"""Gather (timestamp, tag, value, status) samples and turn them into one columnar SampleBatch.

Polls and data-change notifications feed the same log, so both paths share one quality and
scaling code path. Conversion is deferred to :meth:`SampleLog.drain`, where it is done with
numpy over all samples at once instead of per notification in the publish callback.
"""

from __future__ import annotations

__all__ = ["SampleLog", "TagLayout"]

import logging
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_agent.batch import Quality, SampleBatch
from edge_agent.config.model import TagConfig
from edge_agent.drivers.opcua.quality import as_float, as_int, qualities

log = logging.getLogger("edge_agent.drivers.opcua")


#: Distinct texts a device's state tags may show; beyond this a new text reads as Bad.
MAX_TEXTS = 1024
#: Status of a "fill" cell: no new sample, the tag holds its last value here (see drain).
FILL = 0xFFFFFFFF


class TagLayout:
    """Per-tag column facts compiled once: name, exact-integer (counter) or scaled float.

    ``hold`` marks subscribed tags: a server reports them only on change, so between changes
    they hold their last value (and its quality and status) in every row of the device.

    ``text`` marks PLC state tags: a PLC may serve its state as a String node ("RUN"). Such a
    value is no number, but it is no fault either: it is kept as text (an object column) for
    the asset's ``state_codes`` map to translate, instead of becoming Bad here.
    """

    def __init__(self, tags: Sequence[TagConfig], hold: Sequence[bool] | None = None) -> None:
        self.names = [t.name for t in tags]
        self.hold = np.array(hold if hold is not None else [False] * len(tags), dtype=bool)
        self.is_int = np.array([t.is_counter for t in tags], dtype=bool)
        # Counters stay raw integers (analytics applies their scale); analog tags are scaled here.
        self.scale = np.array([1.0 if t.is_counter else t.scale for t in tags], dtype=np.float64)
        self.offset = np.array([0.0 if t.is_counter else t.offset for t in tags], dtype=np.float64)
        self.int_column = np.full(len(tags), -1, dtype=np.intp)
        self.int_column[self.is_int] = np.arange(int(self.is_int.sum()))
        self.text = np.array([t.role == "state" for t in tags], dtype=bool)

    def __len__(self) -> int:
        return len(self.names)

    def empty(self, device: str) -> SampleBatch:
        return SampleBatch(
            device=device,
            ts=np.empty(0, np.int64),
            values={
                n: np.empty(0, np.int64 if i else np.float64)
                for n, i in zip(self.names, self.is_int, strict=False)
            },
            quality={n: np.empty(0, np.uint8) for n in self.names},
            status={n: np.empty(0, np.uint32) for n in self.names},
        )


class SampleLog:
    """Samples gathered since the last drain, capped so a stalled consumer cannot exhaust memory."""

    def __init__(self, layout: TagLayout, *, device: str, max_samples: int = 1_000_000) -> None:
        self.layout = layout
        self.device = device
        self.max_samples = max_samples
        self.dropped = 0
        self._ts: list[int] = []
        self._tag: list[int] = []
        self._value: list[Any] = []
        self._status: list[int] = []
        self.floor_ns = 0  # the latest timestamp handed out: later samples are stamped after it
        n = len(layout)
        # what each held tag last read as (carried across drains): float, int, quality, status
        self._held_f = np.full(n, np.nan)
        self._held_i = np.zeros(n, np.int64)
        self._held_q = np.full(n, Quality.MISSING, np.uint8)
        self._held_s = np.zeros(n, np.uint32)
        # text values of state tags, interned: a cell's text code is its index + 1 (0: a number)
        self._texts: list[str] = []
        self._text_code: dict[str, int] = {}
        self._held_t = np.zeros(n, np.int64)

    def __len__(self) -> int:
        return len(self._ts)

    def add(self, ts_ns: int, tag: int, value: Any, status: int) -> None:
        self._ts.append(ts_ns)
        self._tag.append(tag)
        self._value.append(value)
        self._status.append(status)
        if len(self._ts) > self.max_samples + self.max_samples // 8:
            self._trim()

    def add_row(
        self, ts_ns: int, tags: Sequence[int], values: Sequence[Any], statuses: Sequence[int]
    ) -> None:
        """One sample per tag, all at the same instant (a poll)."""
        self._ts.extend([ts_ns] * len(tags))
        self._tag.extend(tags)
        self._value.extend(values)
        self._status.extend(statuses)
        if len(self._ts) > self.max_samples + self.max_samples // 8:
            self._trim()

    def _trim(self) -> None:
        excess = len(self._ts) - self.max_samples
        for column in (self._ts, self._tag, self._value, self._status):
            del column[:excess]
        if not self.dropped:
            log.warning(
                "device %r: more than %d samples waiting to be read; dropping the oldest. "
                "Shorten poll_interval or reduce subscribed tags.",
                self.device,
                self.max_samples,
            )
        self.dropped += excess

    def clear(self) -> None:
        for column in (self._ts, self._tag, self._value, self._status):
            column.clear()

    def forget_held(self) -> None:
        """A new subscription (after a loss) knows nothing yet: held tags read MISSING until
        its first notification, never a value from before the gap."""
        self._held_q[:] = Quality.MISSING

    def add_fill_row(self, ts_ns: int, skip: Collection[int] = ()) -> None:
        """A row at ``ts_ns`` where every held tag shows the value it holds at that instant."""
        tags = [t for t in np.flatnonzero(self.layout.hold).tolist() if t not in skip]
        if tags:
            self.add_row(ts_ns, tags, [None] * len(tags), [FILL] * len(tags))

    def drain(self) -> SampleBatch:
        """Every gathered sample as one batch in time order; absent cells are MISSING."""
        n = len(self._ts)
        layout = self.layout
        if n == 0:
            return layout.empty(self.device)
        ts = np.array(self._ts, dtype=np.int64)
        tag = np.array(self._tag, dtype=np.intp)
        status = np.array(self._status, dtype=np.uint32)
        raw = self._value
        self._ts, self._tag, self._value, self._status = [], [], [], []

        fill = status == FILL
        quality = qualities(status)
        fval = np.fromiter(map(as_float, raw), dtype=np.float64, count=n)
        tcode = self._text_codes(tag, raw) if self.layout.text.any() else None
        is_int = layout.is_int[tag]
        ival = np.zeros(n, dtype=np.int64)
        for k in np.flatnonzero(is_int).tolist():
            exact = as_int(raw[k])
            if exact is None:
                quality[k] = Quality.BAD
            else:
                ival[k] = exact
        with np.errstate(over="ignore"):  # a huge value × scale overflows to inf: Bad, like NaN
            fval = fval * layout.scale[tag] + layout.offset[tag]
        number = ~is_int if tcode is None else ~is_int & (tcode == 0)
        quality[number & ~np.isfinite(fval)] = Quality.BAD
        bad = quality == Quality.BAD
        fval[bad] = np.nan
        ival[bad] = 0
        if tcode is not None:
            tcode[bad] = 0
        quality[fill] = Quality.MISSING
        status[fill] = 0
        batch = self._assemble(ts, tag, fval, ival, quality, status, is_int, tcode)
        self.floor_ns = max(self.floor_ns, int(batch.ts[-1]))
        return batch

    def _assemble(
        self,
        ts: npt.NDArray[np.int64],
        tag: npt.NDArray[np.intp],
        fval: npt.NDArray[np.float64],
        ival: npt.NDArray[np.int64],
        quality: npt.NDArray[np.uint8],
        status: npt.NDArray[np.uint32],
        is_int: npt.NDArray[np.bool_],
        tcode: npt.NDArray[np.int64] | None = None,
    ) -> SampleBatch:
        layout = self.layout
        order = np.argsort(ts, kind="stable")
        ts, tag = ts[order], tag[order]
        row = _rows(ts, tag, len(layout))
        n_rows = int(row[-1]) + 1
        shape = (n_rows, len(layout))
        fm = np.full(shape, np.nan, order="F")
        fm[row, tag] = fval[order]
        qm = np.full(shape, Quality.MISSING, dtype=np.uint8, order="F")
        qm[row, tag] = quality[order]
        sm = np.zeros(shape, dtype=np.uint32, order="F")
        sm[row, tag] = status[order]
        im = np.zeros((n_rows, int(layout.is_int.sum())), dtype=np.int64, order="F")
        ints = is_int[order]
        im[row[ints], layout.int_column[tag[ints]]] = ival[order][ints]
        row_ts = np.empty(n_rows, dtype=np.int64)
        row_ts[row] = ts
        tm = None
        if tcode is not None:
            tm = np.zeros(shape, dtype=np.int64, order="F")
            tm[row, tag] = tcode[order]
        if layout.hold.any():
            self._hold(fm, im, qm, sm, tm)
        values: dict[str, np.ndarray] = {}
        for j, name in enumerate(layout.names):
            values[name] = im[:, layout.int_column[j]] if layout.is_int[j] else fm[:, j]
        if tm is not None:
            for j in np.flatnonzero(tm.any(axis=0)).tolist():
                values[layout.names[j]] = self._text_column(fm[:, j], tm[:, j])
        return SampleBatch(
            device=self.device,
            ts=row_ts,
            values=values,
            quality={name: qm[:, j] for j, name in enumerate(layout.names)},
            status={name: sm[:, j] for j, name in enumerate(layout.names)},
        )

    def _hold(
        self,
        fm: npt.NDArray[np.float64],
        im: npt.NDArray[np.int64],
        qm: npt.NDArray[np.uint8],
        sm: npt.NDArray[np.uint32],
        tm: npt.NDArray[np.int64] | None = None,
    ) -> None:
        """Forward-fill held columns: a MISSING cell takes the last sample at or before it."""
        layout = self.layout
        n_rows = qm.shape[0]
        rows = np.arange(n_rows)
        for j in np.flatnonzero(layout.hold).tolist():
            q = qm[:, j]
            seen = q != Quality.MISSING
            last = np.maximum.accumulate(np.where(seen, rows, -1))
            from_here = last >= 0
            src = np.maximum(last, 0)
            k = layout.int_column[j]
            if layout.is_int[j]:
                im[:, k] = np.where(from_here, im[src, k], self._held_i[j])
            fm[:, j] = np.where(from_here, fm[src, j], self._held_f[j])
            sm[:, j] = np.where(from_here, sm[src, j], self._held_s[j])
            qm[:, j] = np.where(from_here, q[src], self._held_q[j])
            end = n_rows - 1
            if tm is not None:
                tm[:, j] = np.where(from_here, tm[src, j], self._held_t[j])
                self._held_t[j] = tm[end, j]
            self._held_q[j] = qm[end, j]
            self._held_f[j] = fm[end, j]
            self._held_s[j] = sm[end, j]
            if layout.is_int[j]:
                self._held_i[j] = im[end, k]

    def _text_codes(self, tag: npt.NDArray[np.intp], raw: list[Any]) -> npt.NDArray[np.int64] | None:
        """Interned text code of each sample (0 where it is no text), or None: no text at all."""
        out: npt.NDArray[np.int64] | None = None
        held_text = bool(self._held_t[self.layout.text].any())
        for k in np.flatnonzero(self.layout.text[tag]).tolist():
            value = raw[k]
            if type(value) is str:
                if out is None:
                    out = np.zeros(tag.shape[0], np.int64)
                text = value.strip()
                code = self._text_code.get(text)
                if code is None:
                    if len(self._texts) >= MAX_TEXTS:  # no state set is this large: free text
                        continue  # left as no number: Bad
                    self._texts.append(text)
                    code = self._text_code[text] = len(self._texts)
                out[k] = code
        if out is None and held_text:
            out = np.zeros(tag.shape[0], np.int64)  # held text still fills this batch's rows
        return out

    def _text_column(self, numbers: npt.NDArray[np.float64], codes: npt.NDArray[np.int64]) -> np.ndarray:
        """A state column holding text: the strings where a cell is text, else its number."""
        col = numbers.astype(object)
        texts = self._texts
        for i in np.flatnonzero(codes).tolist():
            col[i] = texts[int(codes[i]) - 1]
        return col


def _rows(ts: npt.NDArray[np.int64], tag: npt.NDArray[np.intp], n_tags: int) -> npt.NDArray[np.intp]:
    """Row of each time-sorted sample: one row per timestamp, split where a tag repeats."""
    row = np.zeros(ts.shape[0], dtype=np.intp)
    np.cumsum(ts[1:] != ts[:-1], out=row[1:])
    key = row * n_tags + tag
    if np.unique(key).shape[0] == key.shape[0]:
        return row
    # Rare: one tag sampled twice at the same instant (queued notifications). Keep both.
    out = np.empty_like(row)
    current, last_ts = -1, None
    seen: set[int] = set()
    for k, (t, g) in enumerate(zip(ts.tolist(), tag.tolist(), strict=False)):
        if t != last_ts or g in seen:
            current += 1
            seen = set()
            last_ts = t
        seen.add(g)
        out[k] = current
    return out

"""Vectorised decoding of a whole device image, and the matching encoder for writes.

At start-up every tag is compiled into gather indices: for a 32-bit float at word 7 in
CDAB order, the index row ``[16, 17, 14, 15]`` picks its bytes out of the image in
big-endian order, so a poll decodes all such floats with one fancy index and one
``view('>f4')``. Byte and word swaps are folded into those indices, never done per value.
"""

from __future__ import annotations

__all__ = ["Decoder", "WriteOp", "byte_permutation", "encode_value"]

import functools
import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from edge_agent.batch import Cause, Quality, SampleBatch
from edge_agent.drivers.modbus.config import BIT_TABLES, BYTE_ORDERS, INTEGER_TYPES, ModbusTagConfig
from edge_agent.drivers.modbus.image import RegisterImage

_WIRE: dict[str, str] = {
    "int16": ">i2", "uint16": ">u2", "int32": ">i4", "uint32": ">u4", "float32": ">f4",
    "int64": ">i8", "uint64": ">u8", "float64": ">f8",
}  # fmt: skip

Kind = Literal["analog", "counter", "ucounter", "text"]
Source = Literal["bytes", "regbit", "bit", "text"]
_OUT_DTYPE: dict[str, Any] = {"analog": np.float64, "counter": np.int64, "ucounter": np.uint64}
_FILL: dict[str, Any] = {"analog": np.nan, "counter": 0, "ucounter": 0, "text": ""}


def _frozen_row(value: int, dtype: Any) -> npt.NDArray[Any]:
    row = np.array([value], dtype=dtype)
    row.setflags(write=False)
    return row


_GOOD_ROW = _frozen_row(Quality.GOOD, np.uint8)
_BAD_ROW = _frozen_row(Quality.BAD, np.uint8)
_NONFINITE_STATUS = _frozen_row(Cause.NONFINITE, np.uint32)
_NO_TAGS = np.empty(0, np.intp)

IntArray = npt.NDArray[np.intp]
FloatArray = npt.NDArray[np.float64]


@functools.cache  # a handful of layouts serve 50,000 tags; the result is read-only
def byte_permutation(nbytes: int, byte_swap: bool, word_swap: bool) -> IntArray:
    """Wire position of each value byte, most significant first (for strings: first char first)."""
    rank = np.arange(nbytes)
    word, within = rank // 2, rank % 2
    if word_swap:
        word = nbytes // 2 - 1 - word
    if byte_swap:
        within = 1 - within
    out = (2 * word + within).astype(np.intp)
    out.flags.writeable = False
    return out


def _kind(tag: ModbusTagConfig) -> Kind:
    if tag.data_type == "string":
        return "text"
    if tag.is_counter:
        return "ucounter" if tag.data_type == "uint64" else "counter"
    return "analog"


def _register_bit(tag: ModbusTagConfig) -> int:
    """Bit of the wire word holding ``tag.bit`` of the value (BA order swaps the bytes)."""
    assert tag.bit is not None
    return (tag.bit + 8) % 16 if tag.swaps[0] else tag.bit


@dataclass(frozen=True, slots=True)
class _Scaling:
    scale: FloatArray
    offset: FloatArray
    identity: bool

    @classmethod
    def of(cls, tags: Sequence[ModbusTagConfig], kind: Kind) -> _Scaling:
        if kind != "analog":  # counters stay raw and exact; analytics applies the scale
            return cls(np.ones(0), np.zeros(0), True)
        scale = np.array([t.scale for t in tags], dtype=np.float64)
        offset = np.array([t.offset for t in tags], dtype=np.float64)
        if np.all(scale == 1.0) and np.all(offset == 0.0):
            return cls(np.ones(0), np.zeros(0), True)  # 16 bytes a tag not kept for nothing
        return cls(scale, offset, False)

    def apply(self, raw: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return raw if self.identity else raw * self.scale + self.offset


@dataclass(frozen=True, slots=True)
class _Group:
    """Tags decoded by one gather: numbers of one wire type, register bits, coils or strings."""

    source: Source
    slot: int  # which output vector (one per kind)
    index: IntArray  # (n, width) byte rows, or (n,) word/bit positions
    pos: IntArray  # positions in that output vector
    scaling: _Scaling
    wire: str = ""  # numpy dtype of the gathered bytes
    shift: npt.NDArray[np.uint16] | None = None  # per-tag bit of the register word

    def raw(self, image: RegisterImage, wire_bytes: npt.NDArray[np.uint8]) -> npt.NDArray[Any]:
        if self.source == "bytes":
            return wire_bytes[self.index].view(self.wire)[:, 0]
        if self.source == "regbit":
            assert self.shift is not None
            return (image.words[self.index] >> self.shift) & 1
        if self.source == "bit":
            return image.bits[self.index]
        return _strings(wire_bytes[self.index])


def _strings(raw: npt.NDArray[np.uint8]) -> npt.NDArray[np.str_]:
    """C strings: cut at the first NUL, drop space padding, decode UTF-8 leniently."""
    nbytes = raw.shape[1]
    nul = raw == 0
    first = np.where(nul.any(axis=1), nul.argmax(axis=1), nbytes)
    raw[np.arange(nbytes) >= first[:, None]] = 0  # numpy drops trailing NULs of 'S' items
    text = np.strings.decode(raw.view(f"S{nbytes}")[:, 0], "utf-8", "replace")
    return np.asarray(np.strings.rstrip(text, " "))


class Decoder:
    """Turns a filled :class:`RegisterImage` into one SampleBatch row with a few numpy ops."""

    def __init__(self, device: str, tags: Sequence[ModbusTagConfig], positions: Sequence[int]) -> None:
        self.device = device
        self.names = [t.name for t in tags]
        kinds = [_kind(t) for t in tags]
        members: dict[Kind, list[int]] = defaultdict(list)
        slot = [0] * len(tags)  # position of each tag in its kind's output vector
        for i, k in enumerate(kinds):
            slot[i] = len(members[k])
            members[k].append(i)
        order = list(members)  # output vectors, one per kind present
        text_width = max((2 * (t.length or 0) for t in tags), default=1)
        self._out_shapes = [(len(members[k]), _OUT_DTYPE.get(k, f"U{text_width}")) for k in order]
        self._kind_members = [np.array(members[k], dtype=np.intp) for k in order]
        self._kind_fill = [_FILL[k] for k in order]
        concatenated = [i for k in order for i in members[k]]
        where = {tag: n for n, tag in enumerate(concatenated)}
        perm = [where[i] for i in range(len(tags))]
        self._all_good = MappingProxyType(dict.fromkeys(self.names, _GOOD_ROW))  # shared, read-only
        identity = perm == list(range(len(perm)))  # one kind of tag: rows already in config order
        self._config_order: Callable[[list[np.ndarray]], Sequence[np.ndarray]] = (
            (lambda rows: rows) if identity else itemgetter(*perm)
        )

        buckets: dict[tuple[Source, int, str, Kind, bool], list[int]] = defaultdict(list)
        for i, t in enumerate(tags):
            source: Source = (
                "bit"
                if t.table in BIT_TABLES
                else "regbit"
                if t.data_type == "bool"
                else "text"
                if t.data_type == "string"
                else "bytes"
            )
            scaled = t.scale != 1.0 or t.offset != 0.0  # unscaled tags skip the arithmetic (keeps -0.0)
            buckets[(source, t.register_count, _WIRE.get(t.data_type, ""), kinds[i], scaled)].append(i)
        self._groups = [
            self._group(
                source, wire, kind, order.index(kind), [tags[i] for i in group], group, positions, slot
            )
            for (source, _, wire, kind, _), group in buckets.items()
        ]

        word_tags = [i for i, t in enumerate(tags) if t.table not in BIT_TABLES]
        bit_tags = [i for i, t in enumerate(tags) if t.table in BIT_TABLES]
        self._word_tags = np.array(word_tags, dtype=np.intp)
        self._word_start = np.array([positions[i] for i in word_tags], dtype=np.intp)
        self._word_end = self._word_start + np.array(
            [tags[i].register_count for i in word_tags], dtype=np.intp
        )
        self._bit_tags = np.array(bit_tags, dtype=np.intp)
        self._bit_pos = np.array([positions[i] for i in bit_tags], dtype=np.intp)

    @staticmethod
    def _group(
        source: Source,
        wire: str,
        kind: Kind,
        out: int,
        tags: list[ModbusTagConfig],
        members: list[int],
        positions: Sequence[int],
        slot: list[int],
    ) -> _Group:
        pos = np.array([slot[i] for i in members], dtype=np.intp)
        first = np.array([positions[i] for i in members], dtype=np.intp)
        scaling = _Scaling.of(tags, kind)
        if source == "bit":
            return _Group(source, out, first, pos, scaling)
        if source == "regbit":
            shift = np.array([_register_bit(t) for t in tags], dtype=np.uint16)
            return _Group(source, out, first, pos, scaling, shift=shift)
        nbytes = 2 * tags[0].register_count
        orders = np.array([t.byte_order for t in tags])
        rows = np.empty((len(tags), nbytes), dtype=np.intp)
        for order in np.unique(orders).tolist():  # a few byte orders serve every tag
            rows[orders == order] = 2 * first[orders == order, None] + byte_permutation(
                nbytes, *BYTE_ORDERS[order]
            )
        return _Group(source, out, rows, pos, scaling, wire=wire)

    def tag_bad(self, image: RegisterImage) -> npt.NDArray[np.bool_]:
        """Per tag: was any of its registers (or its bit) not read in this poll?"""
        bad = np.zeros(len(self.names), dtype=np.bool_)
        if self._word_tags.size:
            missing = np.zeros(image.word_ok.size + 1, dtype=np.int64)
            np.cumsum(~image.word_ok, out=missing[1:])
            bad[self._word_tags] = missing[self._word_end] != missing[self._word_start]
        if self._bit_tags.size:
            bad[self._bit_tags] = ~image.bit_ok[self._bit_pos]
        return bad

    def _status(self, image: RegisterImage) -> npt.NDArray[np.uint32]:
        status = np.zeros(len(self.names), dtype=np.uint32)
        if self._word_tags.size:
            ws = image.word_status
            status[self._word_tags] = np.maximum(ws[self._word_start], ws[self._word_end - 1])
        if self._bit_tags.size:
            status[self._bit_tags] = image.bit_status[self._bit_pos]
        return status

    def _nonfinite(self, outs: list[np.ndarray], bad: npt.NDArray[np.bool_]) -> IntArray:
        """Tags read whole whose float value is NaN or ±Inf: a device's NaN means "no value".

        Marked here with one ``isfinite`` per float vector, so the runtime need not check the
        batch column by column (``Driver.marks_nonfinite``).
        """
        hit = [
            members[~np.isfinite(vec)]
            for vec, members in zip(outs, self._kind_members, strict=True)
            if vec.dtype.kind == "f"
        ]
        tags = np.concatenate(hit) if len(hit) > 1 else hit[0] if hit else _NO_TAGS
        return tags[~bad[tags]] if tags.size else tags

    def decode(self, image: RegisterImage, ts_ns: int) -> SampleBatch:
        """One row: analog tags as float64 (NaN when Bad), counters as exact integers (0 when Bad).

        Per tag only a view is created; quality rows of healthy tags share one read-only array.
        """
        wire_bytes = image.words.view(np.uint8)
        outs = [np.empty(n, dtype=dt) for n, dt in self._out_shapes]
        with np.errstate(invalid="ignore", over="ignore"):  # signalling NaNs and huge scaled values
            for g in self._groups:
                outs[g.slot][g.pos] = g.scaling.apply(g.raw(image, wire_bytes))
        bad = self.tag_bad(image)
        nonfinite = self._nonfinite(outs, bad)
        any_bad = bool(bad.any())
        rows: list[np.ndarray] = []
        for vec, members, fill in zip(outs, self._kind_members, self._kind_fill, strict=True):
            if any_bad:
                vec[bad[members]] = fill
            rows.extend(vec.reshape(-1, 1))
        values = dict(zip(self.names, self._config_order(rows), strict=True))
        quality: Mapping[str, npt.NDArray[np.uint8]] = self._all_good
        status: dict[str, npt.NDArray[np.uint32]] = {}  # only the tags with something to say
        if any_bad or nonfinite.size:
            codes = self._status(image)
            quality = dict(self._all_good)
            for i in np.flatnonzero(bad).tolist():
                quality[self.names[i]] = _BAD_ROW
                status[self.names[i]] = codes[i : i + 1]
            for i in nonfinite.tolist():
                quality[self.names[i]] = _BAD_ROW
                status[self.names[i]] = _NONFINITE_STATUS
        # one row per column by construction: the constructor's checks cost ~0.1 µs a tag
        return SampleBatch.trusted(self.device, np.array([ts_ns], dtype=np.int64), values, quality, status)


@dataclass(frozen=True, slots=True)
class WriteOp:
    """What to send for one write: a coil, whole registers, or a masked bit (FC 22)."""

    coil: bool | None = None
    registers: tuple[int, ...] = ()
    and_mask: int = 0xFFFF
    or_mask: int = 0


def encode_value(device: str, tag: ModbusTagConfig, value: float | int | bool | str) -> WriteOp:
    """Engineering value -> wire, the exact inverse of decoding; out-of-range values are refused."""
    where = f"device {device!r} tag {tag.name!r}"
    if tag.data_type == "string":
        return WriteOp(registers=_encode_string(where, tag, value))
    if isinstance(value, str):
        raise ValueError(f"{where}: expected a number for {tag.data_type}, got the string {value!r}")
    if tag.data_type == "bool":
        if value not in (0, 1):
            raise ValueError(f"{where}: a bool takes 0/1 or true/false, got {value!r}")
        if tag.table in BIT_TABLES:
            return WriteOp(coil=bool(value))
        bit = _register_bit(tag)
        return WriteOp(and_mask=0xFFFF ^ (1 << bit), or_mask=int(bool(value)) << bit)
    raw = float(value) if tag.is_counter else (float(value) - tag.offset) / tag.scale
    wire = np.dtype(_WIRE[tag.data_type])
    if tag.data_type in INTEGER_TYPES:
        info = np.iinfo(wire)
        if not math.isfinite(raw) or not info.min <= round(raw) <= info.max:
            raise ValueError(
                f"{where}: {value!r} gives raw {raw!r}, outside {tag.data_type} range {info.min}..{info.max}"
            )
        be = np.array([round(raw)], dtype=wire)
    else:
        with np.errstate(over="ignore"):
            be = np.array([raw], dtype=wire)
        if math.isfinite(raw) and not np.isfinite(be[0]):
            raise ValueError(f"{where}: {value!r} overflows {tag.data_type}")
    nbytes = wire.itemsize
    out = np.empty(nbytes, dtype=np.uint8)
    out[byte_permutation(nbytes, *tag.swaps)] = be.view(np.uint8)
    return WriteOp(registers=tuple(int(w) for w in out.view(">u2")))


def _encode_string(where: str, tag: ModbusTagConfig, value: object) -> tuple[int, ...]:
    if not isinstance(value, str):
        raise ValueError(f"{where}: expected a string, got {value!r}")
    nbytes = 2 * (tag.length or 0)
    data = value.encode("utf-8")
    if len(data) > nbytes:
        raise ValueError(f"{where}: {value!r} needs {len(data)} bytes, the tag holds {nbytes}")
    raw = np.frombuffer(data.ljust(nbytes, b"\x00"), dtype=np.uint8)
    out = np.empty(nbytes, dtype=np.uint8)
    out[byte_permutation(nbytes, *tag.swaps)] = raw
    return tuple(int(w) for w in out.view(">u2"))

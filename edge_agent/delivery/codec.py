"""Compact columnar encoding of a SampleBatch for the durable buffer.

One blob per batch: a small JSON header, then each column's raw numpy bytes (timestamps
delta-encoded so regular polling compresses to almost nothing), all zlib-compressed.
Never row per sample: a million samples cost a few MB and one INSERT per batch.
"""

from __future__ import annotations

__all__ = ["decode_batch", "encode_batch"]

import json
import struct
import zlib

import numpy as np

from edge_agent.batch import SampleBatch

_MAGIC = b"EAB1"
_HEAD = struct.Struct("<4sI")


def encode_batch(batch: SampleBatch) -> bytes:
    n = len(batch)
    cols: list[list[object]] = []
    parts: list[bytes] = []
    ts = batch.ts
    deltas = np.empty(n, np.int64)
    if n:
        deltas[0] = ts[0]
        np.subtract(ts[1:], ts[:-1], out=deltas[1:])
    parts.append(deltas.tobytes())
    for tag, values in batch.values.items():
        status = batch.status.get(tag)
        cols.append([tag, values.dtype.str, status is not None])
        parts.append(np.ascontiguousarray(values).tobytes())
        parts.append(np.ascontiguousarray(batch.quality[tag], dtype=np.uint8).tobytes())
        if status is not None:
            parts.append(np.ascontiguousarray(status, dtype=np.uint32).tobytes())
    header = json.dumps({"d": batch.device, "n": n, "c": cols}, separators=(",", ":")).encode()
    return _HEAD.pack(_MAGIC, len(header)) + zlib.compress(header + b"".join(parts), 1)


def decode_batch(blob: bytes) -> SampleBatch:
    magic, hlen = _HEAD.unpack_from(blob)
    if magic != _MAGIC:
        raise ValueError(f"buffer blob has magic {magic!r}, expected {_MAGIC!r}: not written by edge-agent")
    raw = zlib.decompress(blob[_HEAD.size :])
    header = json.loads(raw[:hlen])
    n: int = header["n"]
    pos = hlen

    def take(dtype: np.dtype[np.generic]) -> np.ndarray:
        nonlocal pos
        size = n * dtype.itemsize
        # A read-only view of the decompressed bytes, no copy: batches are immutable and every
        # sink shares this one decode.
        arr = np.frombuffer(raw, dtype=dtype, count=n, offset=pos)
        pos += size
        return arr

    ts = np.cumsum(take(np.dtype(np.int64)), dtype=np.int64)
    values: dict[str, np.ndarray] = {}
    quality: dict[str, np.ndarray] = {}
    status: dict[str, np.ndarray] = {}
    for tag, dtype_str, has_status in header["c"]:
        values[tag] = take(np.dtype(dtype_str))
        quality[tag] = take(np.dtype(np.uint8))
        if has_status:
            status[tag] = take(np.dtype(np.uint32))
    return SampleBatch(device=header["d"], ts=ts, values=values, quality=quality, status=status)

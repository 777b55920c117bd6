"""A small, independent reader of the line protocol edge-agent writes, for round-trip tests.

It knows InfluxDB's escaping rules (``\\,`` ``\\=`` ``\\ `` in keys and tag values, ``\\,``
``\\ `` in measurements) and the field types the writer uses (float, ``123i``, bool).
"""

from __future__ import annotations

__all__ = ["Line", "read_lines"]

from dataclasses import dataclass


@dataclass(frozen=True)
class Line:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, float | int | bool]
    ts: int


def _scan(s: str, i: int, stops: str, escapable: str) -> tuple[str, int]:
    out = []
    while i < len(s) and s[i] not in stops:
        if s[i] == "\\" and i + 1 < len(s) and s[i + 1] in escapable:
            out.append(s[i + 1])
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out), i


def _value(text: str) -> float | int | bool:
    if text in ("true", "false"):
        return text == "true"
    if text.endswith("i"):
        return int(text[:-1])
    return float(text)


def read_line(s: str) -> Line:
    measurement, i = _scan(s, 0, ", ", ", ")
    tags: dict[str, str] = {}
    while i < len(s) and s[i] == ",":
        key, i = _scan(s, i + 1, "=", ",= ")
        assert s[i] == "=", s
        val, i = _scan(s, i + 1, ", ", ",= ")
        tags[key] = val
    assert s[i] == " ", s
    fields: dict[str, float | int | bool] = {}
    while True:
        key, i = _scan(s, i + 1, "=", ",= ")
        assert s[i] == "=", s
        raw, i = _scan(s, i + 1, ", ", "")
        assert key not in fields, f"field {key!r} twice: {s}"
        fields[key] = _value(raw)
        if s[i] == " ":
            break
    return Line(measurement, tags, fields, int(s[i + 1 :]))


def read_lines(body: str) -> list[Line]:
    assert body == "" or body.endswith("\n"), body[-80:]
    return [read_line(line) for line in body.split("\n")[:-1]]

"""Parse block-style YAML in pieces, and bound the memory a parse takes before it starts.

yaml-rs builds a document of its own (~40 % of a parse's memory: 35 MB for a 50,000-tag plant)
and converts it to Python objects at the end, so both are held at once. A block-style file is
cut at lines of equal indentation into pieces of about ``PIECE_CHARS``, each parsed alone and
joined: the document then exists for one piece at a time. What cannot be cut is parsed whole:
a file with aliases (an alias may name an anchor in another piece), document markers or
directives, one long flow-style line.

Before parsing, :func:`parse_cost` bounds from character counts what the Python objects of the
whole file and the document of its largest piece will take. Its weights were fitted to
measurements of the densest shapes (one-key mappings, long keys, flow items, nested keys):
flow style pays as if every item were a mapping, since ``[a:, b:]`` makes one per comma.
"""

from __future__ import annotations

__all__ = ["PIECE_CHARS", "Load", "PieceError", "estimate", "parse_cost", "parse_in_pieces", "plan_pieces"]

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Characters of text per piece: the document of one piece takes at most ~2 MB.
PIECE_CHARS = 16 * 1024
#: Recursion into ever deeper children stops here; the rest is one piece.
_MAX_SPLIT_DEPTH = 24

# Bytes per counted thing, fitted (with 5 % to spare) to the measured Python objects plus text
# (_PY_*) and yaml-rs's document (_DOC_*) of 20 shapes, from 50,000 tags to 400,000 one-key
# mappings; a 50,000-tag plant is overestimated by ~25 %.
_PY_NODE, _PY_COLLECTION, _PY_CHAR = 70, 87, 3.0
_DOC_NODE, _DOC_COLLECTION, _DOC_CHAR = 54, 69, 0.2

#: The document of a piece of PIECE_CHARS at most: every character opens a value and a collection.
_PIECE_DOCUMENT = int((_DOC_NODE + _DOC_COLLECTION + _DOC_CHAR) * PIECE_CHARS)

_OPEN_LINE = re.compile(r":[ \t]+[\r\n#&!]")  # a key whose value may be a block below it
_DOCUMENT_MARKS = ("---", "...", "%")  # document markers and directives, at a line's start
_SIGNIFICANT = re.compile(r"(?:[ \t]*(?:#[^\n]*)?\n)*( *)(?=[^ \n])")  # skips blank and comment lines
#: The start of a block entry: an item, or a key (a ':' followed by a space or the line's end).
_BLOCK_ENTRY = re.compile(r"-[ \t\r\n]|[^\s#\[{|>][^\n]*?:(?:[ \t]|\r?$)", re.MULTILINE)
_LINE_REST = re.compile(r"[ \t]*(?:#[^\n]*)?\r?$")  # nothing but a comment


def _counts(text: str, start: int, end: int) -> tuple[int, int]:
    """(values, collections) of text[start:end], upper bounds counted in C.

    A value is opened by a line break, ``:``, ``-``, ``,``, ``[``, ``{``, ``?`` or ``!``; a
    collection by ``{``, ``[``, ``?``, ``!`` or ``,`` (any flow item may be a one-pair mapping),
    a key with nothing after it, or a ``-`` item."""

    def n(*marks: str) -> int:
        return sum(text.count(mark, start, end) for mark in marks)

    flow = n(",", "[", "{", "?", "!")
    values = 1 + n("\n", ":", "-") + flow
    dash_items = n("- ", "-\t", "-\n", "-\r")
    open_keys = n(":\n", ":\r") + len(_OPEN_LINE.findall(text, start, end))
    return values, 1 + flow + dash_items + open_keys


def parse_cost(text: str, start: int = 0, end: int | None = None) -> tuple[float, float]:
    """(Python objects and text, yaml-rs's document) in bytes that parsing text[start:end] takes
    at most, for the shapes measured."""
    end = len(text) if end is None else end
    values, collections = _counts(text, start, end)
    chars = end - start
    python = _PY_NODE * values + _PY_COLLECTION * collections + _PY_CHAR * chars
    document = _DOC_NODE * values + _DOC_COLLECTION * collections + _DOC_CHAR * chars
    return python, document


class PieceError(ValueError):
    """A piece did not parse (``from_parser``: yaml-rs's error, its line counted in the file) or
    did not fit its place."""

    def __init__(self, message: str, *, from_parser: bool = False) -> None:
        self.from_parser = from_parser
        super().__init__(message)


# A plan: ("piece", start, end, dash) is parsed by yaml-rs (``dash``: a position in it whose
# '-' reads as a space: the item's content is indented past it); ("seq", parts) joins lists
# and ("item", plan) items; ("map", parts) joins mappings and ("key", start, end, dash, plan)
# entries whose key line is text[start:end].
Plan = tuple[Any, ...]


Load = Callable[[str], Any]


def _piece_text(text: str, start: int, end: int, dash: int | None) -> str:
    if dash is None:
        return text[start:end]
    return text[start:dash] + " " + text[dash + 1 : end]


@dataclass
class _Planner:
    text: str
    load: Load
    largest: int  # the document cost of the largest piece, bytes: at least _PIECE_DOCUMENT

    def piece(self, start: int, end: int, dash: int | None) -> Plan:
        if end - start > PIECE_CHARS:  # smaller ones are bounded by _PIECE_DOCUMENT, not counted
            self.largest = max(self.largest, int(parse_cost(self.text, start, end)[1]))
        return ("piece", start, end, dash)

    def node(self, start: int, end: int, indent: int, dash: int | None, depth: int) -> Plan:
        """The plan for the block node in text[start:end] whose entries sit at ``indent``."""
        text = self.text
        if end - start <= PIECE_CHARS or depth > _MAX_SPLIT_DEPTH:
            return self.piece(start, end, dash)
        if dash is not None:  # the first entry is on the item's line, after its '-'
            first = start + indent
        else:
            found = _SIGNIFICANT.match(text, start, end)
            if found is None or len(found.group(1)) != indent:
                return self.piece(start, end, dash)
            first = found.end()
        if not _BLOCK_ENTRY.match(text, first, end):  # a scalar, a flow collection: one piece
            return self.piece(start, end, dash)
        is_seq = text.startswith("-", first) and text[first + 1 : first + 2] in (" ", "\t", "\n", "\r")
        spaces = " " * indent
        if is_seq:
            boundary = re.compile(r"\n" + spaces + r"-(?=[ \t\r\n])")
        else:
            boundary = re.compile(r"\n" + spaces + r"(?:[^ \t\r\n#:\-]|-[^ \t\r\n])")
        parts: list[Plan] = []
        group = child = start
        cuts = itertools.chain((m.start() + 1 for m in boundary.finditer(text, first, end)), (end,))
        for cut in cuts:
            if cut - group > PIECE_CHARS and child > group:
                parts.append(self.piece(group, child, _within(dash, group, child)))
                group = child
            if cut - child > PIECE_CHARS:
                parts.append(self.child(child, cut, indent, is_seq, _within(dash, child, cut), depth))
                group = cut
            child = cut
        if child > group:
            parts.append(self.piece(group, child, _within(dash, group, child)))
        return ("seq" if is_seq else "map", parts)

    def key_alone(self, start: int, end: int, dash: int | None) -> bool:
        """Whether text[start:end] is a key with nothing after it: its value is the block below."""
        colon = self.text.rfind(":", start, end)
        if colon < 0 or not _LINE_REST.match(self.text, colon + 1, end) or end - start > 4096:
            return False
        try:
            entry = self.load(_piece_text(self.text, start, end, dash))
        except ValueError:
            return False
        return isinstance(entry, dict) and len(entry) == 1 and None in entry.values()

    def child(self, start: int, end: int, indent: int, is_seq: bool, dash: int | None, depth: int) -> Plan:
        """A child larger than a piece: its value is planned on its own when it is a block node."""
        text = self.text
        line_end = text.find("\n", start, end)
        line_end = end if line_end < 0 else line_end
        item = start + indent  # the '-' of an item
        if is_seq:
            content = item + 1
            while text.startswith(" ", content) and content < line_end:
                content += 1
            if content < line_end and text[content] not in "#\r\t":  # the content starts on this line
                return ("item", self.node(start, end, content - start, item, depth + 1))
            found = _SIGNIFICANT.match(text, line_end + 1, end) if line_end < end else None
            if found is None or len(found.group(1)) <= indent:
                return self.piece(start, end, dash)
            return ("item", self.node(line_end + 1, end, len(found.group(1)), None, depth + 1))
        if line_end >= end or not self.key_alone(start, line_end, dash):
            return self.piece(start, end, dash)
        found = _SIGNIFICANT.match(text, line_end + 1, end)
        if found is None:
            return self.piece(start, end, dash)
        value_indent = len(found.group(1))
        same_level_seq = value_indent == indent and text.startswith("- ", found.end())
        if value_indent <= indent and not same_level_seq:
            return self.piece(start, end, dash)
        value = self.node(line_end + 1, end, value_indent, None, depth + 1)
        return ("key", start, line_end, dash, value)


def _has_alias(text: str) -> bool:
    """Whether an alias may be in the text: a '*' after a space, a flow indicator or nothing,
    and before a name (a regular expression over the whole text costs 0.15 s for 8 MB)."""
    at = text.find("*")
    while at >= 0:
        before, after = text[at - 1 : at] if at else " ", text[at + 1 : at + 2]
        if before in " \t\r\n[{," and after and after not in " \t\r\n[]{},":
            return True
        at = text.find("*", at + 1)
    return False


def _has_document_marks(text: str) -> bool:
    return text.startswith(_DOCUMENT_MARKS) or any("\n" + mark in text for mark in _DOCUMENT_MARKS)


def _within(dash: int | None, start: int, end: int) -> int | None:
    return dash if dash is not None and start <= dash < end else None


def plan_pieces(text: str, load: Load) -> tuple[Plan, int] | None:
    """How to parse text in pieces and the document cost of its largest piece, or None when it
    cannot be cut (aliases, document markers, directives) or is no larger than one piece."""
    if len(text) <= PIECE_CHARS or _has_alias(text) or _has_document_marks(text):
        return None
    found = _SIGNIFICANT.match(text)
    if found is None:
        return None
    planner = _Planner(text, load, _PIECE_DOCUMENT)
    plan = planner.node(0, len(text), len(found.group(1)), None, 0)
    return plan, planner.largest


def estimate(text: str, limit: float, load: Load) -> tuple[float, Plan | None, float]:
    """(bytes parsing the text takes at most, the plan to parse it in pieces or None, bytes it
    takes parsed whole). Above ``limit`` for the Python objects alone, it is not planned;
    ``load`` (yaml-rs's loads) reads the lines of keys whose values are planned apart."""
    python, document = parse_cost(text)
    planned = plan_pieces(text, load) if python <= limit else None
    if planned is None:
        return python + document, None, python + document
    return python + planned[1], planned[0], python + document


def parse_in_pieces(text: str, plan: Plan, load: Load) -> Any:
    """Run ``plan`` with ``load`` (yaml-rs's loads with the caller's options).

    Raises PieceError when a piece does not parse, or parses to something other than its place
    needs; a key repeated across pieces is reported as yaml-rs reports one within a piece."""

    def line_of(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    def parse(start: int, end: int, dash: int | None) -> Any:
        try:
            return load(_piece_text(text, start, end, dash))
        except ValueError as exc:
            first = line_of(start)
            message = re.sub(r"at line (\d+)", lambda m: f"at line {int(m.group(1)) + first - 1}", str(exc))
            raise PieceError(message, from_parser=True) from None

    def run(node: Plan) -> Any:
        kind = node[0]
        if kind == "piece":
            return parse(node[1], node[2], node[3])
        if kind == "item":
            return run(node[1])
        if kind == "seq":
            items: list[Any] = []
            for part in node[1]:
                if part[0] == "item":
                    items.append(run(part))
                    continue
                got = run(part)
                if not isinstance(got, list | type(None)):
                    raise PieceError(f"a piece of a list is not a list at line {line_of(part[1])}")
                items.extend(got or ())
            return items
        mapping: dict[Any, Any] = {}
        for part in node[1]:
            if part[0] == "key":
                entry = parse(part[1], part[2], part[3])
                if not (isinstance(entry, dict) and len(entry) == 1 and None in entry.values()):
                    raise PieceError(f"a key line is not a key alone at line {line_of(part[1])}")
                got = {next(iter(entry)): run(part[4])}
            else:
                got = run(part)
                if not isinstance(got, dict | type(None)):
                    raise PieceError(f"a piece of a mapping is not a mapping at line {line_of(part[1])}")
            for key in got or ():
                if key in mapping:
                    line = line_of(part[1])
                    raise PieceError(f"duplicate mapping key: {key!r} at line {line}", from_parser=True)
            mapping.update(got or {})
        return mapping

    return run(plan)

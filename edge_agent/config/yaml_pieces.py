"""Parse block-style YAML in pieces, and bound the memory a parse takes before it starts.

yaml-rs builds a document of its own (~40 % of a parse's memory: 35 MB for a 50,000-tag plant)
and converts it to Python objects at the end, so both are held at once. A block-style file is
cut at lines of equal indentation into pieces of about ``PIECE_CHARS``, each parsed alone and
joined: the document then exists for one piece at a time. What cannot be cut is parsed whole:
a file with aliases (an alias may name an anchor in another piece), document markers or
directives, one long flow-style line. A piece that does not parse, or parses to something
other than its place needs, raises PieceError (the caller parses the whole file if it can).

Before parsing, :func:`estimate` bounds from character counts what the Python objects of the
whole file and the document of its largest piece will take. Its weights were fitted to
measurements of the densest shapes (one-key mappings, long distinct keys, flow items, nested
keys): flow style pays as if every item were a mapping, since ``[a:, b:]`` makes one per comma,
except on lines that are one flow mapping of scalars. Every regular expression here scans in
C and keeps no state per line or entry (sre keeps ~250 bytes per repetition of a group).
"""

from __future__ import annotations

__all__ = [
    "PIECE_CHARS",
    "Estimate",
    "Load",
    "PieceError",
    "estimate",
    "parse_cost",
    "parse_in_pieces",
    "plan_pieces",
]

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

#: Characters of text per piece: the document of one piece takes at most ~2 MB.
PIECE_CHARS = 16 * 1024
#: Recursion into ever deeper children stops here, or after this many children planned apart
#: (~40 µs each; a 50,000-tag plant has ~15): the rest is parsed in larger pieces.
_MAX_SPLIT_DEPTH = 24
_MAX_SPLIT_CHILDREN = 1000

# Bytes per counted thing, fitted (with 5 % to spare) to the measured Python objects plus text
# (_PY_*) and yaml-rs's document (_DOC_*) of 20 shapes, from 50,000 tags to 400,000 one-key
# mappings; a 50,000-tag plant is overestimated by ~25 %.
_PY_NODE, _PY_COLLECTION, _PY_CHAR = 70, 87, 3.0
_DOC_NODE, _DOC_COLLECTION, _DOC_CHAR = 54, 69, 0.2

#: The document of a piece of PIECE_CHARS at most: every character opens a value and a collection.
_PIECE_DOCUMENT = int((_DOC_NODE + _DOC_COLLECTION + _DOC_CHAR) * PIECE_CHARS)

#: A line that is one flow mapping of scalars, perhaps an item's or a key's value. A quote may
#: only open a scalar and a plain scalar holds no quote, bracket, comma or '#', so the line
#: reads as YAML reads it: its commas separate entries or are inside quotes.
_FLOW_LINE_CHARS = 2000  # longer lines are not looked into: the match keeps state per entry
_QUOTED = r"""(?:'[^'\n]*+(?:''[^'\n]*+)*+'|"[^"\\\n]*+(?:\\.[^"\\\n]*+)*+")"""
_PLAIN = r"""(?:[^\s\[\]{},:#'"]++(?:(?:[ \t]++|:(?![\s,}]))[^\s\[\]{},:#'"]++)*+)"""
# Possessive quantifiers and atomic groups: they never give back what they matched, which only
# ever makes a line fail that would have matched (its commas then count, an upper bound still),
# and they make the scan ~40 % faster (0.24 -> 0.15 s for a 50,000-tag plant in flow style).
_SCALAR = f"(?>{_QUOTED}|{_PLAIN})"
_ENTRY = rf"[ \t]*+(?:{_SCALAR}[ \t]*+(?::[ \t]*+{_SCALAR}?+[ \t]*+)?+|:[ \t]*+{_SCALAR}?+[ \t]*+)"
_FLOW_MAPPING_LINE = re.compile(
    rf"^(?=[^\n]{{0,{_FLOW_LINE_CHARS}}}$)[ \t]*+(?:-[ \t]++)*+(?:{_SCALAR}[ \t]*:[ \t]+)?"
    rf"\{{(?:{_ENTRY}(?:,{_ENTRY})*+)?\}}[ \t]*\r?$",
    re.MULTILINE,
)
_OPEN_LINE = re.compile(r":[ \t]+[\r\n#&!]")  # a key whose value may be a block below it
_DOCUMENT_MARKS = ("---", "...", "%")  # document markers and directives, at a line's start
#: The first line that is not blank nor a comment: its indentation (no repeated group: sre would
#: keep ~250 bytes per blank line it skipped).
_SIGNIFICANT = re.compile(r"^( *)(?=[^ \t\r\n#])", re.MULTILINE)
#: The start of a block entry: an item, or a key (a ':' followed by a space or the line's end).
_BLOCK_ENTRY = re.compile(r"-[ \t\r\n]|[^\s#\[{|>][^\n]*?:(?:[ \t]|\r?$)", re.MULTILINE)
_LINE_REST = re.compile(r"[ \t]*(?:#[^\n]*)?\r?$")  # nothing but a comment


def _counts(text: str, start: int, end: int) -> tuple[int, int]:
    """(values, collections) of text[start:end], upper bounds counted in C.

    A value is opened by a line break, ``:``, ``-``, ``,``, ``[``, ``{``, ``?`` or ``!``; a
    collection by ``{``, ``[``, ``?``, ``!`` or ``,`` (any flow item may be a one-pair mapping),
    a key with nothing after it, or a ``-`` item. :func:`_flow_entries` tightens the bound."""

    def n(*marks: str) -> int:
        return sum(text.count(mark, start, end) for mark in marks)

    flow = n(",", "[", "{", "?", "!")
    values = 1 + n("\n", ":", "-") + flow
    dash_items = n("- ", "-\t", "-\n", "-\r")
    open_keys = n(":\n", ":\r") + len(_OPEN_LINE.findall(text, start, end))
    return values, 1 + flow + dash_items + open_keys


def _flow_entries(text: str, start: int, end: int) -> int:
    """The commas of text[start:end] that open no collection: those of the lines that are one
    flow mapping of scalars (``- {name: t1, unit: 'kW'}``), which separate its entries (such a
    line is that mapping, or the content of a string). ~0.15 s for 6 MB, so only when needed."""
    if text.find("{", start, end) < 0:
        return 0
    return "".join(_FLOW_MAPPING_LINE.findall(text, start, end)).count(",")


def _weigh(values: int, collections: int, chars: int) -> tuple[float, float]:
    """(Python objects and text, yaml-rs's document) in bytes, from the counts."""
    python = _PY_NODE * values + _PY_COLLECTION * collections + _PY_CHAR * chars
    document = _DOC_NODE * values + _DOC_COLLECTION * collections + _DOC_CHAR * chars
    return python, document


def parse_cost(text: str, start: int = 0, end: int | None = None) -> tuple[float, float]:
    """(Python objects and text, yaml-rs's document) in bytes that parsing text[start:end] takes
    at most, for the shapes measured."""
    end = len(text) if end is None else end
    values, collections = _counts(text, start, end)
    return _weigh(values, collections - _flow_entries(text, start, end), end - start)


class PieceError(ValueError):
    """A piece did not parse (``from_parser``: yaml-rs's error, its line counted in the file) or
    did not fit its place."""

    def __init__(self, message: str, *, from_parser: bool = False) -> None:
        self.from_parser = from_parser
        super().__init__(message)


# A plan: ("piece", start, end, blank) is parsed by yaml-rs (``blank``: where an item's content
# starts on its first line, which reads as spaces up to there: the '-' of the item and of any
# item it is the first content of); ("seq", parts) joins lists and ("item", plan) items;
# ("map", parts) joins mappings and ("key", start, end, blank, plan) entries whose key line
# is text[start:end].
Plan = tuple[Any, ...]


Load = Callable[[str], Any]


def _piece_text(text: str, start: int, end: int, blank: int | None) -> str:
    if blank is None:
        return text[start:end]
    return " " * (blank - start) + text[blank:end]


@dataclass
class _Planner:
    text: str
    load: Load
    largest: float  # the document cost of the largest piece, bytes: at least _PIECE_DOCUMENT
    children: int = 0  # planned apart so far

    def piece(self, start: int, end: int, blank: int | None) -> Plan:
        if end - start > PIECE_CHARS:  # smaller ones are bounded by _PIECE_DOCUMENT, not counted
            self.largest = max(self.largest, parse_cost(self.text, start, end)[1])
        return ("piece", start, end, blank)

    def node(self, start: int, end: int, indent: int, blank: int | None, depth: int) -> Plan:
        """The plan for the block node in text[start:end] whose entries sit at ``indent``."""
        text = self.text
        if end - start <= PIECE_CHARS or depth > _MAX_SPLIT_DEPTH:
            return self.piece(start, end, blank)
        if blank is not None:  # the first entry is on the item's line, after its '-'
            first = start + indent
        else:
            found = _SIGNIFICANT.search(text, start, end)
            if found is None or len(found.group(1)) != indent:
                return self.piece(start, end, blank)
            first = found.end()
            start = first - indent  # blank and comment lines before it are left out
        if not _BLOCK_ENTRY.match(text, first, end):  # a scalar, a flow collection: one piece
            return self.piece(start, end, blank)
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
                parts.append(self.piece(group, child, _within(blank, group, child)))
                group = child
            if cut - child > PIECE_CHARS:
                parts.append(self.child(child, cut, indent, is_seq, _within(blank, child, cut), depth))
                group = cut
            child = cut
        if child > group:
            parts.append(self.piece(group, child, _within(blank, group, child)))
        if len(parts) == 1 and parts[0][0] == "piece":  # not cut after all
            return parts[0]
        return ("seq" if is_seq else "map", parts)

    def key_alone(self, start: int, end: int, blank: int | None) -> bool:
        """Whether text[start:end] is a key with nothing after it: its value is the block below."""
        colon = self.text.rfind(":", start, end)
        if colon < 0 or not _LINE_REST.match(self.text, colon + 1, end) or end - start > 4096:
            return False
        try:
            entry = self.load(_piece_text(self.text, start, end, blank))
        except ValueError:
            return False
        return isinstance(entry, dict) and len(entry) == 1 and None in entry.values()

    def child(self, start: int, end: int, indent: int, is_seq: bool, blank: int | None, depth: int) -> Plan:
        """A child larger than a piece: its value is planned on its own when it is a block node."""
        text = self.text
        self.children += 1
        if self.children > _MAX_SPLIT_CHILDREN:
            return self.piece(start, end, blank)
        line_end = text.find("\n", start, end)
        line_end = end if line_end < 0 else line_end
        item = start + indent  # the '-' of an item
        if is_seq:
            content = item + 1
            while text.startswith(" ", content) and content < line_end:
                content += 1
            if content < line_end and text[content] not in "#\r\t":  # the content starts on this line
                return ("item", self.node(start, end, content - start, content, depth + 1))
            found = _SIGNIFICANT.search(text, line_end + 1, end) if line_end < end else None
            if found is None or len(found.group(1)) <= indent:
                return self.piece(start, end, blank)
            return ("item", self.node(line_end + 1, end, len(found.group(1)), None, depth + 1))
        if line_end >= end or not self.key_alone(start, line_end, blank):
            return self.piece(start, end, blank)
        found = _SIGNIFICANT.search(text, line_end + 1, end)
        if found is None:
            return self.piece(start, end, blank)
        value_indent = len(found.group(1))
        same_level_seq = value_indent == indent and text.startswith("- ", found.end())
        if value_indent <= indent and not same_level_seq:
            return self.piece(start, end, blank)
        value = self.node(line_end + 1, end, value_indent, None, depth + 1)
        return ("key", start, line_end, blank, value)


def _has_alias(text: str) -> bool:
    """Whether an alias may be in the text: a '*' after a space, a flow indicator or nothing,
    and before a name; a text with more than a few hundred '*' is taken to have one."""
    if text.count("*") > 500:
        return True
    at = text.find("*")
    while at >= 0:
        before, after = text[at - 1 : at] if at else " ", text[at + 1 : at + 2]
        if before in " \t\r\n[{," and after and after not in " \t\r\n[]{},":
            return True
        at = text.find("*", at + 1)
    return False


def _has_document_marks(text: str) -> bool:
    return text.startswith(_DOCUMENT_MARKS) or any("\n" + mark in text for mark in _DOCUMENT_MARKS)


def _within(blank: int | None, start: int, end: int) -> int | None:
    return blank if blank is not None and start < blank <= end else None


def plan_pieces(text: str, load: Load) -> tuple[Plan, float] | None:
    """How to parse text in pieces and the document cost of its largest piece, or None when it
    cannot be cut (aliases, document markers, directives) or is no larger than one piece."""
    if len(text) <= PIECE_CHARS or _has_alias(text) or _has_document_marks(text):
        return None
    found = _SIGNIFICANT.search(text)
    if found is None:
        return None
    planner = _Planner(text, load, _PIECE_DOCUMENT)
    plan = planner.node(0, len(text), len(found.group(1)), None, 0)
    if plan[0] == "piece":  # one piece after all: parsed whole
        return None
    return plan, planner.largest


class Estimate(NamedTuple):
    values: int  # a bound on the values, as counted by _counts
    need: float  # bytes the parse takes at most: in pieces when ``plan``, else whole
    whole: float  # bytes it takes parsed whole
    plan: Plan | None  # how to parse it in pieces


def estimate(text: str, limit: float, load: Load) -> Estimate:
    """What parsing the text takes, and how. Above ``limit`` for the Python objects alone it is
    not planned; ``load`` (yaml-rs's loads) reads the lines of keys whose values are planned apart.
    The flow-style lines are looked into only when the plain counts are over the limit."""
    values, collections = _counts(text, 0, len(text))
    python, document = _weigh(values, collections, len(text))
    planned = plan_pieces(text, load) if python <= limit else None
    need = python + (document if planned is None else planned[1])
    if need > limit and "{" in text:
        python, document = _weigh(values, collections - _flow_entries(text, 0, len(text)), len(text))
        if planned is None and python <= limit:
            planned = plan_pieces(text, load)
        need = python + (document if planned is None else planned[1])
    if planned is None:
        return Estimate(values, need, python + document, None)
    return Estimate(values, need, python + document, planned[0])


def parse_in_pieces(text: str, plan: Plan, load: Load) -> Any:
    """Run ``plan`` with ``load`` (yaml-rs's loads with the caller's options).

    Raises PieceError when a piece does not parse, or parses to something other than its place
    needs; a key repeated across pieces is reported as yaml-rs reports one within a piece."""

    def line_of(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    def parse(start: int, end: int, blank: int | None) -> Any:
        try:
            return load(_piece_text(text, start, end, blank))
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

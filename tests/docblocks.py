"""Fenced code blocks of Markdown files, with the directives that tell the tests how to run them.

A directive is an HTML comment on the line(s) just before a fence (blank lines allowed),
invisible when the Markdown is rendered::

    <!-- doc-test: skip reason="needs a PLC on the plant network" -->
    ```yaml
    ...

Keys (values may be quoted; a bare key is a flag):

- ``skip reason="..."``: intentionally not runnable. Use sparingly; the reason is reported.
- ``file=PATH``: write the block to PATH (relative to the tutorial's directory) instead of
  running it; later blocks use the file.
- ``background=NAME``: start the command in the background; ``ready="REGEX"`` waits until its
  output matches. A directive ``stop=NAME`` of its own (not before a fence; the reader
  presses Ctrl+C) sends SIGTERM and expects exit 0; the end of the tutorial stops the rest.
- ``retry=SECONDS``: re-run the block until it succeeds or SECONDS have passed (a query for
  data that arrives asynchronously).
- ``expect="REGEX"``: the block's output must match.
- ``timeout=SECONDS``: how long the block (or a background command's ``ready``) may take.
- ``fixture="..."``: the block sets up a server that the test's fixtures provide instead
  (e.g. ``apt-get install mosquitto``). It is not run; the reason is reported.
- ``root="..."``: the block changes the host as root (a user, /opt, a systemd unit, a Debian
  package), or talks to what such a block started. It runs when the test can act as that host
  (root, with a private systemd: tests/private_systemd.py); otherwise it is reported as
  skipped with the reason (under CI=true the test fails instead).
- ``pending="#14 status page"``: the block needs a feature that is not merged yet. It is run;
  when it fails, the test reports it as pending (xfail); when it passes, the test fails so
  the marker gets removed.
"""

from __future__ import annotations

__all__ = ["Block", "read_blocks"]

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`\n]*)$")
_DIRECTIVE = re.compile(r"^\s*<!--\s*doc-test:(?P<body>.*?)-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language, its text and its directives."""

    source: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    directives: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"

    def has(self, key: str) -> bool:
        return key in self.directives


def _parse_directive(body: str, where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        words = shlex.split(body)
    except ValueError as exc:
        raise ValueError(f"{where}: unreadable doc-test directive ({exc})") from None
    for word in words:
        key, _, value = word.partition("=")
        out[key] = value
    return out


def read_blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, in order, with the directives just before it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    pending: dict[str, str] = {}
    i = 0
    while i < len(lines):
        line = lines[i]
        m_dir = _DIRECTIVE.match(line)
        if m_dir:
            found = _parse_directive(m_dir.group("body"), f"{path}:{i + 1}")
            if "stop" in found:  # an action of its own (the reader presses Ctrl+C), not a block's
                blocks.append(Block(path, i + 1, "action", "", found))
            else:
                pending.update(found)
            i += 1
            continue
        m = _FENCE.match(line)
        if not m:
            if line.strip():
                pending = {}
            i += 1
            continue
        fence, indent = m.group("fence"), m.group("indent")
        lang = m.group("info").strip().split(" ")[0].lower()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            text = lines[j]
            body.append(text[len(indent) :] if text.startswith(indent) else text)
            j += 1
        if j == len(lines):
            raise ValueError(f"{path}:{i + 1}: code block is never closed")
        blocks.append(Block(path, i + 1, lang, "\n".join(body) + "\n", pending))
        pending = {}
        i = j + 1
    return blocks

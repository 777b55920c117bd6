"""Where a channel's numbers come from: ``[CONTAINER:]NAME[+NAME...][*k|/k]``.

The container is a CSV file (``weather.csv:temp_f``) or an InfluxDB measurement
(``weather:temp_c``); names are summed (``cnc1_good+cnc1_scrap``) and the optional factor
converts units (``apt_s/3600`` gives hours).
"""

from __future__ import annotations

__all__ = ["Ref", "parse_ref"]

import re
from dataclasses import dataclass

from edge_agent.evaluation._errors import EvaluationError

_SCALE = re.compile(r"^(?P<body>.*?)\s*(?P<op>[*/])\s*(?P<k>[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)$")


@dataclass(frozen=True, slots=True)
class Ref:
    """Columns or fields to add up, from the main source (``container=None``) or another one."""

    container: str | None
    names: tuple[str, ...]
    scale: float = 1.0

    def __str__(self) -> str:
        head = f"{self.container}:" if self.container else ""
        tail = "" if self.scale == 1.0 else f"*{self.scale:g}"
        return head + "+".join(self.names) + tail


def parse_ref(text: str, option: str, *, container_suffix: str | None = None) -> Ref:
    """Parse a spec; with ``container_suffix`` only a prefix ending in it counts as a container."""
    body, scale = text.strip(), 1.0
    m = _SCALE.match(body)
    if m:
        k = float(m.group("k"))
        if k == 0:
            raise EvaluationError(f"{option} {text!r}: a scale factor of zero makes no sense")
        body, scale = m.group("body"), (k if m.group("op") == "*" else 1.0 / k)
    container, sep, names = body.rpartition(":")
    if not sep or (container_suffix and not container.lower().endswith(container_suffix)):
        container, names = "", body
    parts = tuple(n.strip() for n in names.split("+"))
    if not all(parts):
        raise EvaluationError(
            f"{option} {text!r}: expected NAME, A+B, CONTAINER:NAME or NAME/FACTOR (e.g. apt_s/3600)"
        )
    return Ref(container or None, parts, scale)

"""Logging set-up: one line per event, device and tag named in the message, secrets never shown.

Three formats. ``rich`` (colour, wrapped) only makes sense on a terminal. Under a service
manager a record must stay one line with an unambiguous timestamp, or journald and log
shippers split one error into several: ``plain`` is ``2026-12-06T04:05:51.123Z ERROR logger:
message`` with newlines escaped, ``json`` is one object per line. ``auto`` picks rich on a
terminal and plain otherwise.
"""

from __future__ import annotations

__all__ = ["LOG_FORMATS", "JsonFormatter", "PlainFormatter", "resolve_format", "setup_logging"]

import json
import logging
import sys
import time
from typing import Literal, TextIO

from rich.logging import RichHandler

LogFormat = Literal["auto", "rich", "plain", "json"]
LOG_FORMATS: tuple[str, ...] = ("auto", "rich", "plain", "json")


def _iso_utc(created: float) -> str:
    """ISO 8601 UTC with milliseconds, e.g. ``2026-12-06T04:05:51.123Z``."""
    secs, ms = divmod(round(created * 1000), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ms:03d}Z"


def _one_line(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")


class PlainFormatter(logging.Formatter):
    """``<ISO-8601 UTC> <LEVEL> <logger>: <message>``; a traceback stays on the same line."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{_iso_utc(record.created)} {record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            text += " | " + self.formatException(record.exc_info)
        return _one_line(text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg (and exc with a traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, str] = {
            "ts": _iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def resolve_format(fmt: str, stream: TextIO | None = None) -> str:
    """``auto`` → ``rich`` when ``stream`` (stderr) is a terminal, else ``plain``."""
    if fmt != "auto":
        return fmt
    s = stream if stream is not None else sys.stderr
    isatty = getattr(s, "isatty", None)
    return "rich" if isatty is not None and isatty() else "plain"


def setup_logging(level: str = "info", *, rich: bool = True, fmt: str | None = None) -> None:
    """Configure the root logger once; third-party chatter is held at warning.

    ``fmt`` is one of :data:`LOG_FORMATS`; without it ``rich`` chooses between rich and plain
    (the historical switch, kept for callers such as the demo).
    """
    chosen = resolve_format(fmt) if fmt is not None else ("rich" if rich else "plain")
    if chosen not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {fmt!r}")
    handler: logging.Handler
    if chosen == "rich":
        handler = RichHandler(show_path=False, rich_tracebacks=False, markup=False)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter() if chosen == "json" else PlainFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("asyncua", "amqtt", "transitions", "urllib3", "matplotlib", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # pymodbus logs every unanswered request at ERROR; the driver reports failures itself,
    # once per outage and naming the device, so its own lines would only repeat them.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

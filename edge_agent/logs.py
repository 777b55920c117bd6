"""Logging set-up: one line per event, device and tag named in the message, secrets never shown."""

from __future__ import annotations

__all__ = ["setup_logging"]

import logging

from rich.logging import RichHandler


def setup_logging(level: str = "info", *, rich: bool = True) -> None:
    """Configure the root logger once; third-party chatter is held at warning."""
    handler: logging.Handler
    if rich:
        handler = RichHandler(show_path=False, rich_tracebacks=False, markup=False)
        fmt = "%(name)s: %(message)s"
    else:
        handler = logging.StreamHandler()
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("asyncua", "amqtt", "transitions", "urllib3", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # pymodbus logs every unanswered request at ERROR; the driver reports failures itself,
    # once per outage and naming the device, so its own lines would only repeat them.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

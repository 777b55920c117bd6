"""Keep credentials out of anything printed: passwords inside URLs (``scheme://user:pass@host``)."""

from __future__ import annotations

__all__ = ["redact", "redact_urls"]

import re
from typing import Any

_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/@\s'\"]*)@")


def redact_urls(text: str) -> str:
    """Replace the user-info part of every URL in ``text`` with ``***``."""
    return _URL_USERINFO.sub(r"\1***@", text)


def redact(value: Any) -> Any:
    """A copy of plain data (dicts, lists, strings) with URL credentials redacted."""
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_urls(value)
    return value

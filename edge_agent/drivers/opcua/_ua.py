"""asyncua's protocol types (``asyncua.ua``), typed as ``Any`` at this one boundary.

asyncua ships ``py.typed``, but its annotations use wrapper classes (``ua.Int16``,
``ua.Boolean``, ``ua.Double`` ...) that plain Python values never satisfy under
``mypy --strict``, and most names are re-exported implicitly. Every module of the driver
takes ``ua`` from here instead of sprinkling casts; asyncua's client API stays typed.
"""

from __future__ import annotations

__all__ = ["ua"]

from typing import Any

import asyncua.ua as _asyncua_ua

ua: Any = _asyncua_ua

"""Undo handles for injected faults.

Conditions that last (a unit that times out, an exception range, a Bad status) return a
:class:`Fault`; call ``clear()`` or use it as a context manager to undo it. One-shot
events (dropped connections, restarts, counter resets) need no handle.
"""

from __future__ import annotations

__all__ = ["Fault"]

from collections.abc import Callable
from types import TracebackType


class Fault:
    """One active fault. ``clear()`` is idempotent."""

    def __init__(self, description: str, undo: Callable[[], None]) -> None:
        self.description = description
        self._undo: Callable[[], None] | None = undo

    @property
    def active(self) -> bool:
        return self._undo is not None

    def clear(self) -> None:
        undo, self._undo = self._undo, None
        if undo is not None:
            undo()

    def __enter__(self) -> Fault:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.clear()

    def __repr__(self) -> str:
        state = "active" if self.active else "cleared"
        return f"<Fault {self.description} ({state})>"

"""LinkHub: connections shared between devices, owned by the runtime.

Several devices often reach the plant through one physical link: the units on an RS-485
line, or many unit ids behind one Modbus TCP gateway. Opening the link once per device
would collide on the serial port and overload gateways that serve a single connection, so
drivers ask the hub for a link by key and release it when they close. The runtime owns one
hub per agent (and closes what is left at shutdown); a driver used on its own (a test, the
conformance kit) gets a private hub, so nothing is shared behind anyone's back.
"""

from __future__ import annotations

__all__ = ["LinkHub", "SharedLink"]

from collections.abc import Callable, Hashable
from typing import Protocol, TypeVar


class SharedLink(Protocol):
    """What the hub needs of a link: a user count and a way to close it."""

    users: int

    def close(self) -> None: ...


L = TypeVar("L", bound=SharedLink)
M = TypeVar("M")


class LinkHub:
    """A registry of open links by key, reference-counted by the devices that use them."""

    def __init__(self) -> None:
        self._links: dict[Hashable, SharedLink] = {}
        self._memos: dict[Hashable, object] = {}

    def acquire(self, key: Hashable, create: Callable[[], L], *, kind: type[L]) -> L:
        """The open link for ``key`` (made with ``create`` if there is none), with one more user."""
        link = self._links.get(key)
        if link is None or link.users <= 0:
            link = self._links[key] = create()
        if not isinstance(link, kind):
            raise TypeError(f"link {key!r} is a {type(link).__name__}, not a {kind.__name__}")
        link.users += 1
        return link

    def release(self, link: SharedLink) -> None:
        """Drop one user; the last one closes the link and removes it from the hub."""
        link.users -= 1
        if link.users > 0:
            return
        link.close()
        for key, value in list(self._links.items()):
            if value is link:
                del self._links[key]

    def memo(self, key: Hashable, create: Callable[[], M]) -> M:
        """What is known about a link beyond one connection (e.g. which of its devices fail).

        Devices release a link while they back off, so its connection may be closed and made
        again many times; a memo lives as long as the hub.
        """
        if key not in self._memos:
            self._memos[key] = create()
        return self._memos[key]  # type: ignore[return-value]

    def open_links(self) -> dict[Hashable, SharedLink]:
        """The links open now, by key (for status and tests)."""
        return dict(self._links)

    def close(self) -> None:
        """Close every link still open (the runtime's shutdown; drivers normally release first)."""
        links, self._links = list(self._links.values()), {}
        for link in links:
            link.users = 0
            link.close()

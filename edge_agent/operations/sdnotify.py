"""systemd's notify protocol, spoken directly: one datagram per message to $NOTIFY_SOCKET.

The protocol is a few lines (``READY=1``, ``WATCHDOG=1``, ``STATUS=...`` over a unix
datagram socket, ``@`` meaning the abstract namespace), so no dependency is needed. The
watchdog is pinged only while :func:`~edge_agent.operations.health` says the agent's loops
are alive, so a wedged agent is restarted by systemd instead of pinging from a lone task.
"""

from __future__ import annotations

__all__ = ["Notifier", "watchdog_interval"]

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping

log = logging.getLogger("edge_agent.systemd")


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between pings (half of WatchdogSec), or None when systemd wants none from us."""
    e = os.environ if env is None else env
    usec = e.get("WATCHDOG_USEC")
    pid = e.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2e6
    except ValueError:
        log.warning("WATCHDOG_USEC=%r is not an integer; the systemd watchdog is not pinged", usec)
        return None


class Notifier:
    """Sends notify messages; a no-op when not started by systemd (no $NOTIFY_SOCKET)."""

    def __init__(self, address: str | None = None) -> None:
        addr = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self.address = ("\0" + addr[1:]) if addr and addr.startswith("@") else addr
        self._sock: socket.socket | None = None
        if self.address:
            # Non-blocking: a notify reader that stops reading must never stall the event loop.
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, **fields: str | int) -> bool:
        """``send(READY=1, STATUS="polling 4 devices")``; False if systemd could not be told."""
        if self._sock is None or self.address is None:
            return False
        msg = "\n".join(f"{k}={v}" for k, v in fields.items()).encode()
        try:
            self._sock.sendto(msg, self.address)
        except BlockingIOError:
            log.debug("systemd notify socket %s is full; %r dropped", self.address.lstrip("\0"), msg)
            return False
        except OSError as exc:
            log.warning("systemd notify to %s failed: %s", self.address.lstrip("\0"), exc)
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def watchdog(self, alive: Callable[[], str | None], interval: float) -> None:
        """Ping every ``interval`` s while ``alive()`` returns None; otherwise stop pinging and say why."""
        silent = False
        while True:
            reason = alive()
            if reason is None:
                self.send(WATCHDOG=1)
                if silent:
                    log.warning("systemd watchdog: loops alive again, pinging resumed")
                silent = False
            elif not silent:
                log.error("systemd watchdog: not pinging because %s; systemd will restart the agent", reason)
                self.send(STATUS=f"stalled: {reason}")
                silent = True
            await asyncio.sleep(interval)

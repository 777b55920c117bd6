"""One agent per buffer: an advisory lock file next to the buffer, holding the owner's pid.

Two agents on one buffer would deliver each other's rows twice and fight over cursors. The
lock is ``flock`` on ``<buffer>.lock``: the kernel drops it when the process dies (even on
``kill -9``), so a stale file never blocks a restart; the pid inside is only for the message.
"""

from __future__ import annotations

__all__ = ["InstanceLock"]

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType
from typing import Self

from edge_agent.errors import InstanceLockedError


def _describe(pid: str) -> str:
    """'pid 1234 (edge-agent run plant.yaml)' where /proc tells us the command line."""
    if not pid.isdigit():
        return "another process"
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return f"pid {pid}"
    return f"pid {pid} ({cmd})" if cmd else f"pid {pid}"


class InstanceLock:
    """``with InstanceLock(buffer_path):`` — raises InstanceLockedError if another process holds it."""

    def __init__(self, buffer_path: Path) -> None:
        self.buffer_path = Path(buffer_path)
        self.path = self.buffer_path.with_name(self.buffer_path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            os.close(fd)
            raise InstanceLockedError(
                f"buffer {self.buffer_path} is in use by another edge-agent: {_describe(holder)}. "
                "Stop that agent first, or give this one its own buffer.path."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

"""The driver API integrators implement: a small async context manager that reads batches.

A driver only connects, reads and closes. Polling cadence, reconnect backoff, Bad-quality
gap rows and log-once behaviour belong to the runtime, so every driver gets them for free.
Instances are re-entered after a connection loss (``__aexit__`` then ``__aenter__``), so
keep start-up work that survives reconnects (e.g. a compiled request plan) in ``__init__``.
"""

from __future__ import annotations

__all__ = ["Driver"]

import abc
from types import TracebackType
from typing import ClassVar, Generic, Self, TypeVar

from edge_agent.batch import SampleBatch
from edge_agent.config.model import DeviceConfig, TagConfig
from edge_agent.drivers.links import LinkHub
from edge_agent.errors import WriteNotAllowedError

C = TypeVar("C", bound=DeviceConfig)


class Driver(abc.ABC, Generic[C]):
    """Base class of every device driver.

    Subclasses set ``config_model`` to a :class:`DeviceConfig` subclass whose ``driver`` field
    is ``Literal["<entry-point name>"]`` and register under the ``edge_agent.drivers``
    entry-point group.
    """

    config_model: ClassVar[type[DeviceConfig]]
    #: True if :meth:`read` already marks every NaN/±Inf float Bad with status ``nonfinite``
    #: (``Cause.NONFINITE``). The runtime then skips its own check of each batch, which costs
    #: ~0.1 µs a column; leave it False unless the driver does so for every tag.
    marks_nonfinite: ClassVar[bool] = False

    def __init__(self, config: C) -> None:
        self.config = config
        #: Links shared with other devices (a serial line, a gateway). The runtime replaces
        #: this private hub with its own before connecting, so devices on one link share it.
        self.links = LinkHub()

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def tags(self) -> list[TagConfig]:
        return self.config.tag_configs()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open the connection; raise DeviceConnectError with a plain-words reason on failure."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the connection. Must not raise, and must be safe to call twice."""

    @abc.abstractmethod
    async def read(self) -> SampleBatch:
        """Return every sample gathered since the last call, stamped and quality-coded.

        Polling drivers read once; subscription drivers drain their notification queue.
        Raise DeviceConnectError when the link is gone so the runtime reconnects.
        """

    def describe_plan(self) -> str:
        """Human-readable acquisition plan for ``edge-agent validate --plan``."""
        return f"{self.name}: {len(self.tags)} tag(s), one read per poll"

    def check_writable(self, tag_name: str) -> TagConfig:
        """Shop-floor safety: refuse writes unless the config marks the tag writable."""
        for tag in self.tags:
            if tag.name == tag_name:
                if not tag.writable:
                    raise WriteNotAllowedError(
                        self.name,
                        f"write to tag {tag_name!r} refused: the agent only reads by default. "
                        "Set 'writable: true' on that tag in the config if writing is intended.",
                    )
                return tag
        raise WriteNotAllowedError(self.name, f"write to unknown tag {tag_name!r} refused")

    async def write(self, tag_name: str, value: float) -> None:
        """Write one value; drivers that support writes override this after check_writable."""
        self.check_writable(tag_name)
        raise WriteNotAllowedError(self.name, f"driver {type(self).__name__} does not support writes")

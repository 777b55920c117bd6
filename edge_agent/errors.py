"""One exception tree for the whole agent.

Every error an operator can see derives from :class:`EdgeAgentError`, so a caller can
catch "anything the agent raised on purpose" in one place. Messages are written for a
person at the machine: they name the device, tag or file, say what was expected and
what to do next.
"""

from __future__ import annotations

__all__ = [
    "BufferFullError",
    "ConfigError",
    "ConfigProblem",
    "DeviceConnectError",
    "DeviceExceptionError",
    "DeviceTimeoutError",
    "DriverError",
    "EdgeAgentError",
    "InstanceLockedError",
    "MissingExtraError",
    "PermanentSinkError",
    "PluginError",
    "SinkError",
    "TransientSinkError",
    "WriteNotAllowedError",
]

from dataclasses import dataclass


class EdgeAgentError(Exception):
    """Root of every error edge-agent raises deliberately."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One problem in a config file, located by YAML path and line."""

    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "line ?"
        return f"{where}: {self.path or '<root>'}: {self.message}"


class ConfigError(EdgeAgentError):
    """A config file (or value) is invalid. Carries every problem found, not just the first."""

    def __init__(self, file: str, problems: list[ConfigProblem]) -> None:
        self.file = file
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(
            f"{file}: {len(problems)} problem(s) in the configuration:\n{lines}\n"
            "Fix the listed keys and run 'edge-agent validate' again."
        )


class PluginError(EdgeAgentError):
    """A driver plugin could not be loaded, or two plugins claim the same name."""


class DriverError(EdgeAgentError):
    """A device could not be read. ``device`` names it for the log line."""

    def __init__(self, device: str, message: str) -> None:
        self.device = device
        super().__init__(f"device {device!r}: {message}")


class DeviceConnectError(DriverError):
    """The device could not be reached or the connection dropped."""


class DeviceTimeoutError(DriverError):
    """The device did not answer in time."""


class DeviceExceptionError(DriverError):
    """The device answered with a protocol-level exception (e.g. a Modbus exception code)."""

    def __init__(self, device: str, message: str, *, code: int | None = None) -> None:
        self.code = code
        super().__init__(device, message)


class WriteNotAllowedError(DriverError):
    """A write was refused because the config does not mark that register or node writable."""


class SinkError(EdgeAgentError):
    """A sink could not deliver a batch."""


class TransientSinkError(SinkError):
    """Delivery failed for a reason that may pass (timeout, 5xx, 429, broker down): retry."""


class PermanentSinkError(SinkError):
    """Delivery can never succeed for this batch (e.g. 400 malformed): quarantine it."""


class BufferFullError(EdgeAgentError):
    """The durable buffer reached its byte cap under the ``block`` policy.

    ``samples`` counts what was not stored when the refusal covers only part of a submission
    (None: all of it).
    """

    def __init__(self, message: str, *, samples: int | None = None) -> None:
        super().__init__(message)
        self.samples = samples


class InstanceLockedError(EdgeAgentError):
    """Another agent process holds this buffer; the message names its pid."""


class MissingExtraError(EdgeAgentError):
    """A command needs an optional extra (e.g. ``edge-agent[evaluate]``) that is not installed."""

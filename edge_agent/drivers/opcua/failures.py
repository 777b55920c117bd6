"""Translate asyncua / socket exceptions into the agent's DriverError tree.

The split decides what the runtime does: :class:`DeviceConnectError` makes it close the
session, back off and reconnect (session or link gone); :class:`DeviceTimeoutError` and
:class:`DeviceExceptionError` mark one Bad row and keep the session.
"""

from __future__ import annotations

__all__ = ["LINK_LOST_CODES", "as_connect_error", "status_of", "status_text", "translate"]

import asyncio
import socket

from edge_agent.drivers.opcua._ua import ua
from edge_agent.errors import DeviceConnectError, DeviceExceptionError, DeviceTimeoutError, DriverError

_S = ua.StatusCodes
#: Service results meaning the session or channel is gone: only a new session helps.
LINK_LOST_CODES = frozenset(
    {
        _S.BadSessionIdInvalid,
        _S.BadSessionClosed,
        _S.BadSessionNotActivated,
        _S.BadSecureChannelIdInvalid,
        _S.BadSecureChannelClosed,
        _S.BadSecureChannelTokenUnknown,
        _S.BadConnectionClosed,
        _S.BadNotConnected,
        _S.BadServerHalted,
        _S.BadShutdown,
        _S.BadServerNotConnected,
        _S.BadCommunicationError,
        _S.BadTcpSecureChannelUnknown,
        _S.BadNoSubscription,
        _S.BadSubscriptionIdInvalid,
    }
)


def status_of(dv: ua.DataValue) -> int:
    """The raw StatusCode of a DataValue; an omitted code means Good."""
    return dv.StatusCode.value if dv.StatusCode is not None else 0


def status_text(code: int) -> str:
    """``BadUserAccessDenied (0x801F0000)`` style, for messages."""
    try:
        name = ua.StatusCode(code).name
    except Exception:  # unknown codes have no name
        name = "StatusCode"
    return f"{name} (0x{code:08X})"


def translate(device: str, exc: BaseException, doing: str) -> DriverError:
    """Classify ``exc`` raised while ``doing`` something (e.g. 'reading 12 nodes')."""
    if isinstance(exc, DriverError):
        return exc
    if isinstance(exc, ua.UaStatusCodeError):
        code = int(exc.code)
        if code in LINK_LOST_CODES:
            return DeviceConnectError(device, f"session lost while {doing}: {status_text(code)}")
        if code == _S.BadTimeout:
            return DeviceTimeoutError(device, f"server timed out while {doing}: {status_text(code)}")
        return DeviceExceptionError(device, f"server refused {doing}: {status_text(code)}", code=code)
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return DeviceTimeoutError(device, f"no answer while {doing} (timeout)")
    if isinstance(exc, ConnectionRefusedError):
        return DeviceConnectError(
            device, f"connection refused while {doing}: is the server running, and are host and port right?"
        )
    if isinstance(exc, socket.gaierror):
        return DeviceConnectError(
            device, f"unknown host while {doing} ({exc}); check the endpoint's host name"
        )
    if isinstance(exc, ConnectionError | OSError):
        return DeviceConnectError(device, f"connection lost while {doing}: {exc or type(exc).__name__}")
    return DeviceExceptionError(device, f"{doing} failed: {type(exc).__name__}: {exc}")


def as_connect_error(error: DriverError) -> DeviceConnectError:
    """Any failure while connecting is a connect failure: the runtime logs it and backs off."""
    if isinstance(error, DeviceConnectError):
        return error
    message = str(error).removeprefix(f"device {error.device!r}: ")
    out = DeviceConnectError(error.device, message)
    out.__cause__ = error.__cause__
    return out

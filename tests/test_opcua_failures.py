"""Which asyncua failures make the runtime reconnect, and which only mark one Bad row."""

from __future__ import annotations

import socket

import pytest

from edge_agent.drivers.opcua._ua import ua
from edge_agent.drivers.opcua.failures import as_connect_error, status_text, translate
from edge_agent.errors import DeviceConnectError, DeviceExceptionError, DeviceTimeoutError, DriverError


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (ua.UaStatusCodeError(ua.StatusCodes.BadSessionIdInvalid), DeviceConnectError),
        (ua.UaStatusCodeError(ua.StatusCodes.BadSecureChannelClosed), DeviceConnectError),
        (ua.UaStatusCodeError(ua.StatusCodes.BadTimeout), DeviceTimeoutError),
        (ua.UaStatusCodeError(ua.StatusCodes.BadNodeIdUnknown), DeviceExceptionError),
        (TimeoutError(), DeviceTimeoutError),
        (ConnectionResetError("peer reset"), DeviceConnectError),
        (ConnectionRefusedError(111, "refused"), DeviceConnectError),
        (socket.gaierror(-2, "Name or service not known"), DeviceConnectError),
        (ValueError("odd"), DeviceExceptionError),
    ],
)
def test_translate_classifies(exc: BaseException, kind: type[DriverError]) -> None:
    err = translate("plc1", exc, "reading 3 node(s)")
    assert type(err) is kind
    assert str(err).startswith("device 'plc1': ") and "reading 3 node(s)" in str(err)


def test_service_errors_keep_their_status_code() -> None:
    err = translate("plc1", ua.UaStatusCodeError(ua.StatusCodes.BadNodeIdUnknown), "reading")
    assert isinstance(err, DeviceExceptionError) and err.code == ua.StatusCodes.BadNodeIdUnknown
    assert status_text(ua.StatusCodes.BadNodeIdUnknown) == "BadNodeIdUnknown (0x80340000)"
    assert "BadNodeIdUnknown (0x80340000)" in str(err)


def test_failures_while_connecting_become_connect_errors_without_a_double_prefix() -> None:
    original = DeviceExceptionError("plc1", "setting up failed: boom", code=5)
    err = as_connect_error(original)
    assert isinstance(err, DeviceConnectError) and str(err) == "device 'plc1': setting up failed: boom"
    same = DeviceConnectError("plc1", "gone")
    assert as_connect_error(same) is same


def test_refused_and_unknown_host_say_what_to_check() -> None:
    refused = translate("plc1", ConnectionRefusedError(111, "refused"), "connecting to opc.tcp://plc1:4840")
    assert "is the server running" in str(refused)
    unknown = translate("plc1", socket.gaierror(-2, "Name or service not known"), "connecting")
    assert "check the endpoint's host name" in str(unknown)

"""The only place that touches pymodbus's private client attributes.

pymodbus has no public API for three things a long-running gateway needs: failing the
request in flight the moment the link drops (instead of after every retry timed out), and
setting the reply timeout and retry count per request on a connection that several units
share. Each of these reaches into ``client.ctx`` (the TransactionManager). Keeping them here,
behind :func:`check_supported`, means a pymodbus upgrade that moves them fails one test
(tests/test_modbus_links.py) and one clear start-up error, not a silent hang in the field.
"""

from __future__ import annotations

__all__ = [
    "PYMODBUS_TESTED",
    "check_supported",
    "connect_timeout",
    "fail_pending_request",
    "set_request_limits",
]

import asyncio
from typing import Any

import pymodbus

from edge_agent.errors import DriverError

#: The pymodbus release line these accessors were written against (pyproject pins it).
PYMODBUS_TESTED = "3.16"


def check_supported(client: Any, device: str) -> None:
    """Fail clearly (naming ``device``) if this pymodbus lacks the attributes the accessors use."""
    ctx = getattr(client, "ctx", None)
    missing = [
        name
        for name, owner in (("ctx", client), ("comm_params", ctx), ("retries", ctx), ("response_future", ctx))
        if owner is None or not hasattr(owner, name)
    ]
    params = getattr(ctx, "comm_params", None)
    if params is not None and not hasattr(params, "timeout_connect"):
        missing.append("comm_params.timeout_connect")
    if missing:
        raise DriverError(
            device,
            f"pymodbus {pymodbus.__version__} lacks client internals {', '.join(missing)} that the "
            f"Modbus driver relies on (written for pymodbus {PYMODBUS_TESTED}.x); install the "
            "pymodbus version pinned by edge-agent",
        )


def fail_pending_request(client: Any, exc: BaseException) -> None:
    """Fail the request waiting for an answer (if any) with ``exc``."""
    future: asyncio.Future[Any] | None = getattr(client.ctx, "response_future", None)
    if future is not None and not future.done():
        future.set_exception(exc)


def set_request_limits(client: Any, *, reply_timeout: float, retries: int) -> None:
    """Reply timeout and retries for the next request (pymodbus uses one timeout for both)."""
    client.ctx.comm_params.timeout_connect = reply_timeout
    client.ctx.retries = retries


def connect_timeout(client: Any) -> float:
    """The timeout pymodbus applies to opening the link, in seconds."""
    return float(client.ctx.comm_params.timeout_connect)

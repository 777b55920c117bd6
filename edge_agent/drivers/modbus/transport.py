"""Connections: one per Modbus TCP device, one shared owner per serial line.

Every unit on an RS-485 line (or behind a transparent RTU-over-TCP converter) shares one
:class:`Connection` from a process-wide registry keyed by port, which serialises frames
and keeps the inter-frame silence. pymodbus does the framing, timeouts and retries; this
module adds what it lacks for a long-running gateway: a dropped link is reported at once
(not after every retry timed out), a half-open link is closed after repeated silence, and
all of it is mapped onto the agent's error tree with the device and endpoint named.
"""

from __future__ import annotations

__all__ = ["SILENCE_LIMIT", "Connection", "open_connection", "release_connection", "shared_lines"]

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ModbusPDU

from edge_agent.drivers.modbus.config import ModbusDeviceConfig
from edge_agent.drivers.modbus.frames import RAW_RESPONSES
from edge_agent.errors import DeviceConnectError, DeviceExceptionError, DeviceTimeoutError

log = logging.getLogger("edge_agent.drivers.modbus")

#: Consecutive unanswered requests (per user of a connection) after which the link is
#: presumed half-open and closed, so the runtime reconnects instead of timing out forever.
SILENCE_LIMIT = 3
_NEVER = 1 << 30  # pymodbus's own disconnect-on-silence is replaced by SILENCE_LIMIT

_shared: dict[tuple[str, ...], Connection] = {}


def shared_lines() -> dict[tuple[str, ...], Connection]:
    """The open shared lines, keyed by ('serial', port) or ('rtu_over_tcp', host, port)."""
    return dict(_shared)


def _line_key(config: ModbusDeviceConfig) -> tuple[str, ...] | None:
    if config.transport == "serial":
        assert config.serial_port is not None
        return ("serial", config.serial_port)
    if config.transport == "rtu_over_tcp":
        return ("rtu_over_tcp", str(config.host), str(config.port))
    return None


def _serial_settings(config: ModbusDeviceConfig) -> tuple[int, str, int, int]:
    return (config.baudrate, config.parity, config.stopbits, config.bytesize)


class Connection:
    """One pymodbus client, its lock and its line discipline; shared by every unit on a line."""

    def __init__(self, config: ModbusDeviceConfig, *, shared: bool) -> None:
        self.shared = shared
        self.owner = config.name
        self.settings = _serial_settings(config)
        self.loop = asyncio.get_running_loop()
        self.users = 0
        self.lock = asyncio.Lock()
        self._last_frame = 0.0
        self._in_flight = False
        self._silent = 0
        common: dict[str, Any] = {
            "timeout": config.timeout,
            "retries": config.retries,
            "reconnect_delay": 0,  # the runtime owns reconnects (with capped jittered backoff)
            "trace_connect": self._on_link_change,
        }
        self.client: AsyncModbusTcpClient | AsyncModbusSerialClient
        if config.transport == "serial":
            assert config.serial_port is not None
            self.client = AsyncModbusSerialClient(
                config.serial_port,
                framer=FramerType.RTU,
                baudrate=config.baudrate,
                parity=config.parity,
                stopbits=config.stopbits,
                bytesize=config.bytesize,
                **common,
            )
        else:
            framer = FramerType.RTU if config.transport == "rtu_over_tcp" else FramerType.SOCKET
            self.client = AsyncModbusTcpClient(str(config.host), port=config.port, framer=framer, **common)
        self.client.set_max_no_responses(_NEVER)
        for response in RAW_RESPONSES:  # keep payload bytes for numpy (see frames.py)
            self.client.register(response)

    @property
    def connected(self) -> bool:
        return bool(self.client.connected)

    def _on_link_change(self, up: bool) -> None:
        """Fail the request in flight as soon as the transport reports the link lost."""
        if up or not self._in_flight:
            return
        future: asyncio.Future[Any] | None = getattr(self.client.ctx, "response_future", None)
        if future is not None and not future.done():
            future.set_exception(ConnectionException("connection lost during the request"))

    async def ensure_open(self, device: str, endpoint: str) -> None:
        async with self.lock:
            if self.connected:
                return
            if not await self.client.connect():
                raise DeviceConnectError(
                    device,
                    f"cannot open {endpoint}: refused, unreachable or port missing "
                    f"(within {self.client.ctx.comm_params.timeout_connect:g} s); retrying with backoff",
                )
            self._silent = 0

    async def call(
        self,
        request: Callable[[], Awaitable[ModbusPDU]],
        *,
        device: str,
        what: Callable[[], str],
        reply_timeout: float,
        retries: int,
        frame_gap: float,
    ) -> ModbusPDU:
        """Run one request on the line; Modbus exception replies are returned, not raised.

        ``what`` describes the request for error messages; it is only called on failure.
        """
        async with self.lock:
            if not self.connected:
                raise DeviceConnectError(device, f"{what()}: connection lost; reconnecting with backoff")
            if self.shared:  # units on one line may each have their own timeout and retries
                self.client.ctx.comm_params.timeout_connect = reply_timeout
                self.client.ctx.retries = retries
            if frame_gap > 0:
                wait = self._last_frame + frame_gap - self.loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
            self._in_flight = True
            try:
                response = await request()
            except ConnectionException as exc:
                raise DeviceConnectError(device, f"{what()}: connection lost ({exc.string})") from exc
            except ModbusIOException as exc:
                self._silent += 1
                if self._silent >= SILENCE_LIMIT * max(self.users, 1):
                    self.client.close()
                    raise DeviceConnectError(
                        device,
                        f"{what()}: {self._silent} requests in a row unanswered; "
                        "closing the connection and reconnecting",
                    ) from exc
                message = (
                    f"{what()}: no answer within {reply_timeout:g} s after {retries} retr"
                    f"{'y' if retries == 1 else 'ies'}; check unit id, wiring and power"
                )
                if self.shared:  # back this unit off so the others on the line keep their rate
                    raise DeviceConnectError(device, message + "; backing off this unit") from exc
                raise DeviceTimeoutError(device, message) from exc
            except ModbusException as exc:
                raise DeviceExceptionError(device, f"{what()}: {exc}") from exc
            except OSError as exc:
                raise DeviceConnectError(device, f"{what()}: link error {exc}") from exc
            finally:
                self._in_flight = False
                self._last_frame = self.loop.time()
            self._silent = 0
            return response

    def close(self) -> None:
        self.client.close()


async def open_connection(config: ModbusDeviceConfig) -> Connection:
    """A private connection for Modbus TCP; the line's shared owner for serial and RTU over TCP."""
    key = _line_key(config)
    loop = asyncio.get_running_loop()
    if key is None:
        conn = Connection(config, shared=False)
    else:
        found = _shared.get(key)
        if found is None or found.loop is not loop or found.users <= 0:
            found = _shared[key] = Connection(config, shared=True)
        elif config.transport == "serial" and found.settings != _serial_settings(config):
            raise DeviceConnectError(
                config.name,
                f"serial line {config.serial_port} is already open by device {found.owner!r} with "
                f"baudrate/parity/stopbits/bytesize {found.settings}, but this device asks for "
                f"{_serial_settings(config)}; every unit on one line must use the same settings",
            )
        conn = found
    conn.users += 1
    try:
        await conn.ensure_open(config.name, config.endpoint)
    except BaseException:
        release_connection(conn)
        raise
    return conn


def release_connection(conn: Connection) -> None:
    """Drop one user; the last one closes the port (or socket) and unregisters the line."""
    conn.users -= 1
    if conn.users > 0:
        return
    conn.close()
    for key, value in list(_shared.items()):
        if value is conn:
            del _shared[key]

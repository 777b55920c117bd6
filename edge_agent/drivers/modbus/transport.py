"""Connections: shared by every unit on one line or behind one gateway, from the runtime's hub.

Every unit on an RS-485 line (or behind a transparent RTU-over-TCP converter) must share one
:class:`Connection`, which serialises frames and keeps the inter-frame silence. Units behind
one Modbus TCP gateway (one host and port, several unit ids) share one by default too, since
many gateways serve a single connection; ``shared_connection: false`` gives a device its own
where a gateway serves parallel connections. Links come from the runtime's
:class:`~edge_agent.drivers.links.LinkHub`.

pymodbus does the framing, timeouts and retries; this module adds what it lacks for a
long-running gateway: a dropped link is reported at once (not after every retry timed out),
a half-open link is closed after repeated silence, a line on which no unit answers is
diagnosed as a line problem (baud rate, parity, wiring), a serial port that cannot be
opened or configured says why, and all of it is mapped onto the agent's error tree with
the device and endpoint named.
"""

from __future__ import annotations

__all__ = ["SILENCE_LIMIT", "Connection", "LineHealth", "link_key", "open_connection", "release_connection"]

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import serial
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ModbusPDU

from edge_agent.drivers.links import LinkHub
from edge_agent.drivers.modbus import client_internals
from edge_agent.drivers.modbus.config import ModbusDeviceConfig
from edge_agent.drivers.modbus.frames import RAW_RESPONSES
from edge_agent.errors import DeviceConnectError, DeviceExceptionError, DeviceTimeoutError

log = logging.getLogger("edge_agent.drivers.modbus")

#: Consecutive unanswered requests (per user of a connection) after which the link is
#: presumed half-open and closed, so the runtime reconnects instead of timing out forever.
SILENCE_LIMIT = 3
_NEVER = 1 << 30  # pymodbus's own disconnect-on-silence is replaced by SILENCE_LIMIT
T = TypeVar("T")


async def _keeping_cancellation(operation: Awaitable[T]) -> T:
    """Await a pymodbus operation without losing a cancellation of the calling task.

    pymodbus waits for answers and connects with ``asyncio.wait_for``, which before Python
    3.12 loses a cancellation that arrives in the loop iteration in which the awaited
    operation completes (CPython gh-86296): the answer is returned (or the link error
    raised) and the task runs on as if never cancelled, so a poller polls on and whoever
    stops it waits forever. A cancellation requested during the await (the task's
    ``cancelling()`` count went up) that did not come out as CancelledError is raised here.
    """
    task = asyncio.current_task()
    requested = task.cancelling() if task is not None else 0
    try:
        result = await operation
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if task is not None and task.cancelling() > requested:
            raise asyncio.CancelledError from exc
        raise
    if task is not None and task.cancelling() > requested:
        raise asyncio.CancelledError
    return result


def link_key(config: ModbusDeviceConfig) -> tuple[str, ...]:
    """The hub key of the link a device uses: its line, its gateway, or its own connection."""
    if config.transport == "serial":
        assert config.serial_port is not None
        return ("serial", config.serial_port)
    key = (config.transport, str(config.host), str(config.port))
    if config.transport == "tcp" and not config.shared_connection:
        return (*key, "device", config.name)
    return key


@dataclass
class LineHealth:
    """Which devices use a line and which of them failed last time (kept across reconnects)."""

    devices: set[str] = field(default_factory=set)
    failing: dict[str, bool] = field(default_factory=dict)  # device -> garbled bytes came back

    def hint(self, device: str, garbled: bool, where: str) -> str:
        """When no unit on a shared line answers, the line itself is the likely cause."""
        self.failing[device] = garbled
        if not self.devices <= self.failing.keys():
            return ""
        if len(self.devices) < 2 and not garbled:
            return ""  # one silent unit: its own unit id, power or wiring (said already)
        how = "garbled replies (CRC or framing errors)" if any(self.failing.values()) else "silence"
        return (
            f"; no unit on line {where} answers ({len(self.failing)} of {len(self.devices)} failing, "
            f"{how}): the likely cause is the line's baud rate, parity or wiring "
            "(A/B swapped, missing termination or ground), not the units"
        )


def _serial_settings(config: ModbusDeviceConfig) -> tuple[int, str, int, int]:
    return (config.baudrate, config.parity, config.stopbits, config.bytesize)


def _serial_open_problem(config: ModbusDeviceConfig) -> str:
    """Why the serial port cannot be opened with these settings, in plain words ('' if it can)."""
    port = config.serial_port
    assert port is not None
    if not os.path.exists(port):
        return (
            f"serial port {port} does not exist; check the device path (ls /dev/serial/by-id) "
            "and that the adapter is plugged in"
        )
    baud, parity, stopbits, bytesize = _serial_settings(config)
    try:
        serial.Serial(port, baudrate=baud, parity=parity, stopbits=stopbits, bytesize=bytesize).close()
    except (serial.SerialException, ValueError, OSError) as exc:
        if isinstance(exc, PermissionError) or "Permission denied" in str(exc):
            return f"permission denied on {port}; add the agent's user to the 'dialout' group"
        return (
            f"the port cannot be configured for {baud} baud {bytesize}{parity}{stopbits} ({exc}); "
            "check that it is a serial device and supports these settings"
        )
    return ""


class Connection:
    """One pymodbus client, its lock and its line discipline; shared by every unit on a link."""

    def __init__(self, config: ModbusDeviceConfig, *, shared: bool, health: LineHealth) -> None:
        self.shared = shared
        self.health = health
        self.owner = config.name
        self.transport = config.transport
        self.where = (
            str(config.serial_port) if config.transport == "serial" else f"{config.host}:{config.port}"
        )
        self.settings = _serial_settings(config)
        self.loop = asyncio.get_running_loop()
        self.users = 0
        self.lock = asyncio.Lock()
        self._last_frame = 0.0
        self._in_flight = False
        self._silent = 0
        self._received = 0  # bytes received on the link, valid frames or not
        common: dict[str, Any] = {
            "timeout": config.timeout,
            "retries": config.retries,
            "reconnect_delay": 0,  # the runtime owns reconnects (with capped jittered backoff)
            "trace_connect": self._on_link_change,
            "trace_packet": self._on_packet,
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
        client_internals.check_supported(self.client, config.name)
        self.client.set_max_no_responses(_NEVER)
        for response in RAW_RESPONSES:  # keep payload bytes for numpy (see frames.py)
            self.client.register(response)

    @property
    def connected(self) -> bool:
        return bool(self.client.connected)

    def _on_link_change(self, up: bool) -> None:
        """Fail the request in flight as soon as the transport reports the link lost."""
        if not up and self._in_flight:
            client_internals.fail_pending_request(
                self.client, ConnectionException("connection lost during the request")
            )

    def _on_packet(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            self._received += len(data)
        return data

    async def ensure_open(self, config: ModbusDeviceConfig) -> None:
        async with self.lock:
            if self.connected:
                return
            if not await _keeping_cancellation(self.client.connect()):
                timeout = client_internals.connect_timeout(self.client)
                reason = f"refused, unreachable or port missing (within {timeout:g} s)"
                if config.transport == "serial":
                    reason = await asyncio.to_thread(_serial_open_problem, config) or reason
                raise DeviceConnectError(
                    config.name, f"cannot open {config.endpoint}: {reason}; retrying with backoff"
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
    ) -> tuple[ModbusPDU, int]:
        """Run one request on the link; return its answer and the time it arrived (ns).

        Modbus exception replies are returned, not raised. ``what`` describes the request for
        error messages; it is only called on failure.
        """
        async with self.lock:
            if not self.connected:
                raise DeviceConnectError(device, f"{what()}: connection lost; reconnecting with backoff")
            if self.shared:  # units on one link may each have their own timeout and retries
                client_internals.set_request_limits(self.client, reply_timeout=reply_timeout, retries=retries)
            if frame_gap > 0:
                wait = self._last_frame + frame_gap - self.loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
            self._in_flight = True
            received = self._received
            try:
                response = await _keeping_cancellation(request())
                answered_ns = time.time_ns()
            except ConnectionException as exc:
                raise DeviceConnectError(device, f"{what()}: connection lost ({exc.string})") from exc
            except ModbusIOException as exc:
                garbled = self._received > received
                hint = "" if self.transport == "tcp" else self.health.hint(device, garbled, self.where)
                self._silent += 1
                if self._silent >= SILENCE_LIMIT * max(self.users, 1):
                    self.client.close()
                    raise DeviceConnectError(
                        device,
                        f"{what()}: {self._silent} requests in a row unanswered; "
                        f"closing the connection and reconnecting{hint}",
                    ) from exc
                heard = (
                    f", {self._received - received} byte(s) received that were no valid answer"
                    if garbled
                    else ""
                )
                message = (
                    f"{what()}: no answer within {reply_timeout:g} s after {retries} retr"
                    f"{'y' if retries == 1 else 'ies'}{heard}; check unit id, wiring and power{hint}"
                )
                if self.shared:  # back this unit off so the others on the link keep their rate
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
            self.health.failing.pop(device, None)
            return response, answered_ns

    def close(self) -> None:
        self.client.close()


async def open_connection(config: ModbusDeviceConfig, hub: LinkHub) -> Connection:
    """The device's link from ``hub``: shared per line or gateway, or its own (see link_key)."""
    key = link_key(config)

    health = hub.memo(key, LineHealth)
    health.devices.add(config.name)

    def create() -> Connection:
        return Connection(config, shared=key[-2:] != ("device", config.name), health=health)

    conn = hub.acquire(key, create, kind=Connection)
    try:
        if config.transport == "serial" and conn.settings != _serial_settings(config):
            raise DeviceConnectError(
                config.name,
                f"serial line {config.serial_port} is already open by device {conn.owner!r} with "
                f"baudrate/parity/stopbits/bytesize {conn.settings}, but this device asks for "
                f"{_serial_settings(config)}; every unit on one line must use the same settings",
            )
        await conn.ensure_open(config)
    except BaseException:
        release_connection(conn, hub)
        raise
    return conn


def release_connection(conn: Connection, hub: LinkHub) -> None:
    """Drop one user; the last one closes the port (or socket) and leaves the hub."""
    hub.release(conn)

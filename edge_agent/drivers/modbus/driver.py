"""ModbusDriver: compiled plan + shared-line transport + vectorised decode.

A poll sends the planned requests, copies each answer into the device image and decodes
the image in one pass. A request the device refuses as an illegal address is bisected (and
the split remembered) until only the tags at the bad registers are Bad; their neighbours
keep their values. Losing the link raises DeviceConnectError so the runtime reconnects.
"""

from __future__ import annotations

__all__ = ["ModbusDriver"]

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import ClassVar, cast

import numpy as np
from pymodbus.pdu import ExceptionResponse, ModbusPDU

from edge_agent.batch import SampleBatch, now_ns
from edge_agent.config.model import DeviceConfig
from edge_agent.drivers.base import Driver
from edge_agent.drivers.modbus.codec import Decoder, encode_value
from edge_agent.drivers.modbus.config import BIT_TABLES, ModbusDeviceConfig, ModbusTagConfig
from edge_agent.drivers.modbus.exceptions import GATEWAY_CODES, MALFORMED, SPLIT_CODES, describe_code
from edge_agent.drivers.modbus.frames import payload_bits, payload_words
from edge_agent.drivers.modbus.image import RegisterImage
from edge_agent.drivers.modbus.planner import Request, SpanTable, TagSpan, build_plan, split_request
from edge_agent.drivers.modbus.transport import Connection, open_connection, release_connection
from edge_agent.errors import DeviceConnectError, DeviceExceptionError, DeviceTimeoutError

log = logging.getLogger("edge_agent.drivers.modbus")

_READ = {
    "holding": "read_holding_registers",
    "input": "read_input_registers",
    "coil": "read_coils",
    "discrete_input": "read_discrete_inputs",
}
_EMPTY = np.empty(0, dtype=np.uint8)
#: A refused leaf request is retried after 2, 4, 8 ... polls, at most this many.
MAX_HOLD_POLLS = 64


class ModbusDriver(Driver[ModbusDeviceConfig]):
    """Reads one Modbus unit (TCP, RTU over TCP or serial) with the fewest requests per poll."""

    config_model: ClassVar[type[DeviceConfig]] = ModbusDeviceConfig
    marks_nonfinite: ClassVar[bool] = True  # the decoder does, per float vector

    def __init__(self, config: ModbusDeviceConfig) -> None:
        super().__init__(config)
        base = config.address_base
        # Per-tag state lives in columns (the spans, the decoder's index arrays), not in one
        # object per tag: the config's tag models are the only per-tag objects a device keeps.
        self._tag_list: list[ModbusTagConfig] = config.tags
        spans = [TagSpan(i, t.table, t.address - base, t.register_count) for i, t in enumerate(config.tags)]
        plan = build_plan(
            spans,
            max_registers=config.max_registers_per_request,
            max_bits=config.max_bits_per_request,
            max_gap=config.max_gap,
        )
        self._spans = SpanTable(spans)
        del spans
        self._requests: list[Request] = list(plan.requests)  # learned splits replace entries
        self._planned = len(plan.requests)
        self._image = RegisterImage(plan)
        self._decoder = Decoder(config.name, self._tag_list, plan.positions)
        self._frame_gap = config.frame_gap
        self._conn: Connection | None = None
        self._poll_no = 0
        self._held: dict[Request, tuple[int, int, int]] = {}  # refused leaf -> (code, retry at, streak)
        self._failing: set[Request] = set()

    # -- connection -------------------------------------------------------------------------

    async def connect(self) -> None:
        if self._conn is None:
            self._conn = await open_connection(self.config, self.links)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            release_connection(conn, self.links)

    def _link(self) -> Connection:
        if self._conn is None:
            raise DeviceConnectError(self.name, f"{self.config.endpoint}: not connected")
        return self._conn

    async def _send(
        self, conn: Connection, call: Callable[[], Awaitable[ModbusPDU]], describe: Callable[[], str]
    ) -> tuple[ModbusPDU, int]:
        cfg = self.config
        return await conn.call(
            call,
            device=self.name,
            what=lambda: f"{cfg.endpoint}: {describe()}",
            reply_timeout=cfg.timeout,
            retries=cfg.retries,
            frame_gap=self._frame_gap,
        )

    # -- polling ----------------------------------------------------------------------------

    async def read(self) -> SampleBatch:
        """One poll. Refused registers make only their tags Bad; a dead link raises.

        The samples are stamped when the poll's last answer arrived, not when the poll began:
        on a shared line a request may wait for other units first, and every value must have
        been in the device at its timestamp.
        """
        conn = self._link()
        client, unit, image = conn.client, self.config.unit_id, self._image
        ts = 0
        self._poll_no += 1
        image.begin_poll()
        answered = 0
        refused: list[tuple[Request, int]] = []
        queue = deque(self._requests)
        while queue:
            req = queue.popleft()
            if self._held and req in self._held:
                code, retry_at, _ = self._held[req]
                if self._poll_no < retry_at:
                    image.fail(req, code)
                    refused.append((req, code))
                    continue
            call = partial(getattr(client, _READ[req.table]), req.start, count=req.count, device_id=unit)
            response, ts = await self._send(conn, call, partial(self._describe, req))
            payload, code = self._payload(req, response)
            if code == 0:
                image.store(req, payload)
                answered += 1
                if self._failing and req in self._failing:
                    self._recovered(req)
                continue
            if code in GATEWAY_CODES:  # the unit behind a gateway is unreachable: fail the poll
                where = (
                    f"{self.config.endpoint}: {self._describe(req)}: gateway replied {describe_code(code)}"
                )
                if code == 0x0B:
                    raise DeviceTimeoutError(self.name, where)
                raise DeviceExceptionError(self.name, where, code=code)
            halves = split_request(req, self._spans) if code in SPLIT_CODES else None
            if halves is not None:
                self._split(req, halves, code)
                queue.extendleft(reversed(halves))
                continue
            image.fail(req, code)
            refused.append((req, code))
            self._refused(req, code)
        if refused and not answered:
            req, code = refused[0]
            raise DeviceExceptionError(
                self.name,
                f"{self.config.endpoint}: every request was refused, e.g. {self._describe(req)}: "
                f"{describe_code(code)}; check the unit id and the register map",
                code=None if code == MALFORMED else code,
            )
        return self._decoder.decode(image, ts or now_ns())

    @staticmethod
    def _payload(req: Request, response: ModbusPDU) -> tuple[np.ndarray, int]:
        """The answer's values and 0, or an empty array and the exception code (MALFORMED if short)."""
        if isinstance(response, ExceptionResponse):
            return _EMPTY, int(response.exception_code)
        values = payload_bits(response) if req.is_bits else payload_words(response)
        if values.size < req.count or (not req.is_bits and values.size != req.count):
            return _EMPTY, MALFORMED
        return values, 0

    def _split(self, req: Request, halves: tuple[Request, Request], code: int) -> None:
        """Remember the split: later polls read the halves directly."""
        i = self._requests.index(req)
        self._requests[i : i + 1] = halves
        self._failing.discard(req)
        self._held.pop(req, None)
        log.info(
            "device %r: %s answered %s; split into %s and %s (remembered)",
            self.name,
            self._describe(req),
            describe_code(code),
            self._span_text(halves[0]),
            self._span_text(halves[1]),
        )

    def _refused(self, req: Request, code: int) -> None:
        if code in SPLIT_CODES:  # a single span the device refuses: retry it less and less often
            streak = self._held[req][2] + 1 if req in self._held else 1
            self._held[req] = (code, self._poll_no + min(2**streak, MAX_HOLD_POLLS), streak)
        if req not in self._failing:
            self._failing.add(req)
            log.warning(
                "device %r (%s): %s refused with %s; those tag(s) are Bad, the others are unaffected",
                self.name,
                self.config.endpoint,
                self._describe(req),
                describe_code(code),
            )

    def _recovered(self, req: Request) -> None:
        self._failing.discard(req)
        self._held.pop(req, None)
        log.info("device %r: %s readable again", self.name, self._describe(req))

    # -- description ------------------------------------------------------------------------

    @property
    def requests(self) -> tuple[Request, ...]:
        """The requests one poll sends now, including splits learned from device refusals."""
        return tuple(self._requests)

    def _span_text(self, req: Request) -> str:
        base = self.config.address_base
        return f"{req.table} {req.start + base}..{req.end - 1 + base}"

    def _describe(self, req: Request) -> str:
        names = [self._tag_list[i].name for i in req.tags]
        shown = ", ".join(names[:4]) + (f" +{len(names) - 4} more" if len(names) > 4 else "")
        return f"{self._span_text(req)} (tag{'s' if len(names) > 1 else ''} {shown})"

    def describe_plan(self) -> str:
        """The request plan as ``edge-agent validate --plan`` prints it, addresses as configured."""
        cfg = self.config
        split = len(self._requests) - self._planned
        lines = [
            f"{cfg.name}: modbus {cfg.endpoint}, {len(self._tag_list)} tag(s) in "
            f"{len(self._requests)} request(s) per poll"
            + (f" ({split} more after learned splits)" if split > 0 else ""),
            f"  limits: {cfg.max_registers_per_request} registers / {cfg.max_bits_per_request} bits "
            f"per request, gaps up to {cfg.max_gap} filled, address_base {cfg.address_base}, "
            f"timeout {cfg.timeout:g} s, retries {cfg.retries}",
        ]
        if cfg.transport != "tcp":
            settings = (
                f"{cfg.baudrate} baud {cfg.bytesize}{cfg.parity}{cfg.stopbits}, "
                if cfg.transport == "serial"
                else ""
            )
            lines.append(
                f"  shared line: {settings}{self._frame_gap * 1000:.1f} ms between frames, "
                "one request at a time for every unit on it"
            )
        for req in self._requests:
            unit = ("bit" if req.table in BIT_TABLES else "register") + ("s" if req.count > 1 else "")
            tags = [self._tag_list[i] for i in req.tags]
            used = len({a for i in req.tags for a in range(self._spans[i].start, self._spans[i].end)})
            filled = f", {req.count - used} gap" if req.count > used else ""
            lines.append(
                f"  {req.table:<14} {req.start + cfg.address_base:>5}..{req.end - 1 + cfg.address_base:<5} "
                f"{req.count:>4} {unit}{filled}: " + ", ".join(f"{t.name}:{t.data_type}" for t in tags)
            )
        return "\n".join(lines)

    # -- writes -----------------------------------------------------------------------------

    async def write(self, tag_name: str, value: float | int | bool | str) -> None:
        """Write one tag, only if the config marks it ``writable: true``; same codec as reads."""
        tag = cast(ModbusTagConfig, self.check_writable(tag_name))
        op = encode_value(self.name, tag, value)
        conn = self._link()
        client, unit = conn.client, self.config.unit_id
        address = tag.address - self.config.address_base
        call: Callable[[], Awaitable[ModbusPDU]]
        if op.coil is not None:
            call = partial(client.write_coil, address, op.coil, device_id=unit)
        elif len(op.registers) == 1:
            call = partial(client.write_register, address, op.registers[0], device_id=unit)
        elif op.registers:
            call = partial(client.write_registers, address, list(op.registers), device_id=unit)
        else:
            call = partial(
                client.mask_write_register,
                address=address,
                and_mask=op.and_mask,
                or_mask=op.or_mask,
                device_id=unit,
            )
        what = f"write {tag.table} {tag.address} (tag {tag_name})"
        response, _ = await self._send(conn, call, lambda: what)
        if isinstance(response, ExceptionResponse):
            code = int(response.exception_code)
            raise DeviceExceptionError(
                self.name, f"{self.config.endpoint}: {what} refused: {describe_code(code)}", code=code
            )

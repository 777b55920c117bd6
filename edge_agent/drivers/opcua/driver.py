"""OpcUaDriver: the Driver API over one OPC UA session (polling and subscriptions).

Everything derived from the config alone (addresses, acquisition per tag, column layout)
is compiled in ``__init__``; ``connect()`` builds everything that belongs to one session
(NodeIds, read plan, subscriptions and monitored items) from scratch, so re-entering the
driver after a lost connection or a server restart always restores the full acquisition.
"""

from __future__ import annotations

__all__ = ["OpcUaDriver"]

import logging
import math
from collections import defaultdict
from typing import ClassVar

from asyncua.common.ua_utils import data_type_to_variant_type

from edge_agent.batch import SampleBatch, now_ns
from edge_agent.config.model import DeviceConfig
from edge_agent.drivers.base import Driver
from edge_agent.drivers.opcua._ua import ua
from edge_agent.drivers.opcua.config import OpcUaDeviceConfig
from edge_agent.drivers.opcua.connection import Connection, open_connection
from edge_agent.drivers.opcua.failures import as_connect_error, status_text, translate
from edge_agent.drivers.opcua.polling import ReadPlan
from edge_agent.drivers.opcua.resolve import resolve
from edge_agent.drivers.opcua.samples import SampleLog, TagLayout
from edge_agent.drivers.opcua.subscriptions import SubscriptionSet
from edge_agent.errors import DeviceConnectError, DeviceExceptionError, DriverError

log = logging.getLogger("edge_agent.drivers.opcua")

_INTEGER_TYPES = frozenset(
    {
        ua.VariantType.SByte,
        ua.VariantType.Byte,
        ua.VariantType.Int16,
        ua.VariantType.UInt16,
        ua.VariantType.Int32,
        ua.VariantType.UInt32,
        ua.VariantType.Int64,
        ua.VariantType.UInt64,
    }
)
_WRITABLE_TYPES = _INTEGER_TYPES | {ua.VariantType.Float, ua.VariantType.Double, ua.VariantType.Boolean}


class OpcUaDriver(Driver[OpcUaDeviceConfig]):
    """Reads (and, where allowed, writes) the tags of one OPC UA server."""

    config_model: ClassVar[type[DeviceConfig]] = OpcUaDeviceConfig

    def __init__(self, config: OpcUaDeviceConfig) -> None:
        super().__init__(config)
        tags = config.tags
        self._tag_index = {t.name: i for i, t in enumerate(tags)}
        self._addresses = [config.address(t) for t in tags]
        self._acquisition = [config.acquisition(t) for t in tags]
        self._polled = [i for i, a in enumerate(self._acquisition) if a.mode == "poll"]
        groups: defaultdict[float, list[int]] = defaultdict(list)
        for i, a in enumerate(self._acquisition):
            if a.mode == "subscribe":
                groups[a.publishing_interval].append(i)
        self._groups = dict(groups)
        self._layout = TagLayout(tags, hold=[a.mode == "subscribe" for a in self._acquisition])
        # Rows of a device with subscriptions are stamped this much before the read: a change
        # the server sampled before then has been published by now, so held values are right.
        subscribed = [a for a in self._acquisition if a.mode == "subscribe"]
        self._lag_ns = round(
            max((a.publishing_interval + a.sampling_interval for a in subscribed), default=0.0) * 1e9
        )
        self._log = SampleLog(self._layout, device=config.name)
        self._conn: Connection | None = None
        self._plan: ReadPlan | None = None
        self._subs: SubscriptionSet | None = None
        self._bad: dict[int, int] = {}
        self._node_ids: dict[int, ua.NodeId] = {}
        self._variant_types: dict[int, ua.VariantType] = {}
        self._reported: set[tuple[int, int]] = set()

    @property
    def connection(self) -> Connection | None:
        """The live session, if any (for diagnostics and tools)."""
        return self._conn

    async def connect(self) -> None:
        await self.close()
        conn = await open_connection(self.config)
        try:
            resolution = await resolve(conn, self._addresses)
            self._node_ids = resolution.node_ids
            self._bad = {i: code for i, (code, _) in resolution.unresolved.items()}
            for i, (code, reason) in resolution.unresolved.items():
                self._report(i, code, reason)
            polled = [i for i in self._polled if i in resolution.node_ids]
            self._plan = ReadPlan(
                self.name, polled, [resolution.node_ids[i] for i in polled], conn.limits.max_nodes_per_read
            )
            self._log.forget_held()
            subs = SubscriptionSet(conn, self._log)
            self._subs = subs
            await subs.create(self._groups, resolution.node_ids, self._acquisition)
        except BaseException as exc:
            await conn.close()
            self._plan = self._subs = None
            if not isinstance(exc, Exception):
                raise
            error = (
                exc if isinstance(exc, DriverError) else translate(self.name, exc, "setting up subscriptions")
            )
            raise as_connect_error(error) from exc
        for i, code in subs.failed.items():
            self._bad[i] = code
            self._report(i, code, f"the server refused to monitor it ({status_text(code)})")
        self._variant_types = {}
        self._conn = conn

    def _report(self, tag: int, code: int, reason: str) -> None:
        """Warn once per tag and cause, not on every reconnect."""
        if (tag, code) in self._reported:
            return
        self._reported.add((tag, code))
        log.warning(
            "device %r tag %r: %s. The tag reads as Bad; the other tags are unaffected.",
            self.name,
            self._layout.names[tag],
            reason,
        )

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        self._plan = self._subs = None
        if conn is not None:
            await conn.close()

    async def read(self) -> SampleBatch:
        conn, plan, subs = self._conn, self._plan, self._subs
        if conn is None or plan is None or subs is None:
            raise DeviceConnectError(self.name, "not connected")
        try:
            conn.check_alive()
            subs.check_alive()
        except DeviceConnectError:
            if len(self._log):
                return self._log.drain()  # hand over what arrived before the loss; raise next time
            raise
        if len(plan):
            try:
                values, statuses = await plan.read(conn.client)
            except Exception as exc:
                conn.check_alive()
                raise translate(self.name, exc, f"reading {len(plan)} node(s)") from exc
        ts = max(now_ns() - self._lag_ns, self._log.floor_ns + 1)
        if len(plan):
            self._log.add_row(ts, plan.tags, values, statuses)
        self._log.add_fill_row(ts, self._bad)  # every subscribed tag, as it stands at ts
        if self._bad:
            tags = list(self._bad)
            self._log.add_row(ts, tags, [None] * len(tags), list(self._bad.values()))
        return self._log.drain()

    def describe_plan(self) -> str:
        cfg = self.config
        lines = [
            f"{self.name}: {cfg.endpoint} (security {cfg.security.mode}"
            + (f"/{cfg.security.policy}" if cfg.security.mode != "None" else "")
            + f", auth {cfg.auth.type}), {len(cfg.tags)} tag(s)",
        ]
        if self._polled:
            live = f"; now {self._plan.describe()}" if self._plan is not None else ""
            limit = (
                f"{cfg.max_nodes_per_read} or less"
                if cfg.max_nodes_per_read
                else "the server's MaxNodesPerRead"
            )
            lines.append(
                f"  poll every {cfg.poll_interval:g} s: {len(self._polled)} node(s), "
                f"batched Reads of {limit}{live}"
            )
        for interval, tags in self._groups.items():
            lines.append(f"  subscription @ {interval * 1000:g} ms publishing: {len(tags)} monitored item(s)")
            for i in tags:
                a = self._acquisition[i]
                band = f", deadband {a.deadband.type} {a.deadband.value:g}" if a.deadband else ""
                lines.append(
                    f"    {self._layout.names[i]}: {self._addresses[i]} "
                    f"sampling {a.sampling_interval * 1000:g} ms, queue {a.queue_size}{band}"
                )
        for i in self._polled:
            lines.append(f"    {self._layout.names[i]}: {self._addresses[i]} (poll)")
        return "\n".join(lines)

    async def write(self, tag_name: str, value: float) -> None:
        """Write an engineering value (scale/offset undone) after the writable check."""
        tag = self.check_writable(tag_name)
        index = self._tag_index[tag.name]
        conn = self._conn
        if conn is None:
            raise DeviceConnectError(self.name, f"write to tag {tag_name!r} impossible: not connected")
        conn.check_alive()
        node_id = self._node_ids.get(index)
        if node_id is None:
            raise DeviceExceptionError(
                self.name, f"write to tag {tag_name!r} impossible: its node is unresolved"
            )
        raw = value if tag.is_counter else (value - tag.offset) / tag.scale
        try:
            vtype = self._variant_types.get(index)
            if vtype is None:
                dtype = await conn.client.get_node(node_id).read_data_type()
                vtype = await data_type_to_variant_type(conn.client.get_node(dtype))
                self._variant_types[index] = vtype
        except Exception as exc:
            conn.check_alive()
            raise translate(self.name, exc, f"reading the data type of tag {tag_name!r}") from exc
        variant = self._variant(tag_name, raw, vtype)
        try:
            results = await conn.client.uaclient.write_attributes(
                [node_id], [ua.DataValue(variant)], ua.AttributeIds.Value
            )
        except Exception as exc:
            conn.check_alive()
            raise translate(self.name, exc, f"writing tag {tag_name!r}") from exc
        code = results[0].value
        if code >> 30:
            raise DeviceExceptionError(
                self.name,
                f"server refused the write to tag {tag_name!r} ({node_id.to_string()}): {status_text(code)}",
                code=code,
            )

    def _variant(self, tag_name: str, raw: float, vtype: ua.VariantType) -> ua.Variant:
        if vtype not in _WRITABLE_TYPES:
            raise DeviceExceptionError(
                self.name, f"write to tag {tag_name!r} refused: its node holds {vtype.name}, not a number"
            )
        if not math.isfinite(raw):
            raise DeviceExceptionError(self.name, f"write to tag {tag_name!r} refused: {raw} is not finite")
        if vtype is ua.VariantType.Boolean:
            return ua.Variant(bool(raw), vtype)
        if vtype in _INTEGER_TYPES:
            if not float(raw).is_integer():
                raise DeviceExceptionError(
                    self.name,
                    f"write to tag {tag_name!r} refused: {raw} is not a whole number, "
                    f"but the node is {vtype.name}",
                )
            return ua.Variant(int(raw), vtype)
        return ua.Variant(float(raw), vtype)

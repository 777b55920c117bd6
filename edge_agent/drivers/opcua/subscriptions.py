"""Subscribed tags: one subscription per publishing interval, monitored items created in batches.

Notifications go straight from the publish callback into the device's SampleLog (no task
per notification, no per-item objects), and ``read()`` drains them. The client handle of
each monitored item is the tag's index, so routing is a list lookup. Liveness is watched
here too: a subscription whose publish responses (data or keep-alive) stop for longer than
its keep-alive period, or that the server reports closed, fails the session so the
runtime reconnects and this whole set is created again.
"""

from __future__ import annotations

__all__ = ["SubscriptionSet", "to_ns"]

import asyncio
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from edge_agent.batch import now_ns
from edge_agent.drivers.opcua._ua import ua
from edge_agent.drivers.opcua.config import TagAcquisition
from edge_agent.drivers.opcua.connection import Connection
from edge_agent.drivers.opcua.failures import status_text
from edge_agent.drivers.opcua.polling import chunk
from edge_agent.drivers.opcua.samples import SampleLog
from edge_agent.errors import DeviceConnectError

log = logging.getLogger("edge_agent.drivers.opcua")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_Y2000_NS = 946_684_800 * 10**9
_MAX_NS = 2**63 - 1


def to_ns(dt: datetime) -> int:
    """Exact ns since the epoch (float seconds would lose the microseconds)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _US * 1000


#: Server and agent clocks closer than this are taken as agreeing (NTP keeps them within
#: milliseconds): source timestamps are then used exactly as sent.
SKEW_TOLERANCE_NS = 1_000_000_000


def _stamp(dv: ua.DataValue) -> int | None:
    """Source time, else server time, else None (the caller uses the arrival time).

    Stamps before 2000 (1601 is the wire's "no timestamp") or past int64 ns (year 2262)
    count as absent: they are not real sample times and would not fit the ts column.
    """
    for stamp in (dv.SourceTimestamp, dv.ServerTimestamp):
        if stamp is not None:
            ts = to_ns(stamp)
            if _Y2000_NS <= ts <= _MAX_NS:
                return ts
    return None


def _valid_ns(dt: datetime | None) -> int | None:
    if dt is None:
        return None
    ts = to_ns(dt)
    return ts if _Y2000_NS <= ts <= _MAX_NS else None


@dataclass(slots=True)
class _Live:
    """One server-side subscription and its liveness clock."""

    subscription_id: int
    publishing_interval: float
    stale_after: float
    last_seen: float
    created_ns: int
    first_seen: set[int] = field(default_factory=set)
    offset_ns: int | None = None  # server clock → agent clock, measured at the first publish


class SubscriptionSet:
    """The session's subscriptions; notifications land in ``sample_log``."""

    def __init__(self, connection: Connection, sample_log: SampleLog) -> None:
        self.connection = connection
        self.log = sample_log
        self.device = connection.config.name
        self.lost_reason: str | None = None
        self.failed: dict[int, int] = {}
        self._live: dict[int, _Live] = {}
        self._last_ts: dict[int, int] = {}  # per tag: the latest timestamp given to a change
        self._loop = asyncio.get_running_loop()

    async def create(
        self,
        groups: Mapping[float, Sequence[int]],
        node_ids: Mapping[int, ua.NodeId],
        acq: Sequence[TagAcquisition],
    ) -> None:
        """Create every subscription and its items; items the server refuses go to ``failed``."""
        for interval, tags in groups.items():
            wanted = [t for t in tags if t in node_ids]
            if wanted:
                await self._create_one(interval, wanted, node_ids, acq)

    async def _create_one(
        self,
        interval: float,
        tags: list[int],
        node_ids: Mapping[int, ua.NodeId],
        acq: Sequence[TagAcquisition],
    ) -> None:
        cfg = self.connection.config
        client = self.connection.client
        keepalive_count = max(1, math.ceil(cfg.keepalive / interval))
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=interval * 1000.0,
            RequestedLifetimeCount=keepalive_count * 10,
            RequestedMaxKeepAliveCount=keepalive_count,
            MaxNotificationsPerPublish=0,
            PublishingEnabled=True,
            Priority=0,
        )
        created_ns = now_ns()
        result = await client.uaclient.create_subscription(params, self._on_publish)
        revised_s = max(result.RevisedPublishingInterval, 1.0) / 1000.0
        keepalive_s = revised_s * max(result.RevisedMaxKeepAliveCount, 1)
        live = _Live(
            subscription_id=result.SubscriptionId,
            publishing_interval=revised_s,
            stale_after=1.5 * keepalive_s + revised_s + cfg.timeout,
            last_seen=self._loop.time(),
            created_ns=created_ns,
        )
        self._live[result.SubscriptionId] = live
        limit = self.connection.limits.max_monitored_items_per_call
        pending = [self._item(t, node_ids[t], acq[t]) for t in tags]
        while pending:
            batch = list(chunk(pending, limit)[0])
            try:
                results = await client.uaclient.create_monitored_items(
                    ua.CreateMonitoredItemsParameters(
                        SubscriptionId=result.SubscriptionId,
                        TimestampsToReturn=ua.TimestampsToReturn.Both,
                        ItemsToCreate=batch,
                    )
                )
            except ua.UaStatusCodeError as exc:
                if exc.code != ua.StatusCodes.BadTooManyOperations or len(batch) <= 1:
                    raise
                limit = max(1, len(batch) // 2)
                log.warning(
                    "device %r: server refused %d monitored items per call (BadTooManyOperations); "
                    "using %d. Set max_monitored_items_per_call to skip this probe.",
                    self.device,
                    len(batch),
                    limit,
                )
                continue
            for item, res in zip(batch, results, strict=False):
                code = res.StatusCode.value if res.StatusCode is not None else 0
                if code >> 30:
                    self.failed[item.RequestedParameters.ClientHandle] = code
            pending = pending[len(batch) :]

    @staticmethod
    def _item(tag: int, node_id: ua.NodeId, acq: TagAcquisition) -> ua.MonitoredItemCreateRequest:
        mparams = ua.MonitoringParameters()
        mparams.ClientHandle = tag
        mparams.SamplingInterval = acq.sampling_interval * 1000.0
        mparams.QueueSize = acq.queue_size
        mparams.DiscardOldest = True
        if acq.deadband is not None:
            mparams.Filter = ua.DataChangeFilter(
                Trigger=ua.DataChangeTrigger.StatusValue,
                DeadbandType=ua.DeadbandType.Absolute
                if acq.deadband.type == "absolute"
                else ua.DeadbandType.Percent,
                DeadbandValue=acq.deadband.value,
            )
        request = ua.MonitoredItemCreateRequest()
        request.ItemToMonitor = ua.ReadValueId(NodeId=node_id, AttributeId=ua.AttributeIds.Value)
        request.MonitoringMode = ua.MonitoringMode.Reporting
        request.RequestedParameters = mparams
        return request

    def _on_publish(self, result: ua.PublishResult) -> None:
        """Called by asyncua's publish loop for every response, keep-alives included."""
        live = self._live.get(result.SubscriptionId)
        if live is None:
            return
        live.last_seen = self._loop.time()
        arrival = now_ns()
        if live.offset_ns is None:
            publish = _valid_ns(result.NotificationMessage.PublishTime)
            skew = arrival - publish if publish is not None else 0
            live.offset_ns = skew if abs(skew) > SKEW_TOLERANCE_NS else 0
            if live.offset_ns:
                log.warning(
                    "device %r: the server's clock is %.1f s %s the agent's; its timestamps are "
                    "shifted onto the agent's clock. Synchronise the server's clock (NTP).",
                    self.device,
                    abs(skew) / 1e9,
                    "behind" if skew > 0 else "ahead of",
                )
        data = result.NotificationMessage.NotificationData
        if not data:
            return
        add = self.log.add
        offset = live.offset_ns
        # one time base per device: after everything already handed out, never in the future
        floor = self.log.floor_ns + 1
        last_ts = self._last_ts
        for notification in data:
            if isinstance(notification, ua.DataChangeNotification):
                first_seen = live.first_seen
                for item in notification.MonitoredItems:
                    tag = item.ClientHandle
                    dv = item.Value
                    source = _stamp(dv)
                    ts = arrival if source is None else min(max(source + offset, floor), arrival)
                    if tag not in first_seen:
                        # The initial value may be older than the (re)connect: stamp it no
                        # earlier than the subscription, so a series never goes back across a gap.
                        first_seen.add(tag)
                        ts = max(ts, live.created_ns)
                    # a tag's changes keep the order they happened in, whatever their stamps say
                    ts = max(ts, last_ts.get(tag, 0) + 1)
                    last_ts[tag] = ts
                    var, sc = dv.Value, dv.StatusCode
                    add(ts, tag, var.Value if var is not None else None, sc.value if sc is not None else 0)
            elif isinstance(notification, ua.StatusChangeNotification):
                code = notification.Status.value if notification.Status is not None else 0
                self.lost_reason = f"server reported subscription {result.SubscriptionId} {status_text(code)}"

    def check_alive(self) -> None:
        """Raise DeviceConnectError when a subscription went silent past its keep-alive or was closed."""
        if self.lost_reason is None:
            now = self._loop.time()
            for live in self._live.values():
                silent = now - live.last_seen
                if silent > live.stale_after:
                    self.lost_reason = (
                        f"subscription {live.subscription_id} sent neither data nor keep-alive for "
                        f"{silent:.1f} s (limit {live.stale_after:.1f} s)"
                    )
                    break
        if self.lost_reason is not None:
            raise DeviceConnectError(self.device, self.lost_reason)

    def describe(self) -> str:
        return ", ".join(
            f"subscription {s.subscription_id} @ {s.publishing_interval * 1000:g} ms"
            for s in self._live.values()
        )

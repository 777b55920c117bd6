"""MQTT sink: UNS topics, QoS 1 with a bounded in-flight window, confirmed on PUBACK.

paho runs its network loop in its own thread and keeps unacknowledged QoS 1 messages
across reconnects (resending them with DUP), so a batch handed to paho is confirmed to
the buffer only from ``on_publish`` — i.e. when the broker's PUBACK arrives. A retained
birth message announces the agent; the retained last will says ``offline`` if it dies.
"""

from __future__ import annotations

__all__ = ["MqttSink"]

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.config import MqttConfig
from edge_agent.delivery.mqttclient import connect_async, make_client
from edge_agent.delivery.payload import encode_payload, encode_status
from edge_agent.delivery.record import Placement, Record
from edge_agent.delivery.sink import Sink
from edge_agent.delivery.topics import data_topic, status_topic
from edge_agent.errors import PermanentSinkError, TransientSinkError

log = logging.getLogger("edge_agent.delivery.mqtt")

#: PUBACK reason codes worth retrying (MQTT 5): unspecified, implementation specific, busy, quota.
_TRANSIENT_PUBACK = {0x80, 0x83, 0x89, 0x97}


class _Group:
    """The messages of one send: done when every PUBACK is in; a refusal fails the whole group.

    One future per group, not per message: at thousands of messages a second the per-message
    futures and callbacks cost more than the publishing.
    """

    __slots__ = ("done", "error", "left", "mids")

    def __init__(self, done: asyncio.Future[None], count: int) -> None:
        self.done = done
        self.left = count
        self.error: Exception | None = None
        self.mids: list[int] = []

    def ack(self, rc: ReasonCode) -> None:
        if rc.is_failure and not isinstance(self.error, PermanentSinkError):
            if rc.value in _TRANSIENT_PUBACK:
                self.error = self.error or TransientSinkError(f"mqtt: broker answered PUBACK {rc}")
            else:
                self.error = PermanentSinkError(f"mqtt: broker refused the message: PUBACK {rc}")
        self.left -= 1
        if self.left <= 0 and not self.done.done():
            if self.error is None:
                self.done.set_result(None)
            else:
                self.done.set_exception(self.error)

    def cancel(self) -> None:
        if not self.done.done():
            self.done.cancel()


class MqttSink(Sink):
    """Publishes each buffered batch as one message on ``{site}/{area}/{line}/{asset}/{kind}``."""

    def __init__(self, config: MqttConfig, *, agent: str, site: str, name: str = "mqtt") -> None:
        self.name = name
        self.config = config
        # Two sends in flight, each publishing up to half the QoS 1 window: the confirm of one
        # group overlaps the publishing of the next, and one buffer round trip serves many messages.
        self.max_inflight = 2
        self.max_records = max(1, config.max_inflight // 2)
        self.backoff_max = config.backoff_max
        self.limits = config.limits
        self.agent = agent
        self.status_topic = status_topic(config.status_topic, site=site, agent=agent)
        self._client = make_client(config, config.client_id or f"edge-agent-{agent}")
        # The window is ours (max_inflight sends of max_records each); paho's own limit rescans
        # every unacknowledged message on each PUBACK, which cost ~90 µs per message at 500 in flight.
        self._client.max_inflight_messages_set(0)
        self._client.max_queued_messages_set(0)
        self._started_ns = time.time_ns()
        self._client.will_set(
            self.status_topic,
            encode_status("offline", agent, self._started_ns, reason="connection lost"),
            qos=1,
            retain=True,
        )
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._lock = threading.Lock()
        self._pending: dict[int, _Group] = {}  # mid -> the send group waiting for its PUBACK
        self._early: dict[int, ReasonCode] = {}
        self._ignored: set[int] = set()  # fire-and-forget publishes (status): no future waits on them
        self._statuses: dict[str, bytes] = {}
        self._acked: list[tuple[_Group, ReasonCode]] = []  # PUBACKs for the loop to resolve
        self._connected = False
        self._ever_failed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def connected(self) -> bool:
        return self._connected

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        connect_async(self._client, self.config)

    async def stop(self) -> None:
        if self._connected:
            try:
                fut = self._publish(
                    self.status_topic,
                    encode_status("offline", self.agent, time.time_ns(), reason="shutdown"),
                    retain=True,
                )
                await asyncio.wait_for(fut, 2.0)
            except (TimeoutError, TransientSinkError, PermanentSinkError):
                log.debug("mqtt: offline status not acknowledged before shutdown")
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        for group in list(self._pending.values()):
            group.cancel()

    async def send(self, records: Sequence[Record]) -> None:
        """One message per record, all published before waiting; done when every PUBACK is in.

        A failure of any message fails the group (the replay loop retries it, or splits it to
        find a permanently refused record); messages the broker already has are resent (QoS 1
        is at-least-once; ingest overwrites the same points).
        """
        assert self._loop is not None, "MqttSink used before start()"
        group = _Group(self._loop.create_future(), len(records))
        try:
            for rec in records:
                try:
                    payload = encode_payload(rec.kind, rec.placement, rec.batch)
                except (ValueError, TypeError) as exc:
                    raise PermanentSinkError(
                        f"batch from {rec.batch.device!r} cannot be encoded: {exc}"
                    ) from exc
                self._publish_into(
                    group, data_topic(self.config.topic_template, rec.kind, rec.placement), payload
                )
        except BaseException:
            self._abandon(group)
            raise
        try:
            await group.done
        finally:
            self._abandon(group)

    def publish_status(self, place: Placement, state: str, **details: Any) -> None:
        """Retained per-asset status (latest wins); re-published after every reconnect."""
        topic = data_topic(self.config.topic_template, "status", place)
        payload = encode_status(state, self.agent, time.time_ns(), asset=place.asset, **details)
        self._statuses[topic] = payload
        if self._connected:
            self._fire(topic, payload)

    def _fire(self, topic: str, payload: bytes) -> None:
        """Publish retained without waiting; its mid must never satisfy a data publish's future."""
        mid = self._client.publish(topic, payload, qos=1, retain=True).mid
        with self._lock:
            if self._early.pop(mid, None) is None:
                self._ignored.add(mid)

    # -- paho bridge ---------------------------------------------------------------------------
    def _publish(self, topic: str, payload: bytes, *, retain: bool = False) -> asyncio.Future[None]:
        """One message whose PUBACK the caller awaits (the offline status at stop)."""
        assert self._loop is not None, "MqttSink used before start()"
        group = _Group(self._loop.create_future(), 1)
        self._publish_into(group, topic, payload, retain=retain)
        return group.done

    def _publish_into(self, group: _Group, topic: str, payload: bytes, *, retain: bool = False) -> None:
        try:
            info = self._client.publish(topic, payload, qos=self.config.qos, retain=retain)
        except ValueError as exc:  # e.g. payload too large for MQTT
            raise PermanentSinkError(f"mqtt: cannot publish to {topic!r}: {exc}") from exc
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise TransientSinkError(f"mqtt: publish to {topic!r} failed: {mqtt.error_string(info.rc)}")
        with self._lock:
            early = self._early.pop(info.mid, None)
            if early is None:
                self._pending[info.mid] = group
                group.mids.append(info.mid)
        if early is not None:
            group.ack(early)

    def _abandon(self, group: _Group) -> None:
        """A send that ended early: its late PUBACKs must never count for a later message."""
        group.cancel()
        with self._lock:
            for mid in group.mids:
                if self._pending.get(mid) is group:
                    del self._pending[mid]
                    self._ignored.add(mid)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, rc: ReasonCode, props: Any) -> None:
        with self._lock:
            group = self._pending.pop(mid, None)
            if group is None:
                if mid in self._ignored:
                    self._ignored.discard(mid)
                else:
                    self._early[mid] = rc
                return
            self._acked.append((group, rc))
            wake = len(self._acked) == 1
        if wake:  # one wake-up of the event loop resolves every PUBACK that arrived meanwhile
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._resolve_acked)

    def _resolve_acked(self) -> None:
        with self._lock:
            acked, self._acked = self._acked, []
        for group, rc in acked:
            group.ack(rc)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if rc.is_failure:
            level = logging.DEBUG if self._ever_failed else logging.ERROR
            log.log(
                level,
                "mqtt: broker %s:%d refused the connection: %s; check username/password/TLS",
                self.config.host,
                self.config.port,
                rc,
            )
            self._ever_failed = True
            return
        self._connected = True
        log.info("mqtt: connected to %s:%d", self.config.host, self.config.port)
        self._ever_failed = False
        self._fire(self.status_topic, encode_status("online", self.agent, time.time_ns()))
        for topic, payload in self._statuses.items():
            self._fire(topic, payload)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        was = self._connected
        self._connected = False
        if was and rc.is_failure:
            log.warning(
                "mqtt: lost %s:%d (%s); buffering and reconnecting with backoff",
                self.config.host,
                self.config.port,
                rc,
            )

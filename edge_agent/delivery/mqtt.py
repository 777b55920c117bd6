"""MQTT sink: UNS topics, QoS 1 with a bounded in-flight window, confirmed on PUBACK.

The sink publishes through :class:`MqttPublisher` (``mqtt_publisher.py``), a lean asyncio
client: a group of records goes out as one write and is confirmed to the buffer only when
every PUBACK is in. A message whose PUBACK never came (the connection dropped) fails its
group, and the replay loop sends it again from the buffer: at-least-once, and consumers
overwrite the same points. A retained birth message announces the agent; the retained last
will says ``offline`` if it dies.
"""

from __future__ import annotations

__all__ = ["MqttSink"]

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any

from edge_agent.config import MqttConfig
from edge_agent.delivery.mqtt_publisher import TRANSIENT_REASONS, MqttPublisher, Will
from edge_agent.delivery.payload import encode_payload, encode_status
from edge_agent.delivery.record import Placement, Record
from edge_agent.delivery.sink import Sink
from edge_agent.delivery.topics import data_topic, status_topic
from edge_agent.errors import PermanentSinkError, TransientSinkError

#: A send gives the event loop a turn at least this often (s) while it encodes and publishes.
#: A group of 500 messages is 30-80 ms of CPU at 50,000 tags; held in one piece, each
#: Modbus request/answer turn of every poller waited behind it and polls were skipped.
PUBLISH_TURN_S = 0.002


class _Group:
    """The messages of one send: done when every PUBACK is in; a refusal fails the whole group.

    One future per group, not per message: at thousands of messages a second the per-message
    futures and callbacks cost more than the publishing.
    """

    __slots__ = ("done", "error", "left")

    def __init__(self, done: asyncio.Future[None], count: int) -> None:
        self.done = done
        self.left = count
        self.error: Exception | None = None

    def ack(self, code: int) -> None:
        if code and not isinstance(self.error, PermanentSinkError):
            if code < 0:
                self.error = self.error or TransientSinkError("mqtt: connection lost before the PUBACK")
            elif code in TRANSIENT_REASONS:
                self.error = self.error or TransientSinkError(f"mqtt: broker answered PUBACK 0x{code:02X}")
            elif code >= 0x80:
                self.error = PermanentSinkError(f"mqtt: broker refused the message: PUBACK 0x{code:02X}")
        self.left -= 1
        if self.left <= 0 and not self.done.done():
            if self.error is None:
                self.done.set_result(None)
            else:
                self.done.set_exception(self.error)


class MqttSink(Sink):
    """Publishes each buffered batch as one message on ``{site}/{area}/{line}/{asset}/{kind}``."""

    def __init__(self, config: MqttConfig, *, agent: str, site: str, name: str = "mqtt") -> None:
        self.name = name
        self.config = config
        # Two sends in flight, each publishing up to half the QoS 1 window: the confirm of one
        # group overlaps the publishing of the next, and one buffer round trip serves many messages.
        self.max_inflight = 2
        self.max_records = max(1, config.max_inflight // 2)
        self._publishing = asyncio.Lock()
        self.backoff_max = config.backoff_max
        self.limits = config.limits
        self.agent = agent
        self.status_topic = status_topic(config.status_topic, site=site, agent=agent)
        self._started_ns = time.time_ns()
        will = Will(
            self.status_topic, encode_status("offline", agent, self._started_ns, reason="connection lost")
        )
        self._client = MqttPublisher(
            config, config.client_id or f"edge-agent-{agent}", will=will, on_connect=self._on_connect
        )
        self._statuses: dict[str, bytes] = {}

    @property
    def connected(self) -> bool:
        return self._client.connected

    async def start(self) -> None:
        await self._client.start()

    async def stop(self) -> None:
        offline = encode_status("offline", self.agent, time.time_ns(), reason="shutdown")
        await self._client.stop([(self.status_topic, offline)])

    async def send(self, records: Sequence[Record]) -> None:
        """One message per record, all published before waiting; done when every PUBACK is in.

        While the broker is away this waits up to ``backoff_max`` for the connection, so a
        reconnect resumes delivery at once. A failure of any message fails the group (the
        replay loop retries it, or splits it to find a permanently refused record); messages
        the broker already has are resent (QoS 1 is at-least-once; ingest overwrites).
        """
        client = self._client
        if not client.connected and not await client.wait_connected(self.backoff_max):
            why = f" ({client.last_error})" if client.last_error else ""
            raise TransientSinkError(f"mqtt: not connected to {self.config.host}:{self.config.port}{why}")
        group = _Group(asyncio.get_running_loop().create_future(), len(records))
        template, qos = self.config.topic_template, self.config.qos
        try:
            # one send's messages all before the next send's (they yield the loop meanwhile)
            async with self._publishing:
                turn = time.perf_counter()
                for rec in records:
                    if time.perf_counter() - turn > PUBLISH_TURN_S:  # the pollers' turn
                        await asyncio.sleep(0)
                        turn = time.perf_counter()
                    try:
                        payload = encode_payload(rec.kind, rec.placement, rec.batch)
                    except (ValueError, TypeError) as exc:
                        raise PermanentSinkError(
                            f"batch from {rec.batch.device!r} cannot be encoded: {exc}"
                        ) from exc
                    topic = data_topic(template, rec.kind, rec.placement)
                    client.publish(topic, payload, qos=qos, ack=group.ack)
        except BaseException:
            group.done.cancel()
            raise
        await group.done

    def publish_status(self, place: Placement, state: str, **details: Any) -> None:
        """Retained per-asset status (latest wins); re-published after every reconnect."""
        topic = data_topic(self.config.topic_template, "status", place)
        payload = encode_status(state, self.agent, time.time_ns(), asset=place.asset, **details)
        self._statuses[topic] = payload
        if self._client.connected:
            self._fire(topic, payload)

    def _fire(self, topic: str, payload: bytes) -> None:
        """Publish retained without waiting (a status; the next one replaces it anyway)."""
        with contextlib.suppress(TransientSinkError, PermanentSinkError):  # again at the next connect
            self._client.publish(topic, payload, qos=1, retain=True)

    def _on_connect(self) -> None:
        self._fire(self.status_topic, encode_status("online", self.agent, time.time_ns()))
        for topic, payload in self._statuses.items():
            self._fire(topic, payload)

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
import time
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.config import MqttConfig
from edge_agent.delivery.mqttclient import connect_async, make_client
from edge_agent.delivery.payload import encode_payload, encode_status
from edge_agent.delivery.puback import PubackBridge
from edge_agent.delivery.record import Placement, Record
from edge_agent.delivery.sink import Sink
from edge_agent.delivery.topics import data_topic, status_topic
from edge_agent.errors import PermanentSinkError, TransientSinkError

log = logging.getLogger("edge_agent.delivery.mqtt")


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
        self._client.max_inflight_messages_set(config.max_inflight)
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
        self._acks = PubackBridge(self._client, offline_queue=True)  # owns on_publish
        self._statuses: dict[str, bytes] = {}
        self._connected = False
        self._ever_failed = False

    @property
    def connected(self) -> bool:
        return self._connected

    async def start(self) -> None:
        self._acks.loop = asyncio.get_running_loop()
        connect_async(self._client, self.config)

    async def stop(self) -> None:
        if self._connected:
            try:
                fut = self._acks.publish(
                    self.status_topic,
                    encode_status("offline", self.agent, time.time_ns(), reason="shutdown"),
                    self.config.qos,
                    retain=True,
                )
                await asyncio.wait_for(fut, 2.0)
            except (TimeoutError, TransientSinkError, PermanentSinkError):
                log.debug("mqtt: offline status not acknowledged before shutdown")
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        self._acks.cancel_all()

    async def send(self, records: Sequence[Record]) -> None:
        """One message per record, all published before waiting; done when every PUBACK is in.

        A failure of any message fails the group (the replay loop retries it, or splits it to
        find a permanently refused record); messages the broker already has are resent (QoS 1
        is at-least-once; ingest overwrites the same points).
        """
        futures: list[asyncio.Future[None]] = []
        try:
            for rec in records:
                try:
                    payload = encode_payload(rec.kind, rec.placement, rec.batch)
                except (ValueError, TypeError) as exc:
                    raise PermanentSinkError(
                        f"batch from {rec.batch.device!r} cannot be encoded: {exc}"
                    ) from exc
                topic = data_topic(self.config.topic_template, rec.kind, rec.placement)
                futures.append(self._acks.publish(topic, payload, self.config.qos))
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        errors = [e for e in outcomes if isinstance(e, BaseException)]
        if errors:
            raise next((e for e in errors if isinstance(e, PermanentSinkError)), errors[0])

    def publish_status(self, place: Placement, state: str, **details: Any) -> None:
        """Retained per-asset status (latest wins); re-published after every reconnect."""
        topic = data_topic(self.config.topic_template, "status", place)
        payload = encode_status(state, self.agent, time.time_ns(), asset=place.asset, **details)
        self._statuses[topic] = payload
        if self._connected:
            self._acks.fire(topic, payload)

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
        self._acks.fire(self.status_topic, encode_status("online", self.agent, time.time_ns()))
        for topic, payload in self._statuses.items():
            self._acks.fire(topic, payload)

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

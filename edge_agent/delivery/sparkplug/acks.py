"""Bridge from paho's network thread to asyncio: one future per QoS 1 publish, settled on PUBACK.

Generic on purpose: it knows nothing about Sparkplug, so the UNS sink's copy of this logic
(MqttSink._publish/_on_publish) can move onto it.
"""

from __future__ import annotations

__all__ = ["PubackBridge"]

import asyncio
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.errors import PermanentSinkError, TransientSinkError

#: PUBACK reason codes worth retrying (MQTT 5): unspecified, implementation specific, busy, quota.
_TRANSIENT_PUBACK = {0x80, 0x83, 0x89, 0x97}


class PubackBridge:
    """``publish`` returns a future that resolves when the broker acknowledged that message.

    ``fail_all`` settles every outstanding future with a TransientSinkError: used when the
    session ends, because a new session must never resend the old one's numbered messages.
    """

    def __init__(self, client: mqtt.Client, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self._loop = loop
        self._lock = threading.Lock()
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._early: dict[int, ReasonCode] = {}  # PUBACK that beat publish() returning its mid
        client.on_publish = self._on_publish

    def publish(self, topic: str, payload: bytes, qos: int, *, retain: bool = False) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = self._loop.create_future()
        try:
            info = self.client.publish(topic, payload, qos=qos, retain=retain)
        except ValueError as exc:  # e.g. payload too large for MQTT
            raise PermanentSinkError(f"mqtt: cannot publish to {topic!r}: {exc}") from exc
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise TransientSinkError(f"mqtt: publish to {topic!r} failed: {mqtt.error_string(info.rc)}")
        with self._lock:
            early = self._early.pop(info.mid, None)
            if early is None:
                self._pending[info.mid] = fut
        if early is not None:
            self._settle(fut, early)
        return fut

    def fail_all(self, reason: str) -> None:
        with self._lock:
            futures = list(self._pending.values())
            self._pending.clear()
        for fut in futures:
            if not fut.done():
                fut.set_exception(TransientSinkError(reason))

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, rc: ReasonCode, props: Any) -> None:
        with self._lock:
            fut = self._pending.pop(mid, None)
            if fut is None:
                self._early[mid] = rc
                return
        self._loop.call_soon_threadsafe(self._settle, fut, rc)

    @staticmethod
    def _settle(fut: asyncio.Future[None], rc: ReasonCode) -> None:
        if fut.done():
            return
        if not rc.is_failure:
            fut.set_result(None)
        elif rc.value in _TRANSIENT_PUBACK:
            fut.set_exception(TransientSinkError(f"mqtt: broker answered PUBACK {rc}"))
        else:
            fut.set_exception(PermanentSinkError(f"mqtt: broker refused the message: PUBACK {rc}"))

"""Bridge from paho's network thread to asyncio: one future per QoS 1 publish, settled on PUBACK.

The Sparkplug edge node (which needs paho for its NCMD and STATE subscriptions) confirms a
batch to the buffer only when the broker's PUBACK for it arrives. It knows nothing about
topics or payloads. The UNS sink publishes without paho (``delivery/mqtt_publisher.py``).
"""

from __future__ import annotations

__all__ = ["PubackBridge"]

import asyncio
import functools
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.errors import PermanentSinkError, TransientSinkError

#: PUBACK reason codes worth retrying (MQTT 5): unspecified, implementation specific, busy, quota.
_TRANSIENT_PUBACK = {0x80, 0x83, 0x89, 0x97}


class PubackBridge:
    """``publish`` returns a future that resolves when the broker acknowledged that message.

    It owns ``client.on_publish``. ``loop`` may be set after construction (a sink builds its
    client before its event loop runs). With ``offline_queue`` a publish while disconnected is
    accepted (paho queues it and sends it after reconnecting); without, it fails at once.
    ``fire`` publishes without a future; its PUBACK must never settle another message's.
    ``fail_all`` settles every outstanding future with a TransientSinkError: used when the
    session ends, because a new session must never resend the old one's numbered messages.
    """

    def __init__(
        self,
        client: mqtt.Client,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        offline_queue: bool = False,
    ) -> None:
        self.client = client
        self.loop = loop
        self._accepted = (
            (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN) if offline_queue else (mqtt.MQTT_ERR_SUCCESS,)
        )
        self._lock = threading.Lock()
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._early: dict[int, ReasonCode] = {}  # PUBACK that beat publish() returning its mid
        self._ignored: set[int] = set()  # fire-and-forget publishes: no future waits on them
        client.on_publish = self._on_publish

    def publish(self, topic: str, payload: bytes, qos: int, *, retain: bool = False) -> asyncio.Future[None]:
        assert self.loop is not None, "PubackBridge.publish before its event loop was set"
        fut: asyncio.Future[None] = self.loop.create_future()
        try:
            info = self.client.publish(topic, payload, qos=qos, retain=retain)
        except ValueError as exc:  # e.g. payload too large for MQTT
            raise PermanentSinkError(f"mqtt: cannot publish to {topic!r}: {exc}") from exc
        if info.rc not in self._accepted:
            raise TransientSinkError(f"mqtt: publish to {topic!r} failed: {mqtt.error_string(info.rc)}")
        with self._lock:
            early = self._early.pop(info.mid, None)
            if early is None:
                self._pending[info.mid] = fut
        if early is not None:
            self._settle(fut, early)
        else:  # a cancelled wait (a failed group) must not leave its mid behind
            fut.add_done_callback(functools.partial(self._forget, info.mid))
        return fut

    def fire(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = True) -> None:
        """Publish without waiting for the PUBACK (a retained status)."""
        mid = self.client.publish(topic, payload, qos=qos, retain=retain).mid
        with self._lock:
            if self._early.pop(mid, None) is None:
                self._ignored.add(mid)

    def fail_all(self, reason: str) -> None:
        with self._lock:
            futures = list(self._pending.values())
            self._pending.clear()
        for fut in futures:
            if not fut.done():
                fut.set_exception(TransientSinkError(reason))

    def cancel_all(self) -> None:
        with self._lock:
            futures = list(self._pending.values())
        for fut in futures:
            fut.cancel()

    def _forget(self, mid: int, fut: asyncio.Future[None]) -> None:
        with self._lock:
            if self._pending.get(mid) is fut:
                del self._pending[mid]

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, rc: ReasonCode, props: Any) -> None:
        with self._lock:
            fut = self._pending.pop(mid, None)
            if fut is None:
                if mid in self._ignored:
                    self._ignored.discard(mid)
                else:
                    self._early[mid] = rc
                return
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self._settle, fut, rc)

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

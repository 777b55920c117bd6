"""Failover for a shared-subscription group of ingest workers: survivors adopt a dead worker's session.

Why: Mosquitto keeps routing a shared subscription's share to a member whose persistent
session outlives its connection, and queues it there; nothing else ever reads that queue
until the session expires. Clean sessions would free the share, but they throw away what
the dead worker had received and not yet acknowledged. So sessions stay persistent, and
when one worker disappears another one takes its session over:

- each worker keeps a retained presence message ``edge-agent/ingest/<group>/<client id>``:
  ``online`` on connect, ``offline`` as its last will (a crash) or on a graceful stop;
- every worker sees every presence; each offline worker is assigned to one live worker
  (a stable hash over the sorted live ids), which connects with the dead worker's client
  id and ``clean_start=False``: the broker hands over its queue and re-sends what was in
  flight. The adopter unsubscribes the shared filters at once (no new share flows to it),
  writes and acknowledges the backlog like its own, and when the session has been idle
  for ``idle_s`` ends it (session expiry 0) and clears the presence;
- if the dead worker comes back under its id first, the broker takes the session back
  from the adopter (reason "session taken over") and the adopter simply stops.

Messages in flight at the dead worker are written again by the adopter; the rewrite
overwrites the same points in InfluxDB, so nothing is lost or doubled.
"""

from __future__ import annotations

__all__ = ["PRESENCE_ROOT", "Adopter", "Presence", "presence_topic"]

import asyncio
import json
import logging
import zlib
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.config import MqttConfig
from edge_agent.delivery.mqttclient import connect_async, make_client

log = logging.getLogger("edge_agent.ingest")

PRESENCE_ROOT = "edge-agent/ingest"
_TAKEN_OVER = 142  # MQTT 5 DISCONNECT reason: session taken over


def presence_topic(group: str, client_id: str) -> str:
    return f"{PRESENCE_ROOT}/{group}/{client_id}"


class Presence:
    """Live view of the group's members (asyncio side); says which dead members this worker adopts."""

    def __init__(self, group: str, me: str) -> None:
        self.group, self.me = group, me
        self.filter = f"{PRESENCE_ROOT}/{group}/+"
        self.states: dict[str, str] = {}

    def update(self, topic: str, payload: bytes) -> None:
        cid = topic.rsplit("/", 1)[-1]
        if not payload:
            self.states.pop(cid, None)
            return
        try:
            state = json.loads(payload).get("state")
        except (ValueError, AttributeError):
            log.warning("ingest: ignoring a presence message on %r that is not ours", topic)
            return
        if state in ("online", "offline"):
            self.states[cid] = state

    def mine(self) -> list[str]:
        """Offline members assigned to this worker."""
        alive = sorted({c for c, s in self.states.items() if s == "online"} | {self.me})
        return [
            c
            for c, s in sorted(self.states.items())
            if s == "offline" and c != self.me and alive[zlib.crc32(c.encode()) % len(alive)] == self.me
        ]


def presence_payload(state: str) -> bytes:
    return json.dumps({"v": 1, "state": state}).encode()


class Adopter:
    """One adopted session: connect as the dead worker, unsubscribe, drain, end the session."""

    def __init__(
        self,
        cfg: MqttConfig,
        client_id: str,
        filters: list[str],
        deliver: Callable[[mqtt.Client, mqtt.MQTTMessage], None],
        loop: asyncio.AbstractEventLoop,
        idle_s: float = 1.0,
    ) -> None:
        self.cfg, self.client_id, self.filters, self.loop = cfg, client_id, filters, loop
        self.idle_s = idle_s
        self.pending = 0  # received, not yet acknowledged (asyncio side)
        self.received = 0
        self.last_rx = loop.time()
        self.unsubscribed = asyncio.Event()
        self.lost = asyncio.Event()  # taken over or refused: stop without ending the session
        self.session_present = True
        self.client = make_client(cfg, client_id, persistent=True, manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_unsubscribe = self._on_unsubscribe
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = lambda c, u, m: deliver(c, m)

    # paho thread
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if rc.is_failure:
            log.error("ingest: adopting %s: broker refused: %s", self.client_id, rc)
            self.loop.call_soon_threadsafe(self.lost.set)
            return
        self.session_present = bool(flags.session_present)
        client.unsubscribe(self.filters)

    def _on_unsubscribe(self, client: mqtt.Client, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        self.loop.call_soon_threadsafe(self.unsubscribed.set)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        if rc.value == _TAKEN_OVER:
            self.loop.call_soon_threadsafe(self.lost.set)

    # asyncio side
    def received_one(self) -> None:
        self.pending += 1
        self.received += 1
        self.last_rx = self.loop.time()

    def acked(self, n: int = 1) -> None:
        self.pending -= n

    async def run(self) -> bool:
        """Drain the session; True when it was drained and ended, False when lost to its owner."""
        connect_async(
            self.client,
            self.cfg,
            persistent=True,
            session_expiry=self.cfg.session_expiry,
            receive_maximum=self.cfg.ingest_window,
        )
        ended = False
        try:
            lost = asyncio.ensure_future(self.lost.wait())
            unsub = asyncio.ensure_future(self.unsubscribed.wait())
            await asyncio.wait({lost, unsub}, return_when=asyncio.FIRST_COMPLETED)
            while not self.lost.is_set():
                if self.pending == 0 and self.loop.time() - self.last_rx >= self.idle_s:
                    break
                await asyncio.sleep(0.1)
            lost.cancel()
            unsub.cancel()
            if self.lost.is_set():
                return False
            props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 0  # end the session: it leaves the shared group
            self.client.disconnect(properties=props)
            ended = True
            return True
        finally:
            if not ended:
                self.client.disconnect()  # stops paho's reconnecting; the session stays for a later adopter
            await asyncio.to_thread(self.client.loop_stop)

"""The Sparkplug B edge node sink: one MQTT session per bdSeq, births, data by PUBACK, deaths.

Session life: connect with the NDEATH will of the next bdSeq → subscribe NCMD (and the
primary host's STATE) → once allowed (no primary host configured, or its STATE says
online) publish NBIRTH and the DBIRTHs → DDATA per buffered batch, confirmed to the buffer
on PUBACK. When the connection drops, or the primary host goes offline (then the node
publishes NDEATH and disconnects, as Sparkplug 3.0 requires), the session ends: its paho
client is discarded so none of its numbered messages is ever resent, unconfirmed batches
fail with TransientSinkError and come back from the buffer, and a new session begins.
"""

from __future__ import annotations

__all__ = ["SparkplugSink"]

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.config import AgentConfig, SparkplugConfig
from edge_agent.delivery.mqttclient import connect_async, make_client
from edge_agent.delivery.record import Record
from edge_agent.delivery.sink import Sink
from edge_agent.delivery.sparkplug.acks import PubackBridge
from edge_agent.delivery.sparkplug.payload import is_rebirth_request
from edge_agent.delivery.sparkplug.session import EdgeNode, Message
from edge_agent.delivery.sparkplug.topics import NodeTopics, state_topic
from edge_agent.delivery.units import RAW_SUFFIX
from edge_agent.errors import ConfigError, ConfigProblem, PermanentSinkError, TransientSinkError

log = logging.getLogger("edge_agent.delivery.sparkplug")


class _Session:
    """One MQTT connection = one bdSeq. Lives until the connection or the host is lost."""

    def __init__(self, client: mqtt.Client, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.acks = PubackBridge(client, loop)
        self.connected = False  # the broker accepted this session at least once
        self.closing = False  # we end it ourselves: its disconnect is not news
        self.ended = asyncio.Event()


class SparkplugSink(Sink):
    """Assets are Sparkplug devices of the edge node ``edge_node_id`` in ``group_id``."""

    max_records = 1

    def __init__(
        self,
        config: SparkplugConfig,
        *,
        agent: str,
        units: Mapping[tuple[str, str], str],
        name: str = "sparkplug",
    ) -> None:
        self.name = name
        self.config = config
        self.max_inflight = config.max_inflight
        self.backoff_max = config.backoff_max
        self.node_id = config.edge_node_id or agent
        self.node = EdgeNode(NodeTopics(config.group_id, self.node_id), units)
        self._client_id = config.client_id or f"edge-agent-spb-{self.node_id}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: _Session | None = None
        self._born = asyncio.Event()
        self._host_online = False
        self._host_ts = -1  # newest STATE timestamp seen (older ones are ignored, Sparkplug 3.0)
        self._supervisor: asyncio.Task[None] | None = None

    @classmethod
    def from_config(cls, config: AgentConfig) -> SparkplugSink:
        """The sink for ``config.sparkplug``; raw tags' units come from the device tags (a
        counter's exact count, ``<tag>_raw`` beside it, is in counts)."""
        assert config.sparkplug is not None
        tags = [(d.name, t) for d in config.devices for t in d.tag_configs()]
        units: dict[tuple[str, str], str] = {(dev, t.name): t.unit for dev, t in tags}
        units |= {(dev, t.name + RAW_SUFFIX): "count" for dev, t in tags if t.is_counter}
        return cls(config.sparkplug, agent=config.agent.name, units=units)

    @property
    def connected(self) -> bool:
        return self._born.is_set()

    @property
    def host_online(self) -> bool:
        """True when births are allowed: no primary host configured, or it said online."""
        return self.config.primary_host_id is None or self._host_online

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            first = self._open()  # a bad setting fails here, at startup, not in a background task
        except (OSError, ValueError) as exc:
            tls = self.config.tls
            files = {
                k: str(v) for k, v in (tls.model_dump() if tls else {}).items() if k.endswith("_file") and v
            }
            problem = ConfigProblem(
                "sparkplug.tls",
                None,
                f"cannot set up the MQTT client ({exc}); TLS files "
                f"{files or 'none'}: check that they exist and are readable",
            )
            raise ConfigError("sparkplug settings", [problem]) from exc
        self._supervisor = asyncio.create_task(self._run(first), name=f"sparkplug-{self.node_id}")

    async def stop(self) -> None:
        session = self._session
        if session is not None and self._born.is_set():
            # An orderly goodbye: NDEATH with this session's bdSeq, then disconnect.
            with contextlib.suppress(TimeoutError, TransientSinkError, PermanentSinkError):
                await asyncio.wait_for(self._publish(session, self.node.ndeath()), 2.0)
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)  # a crash was logged in _run

    async def _run(self, session: _Session) -> None:
        try:
            while True:
                try:
                    await session.ended.wait()
                finally:
                    await self._close(session)
                session = self._open()
        except Exception:
            # e.g. TLS files removed while running: say so loudly; batches stay in the buffer.
            log.exception("sparkplug: node %s stopped publishing; fix the cause and restart", self.node_id)
            raise

    def _open(self) -> _Session:
        assert self._loop is not None
        will = self.node.new_session()
        client = make_client(self.config, self._client_id)
        client.max_inflight_messages_set(self.config.max_inflight)
        client.max_queued_messages_set(0)
        client.will_set(will.topic, will.payload, qos=1, retain=False)
        session = _Session(client, self._loop)
        client.on_connect = lambda c, u, f, rc, p: self._on_connect(session, rc)
        client.on_disconnect = lambda c, u, f, rc, p: self._on_disconnect(session, rc)
        client.on_message = lambda c, u, msg: self._on_message(session, msg)
        self._session = session
        connect_async(client, self.config)
        log.info(
            "sparkplug: node %s/%s connecting, bdSeq %d", self.config.group_id, self.node_id, self.node.bd_seq
        )
        return session

    async def _close(self, session: _Session) -> None:
        self._born.clear()
        self.node.end_session()
        session.acks.fail_all("sparkplug: session ended before the broker acknowledged")
        session.closing = True
        session.client.disconnect()
        await asyncio.to_thread(session.client.loop_stop)

    # -- paho callbacks (network thread) -------------------------------------------------------
    def _on_connect(self, session: _Session, rc: ReasonCode) -> None:
        if rc.is_failure:
            log.error(
                "sparkplug: broker %s:%d refused the connection: %s; check credentials/TLS",
                self.config.host,
                self.config.port,
                rc,
            )
            return
        session.connected = True
        qos = 1
        session.client.subscribe(self.node.topics.node("NCMD"), qos)
        host = self.config.primary_host_id
        if host is not None:
            session.client.subscribe(state_topic(host), qos)  # retained: answers at once
        else:
            self._call(self._birth, session)

    def _on_disconnect(self, session: _Session, rc: ReasonCode) -> None:
        if not session.connected or session.closing:
            return  # never got in (paho keeps retrying with backoff), or we are closing it
        session.client.disconnect()  # stop paho's own reconnect: a new session gets a new bdSeq
        log.warning(
            "sparkplug: lost broker %s:%d (%s); buffering, new session follows",
            self.config.host,
            self.config.port,
            rc,
        )
        self._call(session.ended.set)

    def _on_message(self, session: _Session, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self.node.topics.node("NCMD"):
            if is_rebirth_request(bytes(msg.payload)):
                self._call(self._rebirth, session)
        elif (host := self.config.primary_host_id) is not None and msg.topic == state_topic(host):
            self._call(self._on_state, session, bytes(msg.payload))

    def _call(self, fn: Any, *args: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(fn, *args)

    # -- state machine (event loop) ------------------------------------------------------------
    def _birth(self, session: _Session) -> None:
        if session is not self._session or session.ended.is_set():
            return
        for msg in self.node.birth():
            self._fire(session, msg)
        self._born.set()
        log.info(
            "sparkplug: node %s born (bdSeq %d, %d device(s))",
            self.node_id,
            self.node.bd_seq,
            len(self.node.born),
        )

    def _rebirth(self, session: _Session) -> None:
        if self._born.is_set() and session is self._session:
            log.info("sparkplug: rebirth requested by NCMD")
            self._birth(session)

    def _on_state(self, session: _Session, payload: bytes) -> None:
        try:
            doc = json.loads(payload)
            online, ts = bool(doc["online"]), int(doc["timestamp"])
        except (ValueError, KeyError, TypeError):
            log.warning(
                "sparkplug: ignoring malformed STATE from host %r: %r",
                self.config.primary_host_id,
                payload[:200],
            )
            return
        if ts < self._host_ts:
            return  # a stale STATE (Sparkplug 3.0: compare timestamps)
        self._host_ts = ts
        self._host_online = online
        if session is not self._session:
            return
        if online and not self._born.is_set():
            self._birth(session)
        elif not online and self._born.is_set():
            log.warning(
                "sparkplug: primary host %r offline; NDEATH and a new session that waits for it",
                self.config.primary_host_id,
            )
            self._born.clear()
            self._fire(session, self.node.ndeath())
            session.ended.set()

    def _fire(self, session: _Session, msg: Message) -> None:
        """Publish without waiting; a failure ends nothing here, the data path will notice."""
        try:
            fut = self._publish(session, msg)
        except (TransientSinkError, PermanentSinkError) as exc:
            log.debug("sparkplug: %s not published: %s", msg.kind, exc)
            return
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())

    def _publish(self, session: _Session, msg: Message) -> asyncio.Future[None]:
        return session.acks.publish(msg.topic, msg.payload, self.config.qos)

    # -- data path -----------------------------------------------------------------------------
    async def send(self, records: Sequence[Record]) -> None:
        try:
            await asyncio.wait_for(self._born.wait(), self.config.birth_wait)
        except TimeoutError:
            why = "waiting for primary host STATE online" if not self.host_online else "not connected"
            raise TransientSinkError(f"sparkplug: node {self.node_id} not born ({why})") from None
        session = self._session
        if session is None or not self._born.is_set():
            raise TransientSinkError(f"sparkplug: node {self.node_id} session ended; retrying")
        rec = records[0]
        try:
            messages = self.node.data(rec)
        except ValueError as exc:
            raise PermanentSinkError(
                f"batch from {rec.batch.device!r} (asset {rec.placement.asset!r}) cannot be encoded: {exc}"
            ) from exc
        futures = [self._publish(session, m) for m in messages]
        await asyncio.gather(*futures)

    # -- device health (called by the runtime, see liveness.py) --------------------------------
    def device_lost(self, device: str) -> None:
        """The asset's pollers are all down: DDEATH now (if born)."""
        self._emit(self.node.device_lost(device))

    def device_restored(self, device: str) -> None:
        """Polling works again: DBIRTH now (if it has metrics); its data follows as DDATA."""
        self._emit(self.node.device_restored(device))

    def _emit(self, messages: list[Message]) -> None:
        session = self._session
        if session is None or not self._born.is_set():
            return
        for m in messages:
            self._fire(session, m)

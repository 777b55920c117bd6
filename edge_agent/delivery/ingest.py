"""``edge-agent ingest``: UNS topics from MQTT into InfluxDB, acknowledging only what landed.

The subscription is persistent (MQTT 5 session expiry, or clean_session false on 3.1.1)
and acknowledged manually, so a message the broker handed us is PUBACKed only after
InfluxDB accepted its points; if the worker dies first, the broker sends it again and
the rewrite overwrites (same series and timestamp).

Every message passes :mod:`ingest_validation` first: anything malformed or implausible
is kept in the quarantine file with its reason and acknowledged, so one poison message
can neither crash ingest nor come back forever.

With a group (``ingest_group`` or ``--group``) the filters are shared subscriptions
(``$share/<group>/...``) so several workers split the load, and :mod:`ingest_group` lets
the survivors adopt a dead worker's session (see there, and the delivery README).
"""

from __future__ import annotations

__all__ = ["IngestStats", "ingest_client_id", "run_ingest", "serve_ingest"]

import asyncio
import collections
import contextlib
import logging
import os
import re
import signal
import socket
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.config import AgentConfig
from edge_agent.delivery.influx import make_writer
from edge_agent.delivery.influx_target import TargetUnchecked, ensure_target
from edge_agent.delivery.ingest_group import (
    PRESENCE_ROOT,
    Adopter,
    Presence,
    presence_payload,
    presence_topic,
)
from edge_agent.delivery.ingest_validation import Checked, TimeWindow, decode_message
from edge_agent.delivery.mqttclient import connect_async, make_client
from edge_agent.delivery.payload import PayloadError
from edge_agent.delivery.quarantine import Quarantine
from edge_agent.delivery.record import sample_count
from edge_agent.delivery.topics import subscription_filters
from edge_agent.errors import ConfigError, ConfigProblem, PermanentSinkError, TransientSinkError
from edge_agent.retry import Backoff, retry

log = logging.getLogger("edge_agent.ingest")

_CLIENT_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_TAKEN_OVER = 142


@dataclass(slots=True)
class IngestStats:
    messages: int = 0  # acknowledged, whatever their fate
    samples: int = 0  # samples of messages written to InfluxDB
    rejected: int = 0  # malformed or implausible messages, kept in the quarantine with the reason
    quarantined: int = 0  # well-formed messages InfluxDB refused for good
    retried: int = 0  # failed write attempts (InfluxDB down, 5xx, 429)
    adopted: int = 0  # sessions of dead group members drained and ended by this worker
    connected: bool = False
    last_error: str | None = None


@dataclass(slots=True)
class _Item:
    client: mqtt.Client
    msg: mqtt.MQTTMessage
    checked: Checked | None
    adopter: Adopter | None = None


def ingest_client_id(config: AgentConfig, group: str | None, client_id: str | None) -> str:
    """The explicit id, else the config's, else a derived one (unique per host and process in a group)."""
    assert config.mqtt is not None
    cid = client_id or config.mqtt.ingest_client_id
    if cid is None:
        base = f"edge-agent-ingest-{config.agent.name}"
        if group is None:
            return base  # one worker: a stable id, so a restart resumes its session
        host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())
        return f"{base}-{group}-{host}-{os.getpid()}"
    if not _CLIENT_ID.fullmatch(cid):
        raise ConfigError(
            "<config>",
            [
                ConfigProblem(
                    "mqtt.ingest_client_id",
                    None,
                    f"client id {cid!r} must be 1-128 letters, digits or '_.-' (it also names the "
                    "worker's presence topic)",
                )
            ],
        )
    return cid


class _Ingest:
    def __init__(
        self, config: AgentConfig, group: str | None, client_id: str | None, stats: IngestStats
    ) -> None:
        missing = [k for k in ("mqtt", "influxdb") if getattr(config, k) is None]
        if missing:
            raise ConfigError(
                "<config>",
                [
                    ConfigProblem(k, None, f"'{k}' section is required by 'edge-agent ingest'")
                    for k in missing
                ],
            )
        assert config.mqtt is not None and config.influxdb is not None
        self.mcfg, self.icfg, self.stats = config.mqtt, config.influxdb, stats
        self.stop_timeout = config.agent.stop_timeout
        self.group = group if group is not None else self.mcfg.ingest_group
        if self.group is not None and self.mcfg.protocol != "5":
            raise ConfigError(
                "<config>",
                [ConfigProblem("mqtt.protocol", None, "a group (shared subscriptions) needs protocol '5'")],
            )
        self.client_id = ingest_client_id(config, self.group, client_id)
        self.window = TimeWindow(self.mcfg.ingest_max_age, self.mcfg.ingest_max_ahead)
        self.filters = subscription_filters(self.mcfg.topic_template, group=self.group)
        self.presence = Presence(self.group, self.client_id) if self.group else None
        self.client = make_client(self.mcfg, self.client_id, persistent=True, manual_ack=True)
        if self.presence is not None:
            self.client.will_set(
                presence_topic(self.presence.group, self.client_id), presence_payload("offline"), 1, True
            )
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._inbox: collections.deque[_Item] = collections.deque()  # paho thread -> loop
        self._wake_pending = False
        self.loop = asyncio.get_running_loop()
        self.writer = make_writer(self.icfg)
        qpath = config.buffer.path.with_name("ingest-quarantine.db")
        qpath.parent.mkdir(parents=True, exist_ok=True)
        self.qdb = sqlite3.connect(qpath, isolation_level=None, check_same_thread=False)
        self.quarantine = Quarantine(self.qdb, config.buffer.quarantine_max_bytes, str(qpath))
        self.failing = False
        self.subscribed = asyncio.Event()
        self.stopping = asyncio.Event()
        self.adopters: dict[str, asyncio.Task[None]] = {}

    # -- paho thread -----------------------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if rc.is_failure:
            log.error("ingest: broker %s:%d refused the connection: %s", self.mcfg.host, self.mcfg.port, rc)
            return
        self.stats.connected = True
        subs = [(f, 1) for f in self.filters]
        if self.presence is not None:
            subs.append((self.presence.filter, 0))
        client.subscribe(subs)
        if self.presence is not None:  # after SUBSCRIBE: whoever sees 'online' sees a subscribed member
            client.publish(
                presence_topic(self.presence.group, self.client_id), presence_payload("online"), 1, True
            )
        log.info(
            "ingest: %s connected to %s:%d, subscribed to %s",
            self.client_id,
            self.mcfg.host,
            self.mcfg.port,
            self.filters,
        )

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        failed = [c for c in codes if c.is_failure]
        if failed:
            log.error("ingest: broker refused subscriptions %s: %s", self.filters, failed)
            return
        self.loop.call_soon_threadsafe(self.subscribed.set)  # ready only once the SUBACK is in

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        if rc.value == _TAKEN_OVER:
            log.error(
                "ingest: another client connected as %r and took this worker's session; reconnecting. "
                "If this repeats, two workers share a client id: give each its own --client-id",
                self.client_id,
            )
        elif self.stats.connected and rc.is_failure:
            log.warning("ingest: lost the broker (%s); reconnecting, unacknowledged messages come again", rc)
        self.stats.connected = False

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self.presence is not None and msg.topic.startswith(PRESENCE_ROOT + "/"):
            self.loop.call_soon_threadsafe(self._on_presence, msg.topic, bytes(msg.payload))
            return
        self._hand_over(_Item(client, msg, None))

    def _adopted_message(self, adopter: Adopter, client: mqtt.Client, msg: mqtt.MQTTMessage) -> None:
        self._hand_over(_Item(client, msg, None, adopter))

    def _hand_over(self, item: _Item) -> None:
        """Wake the loop once per burst, not once per message (each wake-up is a syscall)."""
        self._inbox.append(item)
        if not self._wake_pending:
            self._wake_pending = True
            self.loop.call_soon_threadsafe(self._take_inbox)

    def _take_inbox(self) -> None:
        self._wake_pending = False  # before draining: a message appended now schedules a new wake-up
        while self._inbox:
            item = self._inbox.popleft()
            if item.adopter is not None:
                item.adopter.received_one()
            self.queue.put_nowait(item)

    # -- group membership (asyncio side) -----------------------------------------------------------
    def _on_presence(self, topic: str, payload: bytes) -> None:
        assert self.presence is not None
        self.presence.update(topic, payload)
        if self.stopping.is_set():
            return
        for cid in self.presence.mine():
            if cid not in self.adopters:
                self.adopters[cid] = asyncio.create_task(self._adopt(cid), name=f"adopt-{cid}")

    async def _adopt(self, cid: str) -> None:
        assert self.presence is not None
        log.warning("ingest: group member %s is gone; %s takes over its session", cid, self.client_id)
        adopter = Adopter(
            self.mcfg,
            cid,
            self.filters,
            lambda c, m: self._adopted_message(adopter, c, m),
            self.loop,
        )
        try:
            if await adopter.run():
                self.stats.adopted += 1
                self.client.publish(presence_topic(self.presence.group, cid), b"", 1, True)
                log.warning(
                    "ingest: drained and ended the session of %s (%d messages)", cid, adopter.received
                )
            else:
                log.info("ingest: the session of %s was taken back by its owner", cid)
        except Exception:
            log.exception("ingest: adopting the session of %s failed", cid)
        finally:
            self.adopters.pop(cid, None)

    # -- asyncio side ----------------------------------------------------------------------------
    def _check(self, item: _Item) -> _Item:
        try:
            item.checked = decode_message(
                bytes(item.msg.payload), max_bytes=self.mcfg.max_message_bytes, window=self.window
            )
        except PayloadError as exc:
            self.stats.rejected += 1
            n = self.stats.rejected
            self.quarantine.reject(item.msg.topic, bytes(item.msg.payload), str(exc))
            if n <= 10 or n & (n - 1) == 0:
                log.warning("ingest: quarantined a message on %r (%d so far): %s", item.msg.topic, n, exc)
        return item

    async def _next(self) -> _Item | None:
        """The next message, or None once stopping (checked every 0.2 s while idle)."""
        while not self.stopping.is_set():
            try:
                async with asyncio.timeout(0.2):  # no extra Task per message, unlike wait_for
                    item = await self.queue.get()
            except TimeoutError:
                continue
            return self._check(item)
        return None

    async def _collect(self) -> list[_Item]:
        first = await self._next()
        if first is None:
            return []
        items = [first]
        samples = sample_count(first.checked.record.batch) if first.checked else 0
        deadline = self.loop.time() + self.icfg.linger
        while samples < self.icfg.batch_size:
            try:
                item = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - self.loop.time()
                if remaining <= 0:
                    break
                try:
                    async with asyncio.timeout(remaining):
                        item = await self.queue.get()
                except TimeoutError:
                    break
            items.append(self._check(item))
            samples += sample_count(item.checked.record.batch) if item.checked else 0
        return items

    def _failed(self, exc: Exception, delay: float) -> None:
        self.stats.retried += 1
        self.stats.last_error = str(exc)
        log.log(
            logging.DEBUG if self.failing else logging.ERROR,
            "ingest: write failed: %s; retrying, messages stay unacknowledged",
            exc,
        )
        self.failing = True

    async def _write(self, checked: Sequence[Checked]) -> None:
        """Write with retries; on a permanent refusal isolate the bad message(s) and quarantine them."""
        if not any(c.fields for c in checked):
            return
        body = "".join(c.lines for c in checked).encode()
        try:
            await retry(
                lambda: asyncio.to_thread(self.writer.write, body),
                backoff=Backoff(0.2, self.icfg.backoff_max),
                retryable=lambda exc: isinstance(exc, TransientSinkError),
                on_retry=self._failed,
            )
        except PermanentSinkError as exc:
            if len(checked) > 1:
                half = len(checked) // 2
                await self._write(checked[:half])
                await self._write(checked[half:])
                return
            rec = checked[0].record
            log.error(
                "ingest: InfluxDB refused a message of asset %r for good: %s; quarantined",
                rec.placement.asset,
                exc,
            )
            self.quarantine.add("ingest", rec, str(exc))
            self.stats.quarantined += 1
            self.stats.samples -= rec.samples  # counted below as written; it was not
            return
        if self.failing:
            log.warning("ingest: InfluxDB accepts writes again")
            self.failing = False

    async def _prepare_target(self) -> None:
        """Create the v1 database / check the v2 bucket, retrying while InfluxDB is unreachable."""
        try:
            await retry(
                lambda: asyncio.to_thread(ensure_target, self.icfg),
                backoff=Backoff(0.2, self.icfg.backoff_max),
                retryable=lambda exc: isinstance(exc, TransientSinkError),
                on_retry=self._failed,
            )
        except TargetUnchecked as exc:
            log.warning("ingest: %s", exc)

    async def run(self) -> None:
        await self._prepare_target()
        connect_async(
            self.client,
            self.mcfg,
            persistent=True,
            session_expiry=self.mcfg.session_expiry,
            receive_maximum=self.mcfg.ingest_window,
        )
        while True:
            items = await self._collect()
            if not items:
                return  # stopping, and the last batch is written and acknowledged
            checked = [it.checked for it in items if it.checked is not None]
            if checked:
                await self._write(checked)
                self.stats.samples += sum(c.record.samples for c in checked)
            for it in items:  # in arrival order, only after InfluxDB has the points
                if it.msg.qos:
                    it.client.ack(it.msg.mid, it.msg.qos)
                if it.adopter is not None:
                    it.adopter.acked()
                self.stats.messages += 1

    async def leave(self) -> None:
        """After the drain: stop adopting, say 'offline' so the group adopts our session, disconnect."""
        for task in list(self.adopters.values()):
            task.cancel()
        await asyncio.gather(*self.adopters.values(), return_exceptions=True)
        if self.presence is not None and self.client.is_connected():
            info = self.client.publish(
                presence_topic(self.presence.group, self.client_id), presence_payload("offline"), 1, True
            )
            with contextlib.suppress(RuntimeError, ValueError):
                await asyncio.to_thread(info.wait_for_publish, 2.0)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.writer.close()
        self.qdb.close()


async def run_ingest(
    config: AgentConfig,
    *,
    group: str | None = None,
    client_id: str | None = None,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
    stats: IngestStats | None = None,
) -> IngestStats:
    """Run until ``stop`` is set (then drain: the batch in hand is written and acknowledged).

    ``group`` / ``client_id`` override the config (e.g. one per worker); ``ready`` is set
    once the subscriptions are made. The drain is bounded by ``agent.stop_timeout``;
    whatever is left unacknowledged is re-sent by the broker.
    """
    stats = stats if stats is not None else IngestStats()
    worker = _Ingest(config, group, client_id, stats)
    try:
        work = asyncio.create_task(worker.run(), name="ingest")
        relay: asyncio.Task[Any] | None = None
        if ready is not None:
            relay = asyncio.create_task(worker.subscribed.wait())
            relay.add_done_callback(lambda _: ready.set())
        waits: set[asyncio.Future[Any]] = {work}
        if stop is not None:
            waits.add(asyncio.ensure_future(stop.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            worker.stopping.set()
            if not work.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(work), worker.stop_timeout)
                if not work.done():
                    log.warning(
                        "ingest: drain not finished after %g s; the broker re-sends the rest",
                        worker.stop_timeout,
                    )
        finally:
            for w in (*waits, *((relay,) if relay else ())):
                w.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
        if not work.cancelled() and work.exception() is not None:
            raise work.exception()  # type: ignore[misc]
        await worker.leave()
    finally:
        await asyncio.to_thread(worker.close)
    return stats


async def serve_ingest(
    config: AgentConfig, *, group: str | None = None, client_id: str | None = None
) -> IngestStats:
    """``edge-agent ingest``: run until SIGTERM or SIGINT, then drain and return (exit 0)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        stats = await run_ingest(config, group=group, client_id=client_id, stop=stop)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    log.info(
        "ingest: stopped after %d messages, %d samples written, %d quarantined, %d refused by InfluxDB",
        stats.messages,
        stats.samples,
        stats.rejected,
        stats.quarantined,
    )
    return stats

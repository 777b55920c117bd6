"""``edge-agent ingest``: UNS topics from MQTT into InfluxDB, acknowledging only what landed.

The subscription is persistent (MQTT 5 session expiry, or clean_session false on 3.1.1)
and acknowledged manually, so a message the broker handed us is PUBACKed only after
InfluxDB accepted its points; if the worker dies first, the broker sends it again and
the rewrite overwrites (same series and timestamp). With ``ingest_group`` the filters are
shared subscriptions (``$share/<group>/...``) so several workers split the load.
"""

from __future__ import annotations

__all__ = ["IngestStats", "run_ingest"]

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.config import AgentConfig
from edge_agent.delivery.influx import lines_for, make_writer
from edge_agent.delivery.mqttclient import connect_async, make_client
from edge_agent.delivery.payload import PayloadError, decode_payload
from edge_agent.delivery.quarantine import Quarantine
from edge_agent.delivery.record import Record, sample_count
from edge_agent.delivery.topics import subscription_filters
from edge_agent.errors import ConfigError, ConfigProblem, PermanentSinkError, TransientSinkError
from edge_agent.retry import Backoff, retry

log = logging.getLogger("edge_agent.ingest")


@dataclass(slots=True)
class IngestStats:
    messages: int = 0  # acknowledged, whatever their fate
    samples: int = 0  # samples of messages written to InfluxDB
    rejected: int = 0  # malformed messages (bad JSON, wrong schema, NaN, too large)
    quarantined: int = 0  # well-formed messages InfluxDB refused for good
    retried: int = 0  # failed write attempts (InfluxDB down, 5xx, 429)
    connected: bool = False
    last_error: str | None = None


@dataclass(slots=True)
class _Item:
    msg: mqtt.MQTTMessage
    record: Record | None


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
        self.group = group if group is not None else self.mcfg.ingest_group
        cid = client_id or self.mcfg.ingest_client_id or f"edge-agent-ingest-{config.agent.name}"
        self.filters = subscription_filters(self.mcfg.topic_template, group=self.group)
        self.client = make_client(self.mcfg, cid, persistent=True, manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.queue: asyncio.Queue[mqtt.MQTTMessage] = asyncio.Queue()
        self.loop = asyncio.get_running_loop()
        self.writer = make_writer(self.icfg)
        qpath = config.buffer.path.with_name("ingest-quarantine.db")
        qpath.parent.mkdir(parents=True, exist_ok=True)
        self.qdb = sqlite3.connect(qpath, isolation_level=None, check_same_thread=False)
        self.quarantine = Quarantine(self.qdb, config.buffer.quarantine_max_bytes, str(qpath))
        self.failing = False
        self.subscribed = asyncio.Event()

    # -- paho thread -----------------------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if rc.is_failure:
            log.error("ingest: broker %s:%d refused the connection: %s", self.mcfg.host, self.mcfg.port, rc)
            return
        self.stats.connected = True
        client.subscribe([(f, 1) for f in self.filters])
        log.info("ingest: connected to %s:%d, subscribed to %s", self.mcfg.host, self.mcfg.port, self.filters)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        failed = [c for c in codes if c.is_failure]
        if failed:
            log.error("ingest: broker refused subscriptions %s: %s", self.filters, failed)
            return
        self.loop.call_soon_threadsafe(self.subscribed.set)  # ready only once the SUBACK is in

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        if self.stats.connected and rc.is_failure:
            log.warning("ingest: lost the broker (%s); reconnecting, unacknowledged messages come again", rc)
        self.stats.connected = False

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, msg)

    # -- asyncio side ----------------------------------------------------------------------------
    def _decode(self, msg: mqtt.MQTTMessage) -> Record | None:
        try:
            d = decode_payload(bytes(msg.payload), max_bytes=self.mcfg.max_message_bytes)
        except PayloadError as exc:
            self.stats.rejected += 1
            n = self.stats.rejected
            if n <= 10 or n & (n - 1) == 0:
                log.warning("ingest: rejected message on %r (%d rejected so far): %s", msg.topic, n, exc)
            return None
        return Record(0, d.kind, d.placement, d.batch)

    async def _collect(self) -> list[_Item]:
        items = [_Item(m := await self.queue.get(), self._decode(m))]
        samples = sample_count(items[0].record.batch) if items[0].record else 0
        deadline = self.loop.time() + self.icfg.linger
        while samples < self.icfg.batch_size:
            try:
                m = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - self.loop.time()
                if remaining <= 0:
                    break
                try:
                    m = await asyncio.wait_for(self.queue.get(), remaining)
                except TimeoutError:
                    break
            rec = self._decode(m)
            items.append(_Item(m, rec))
            samples += sample_count(rec.batch) if rec else 0
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

    async def _write(self, records: Sequence[Record]) -> None:
        """Write with retries; on a permanent refusal isolate the bad message(s) and quarantine them."""
        body, fields = lines_for(records)
        if not fields:
            return
        try:
            await retry(
                lambda: asyncio.to_thread(self.writer.write, body),
                backoff=Backoff(0.2, self.icfg.backoff_max),
                retryable=lambda exc: isinstance(exc, TransientSinkError),
                on_retry=self._failed,
            )
        except PermanentSinkError as exc:
            if len(records) > 1:
                half = len(records) // 2
                await self._write(records[:half])
                await self._write(records[half:])
                return
            rec = records[0]
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

    async def run(self) -> None:
        connect_async(
            self.client,
            self.mcfg,
            persistent=True,
            session_expiry=self.mcfg.session_expiry,
            receive_maximum=self.mcfg.ingest_window,
        )
        while True:
            items = await self._collect()
            records = [it.record for it in items if it.record is not None]
            if records:
                await self._write(records)
                self.stats.samples += sum(r.samples for r in records)
            for it in items:  # in arrival order, only after InfluxDB has the points
                if it.msg.qos:
                    self.client.ack(it.msg.mid, it.msg.qos)
                self.stats.messages += 1

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
    """Run until ``stop`` is set (or the task is cancelled); returns the counters.

    ``group`` / ``client_id`` override the config (e.g. one per worker); ``ready`` is set
    once the subscriptions are made.
    """
    stats = stats if stats is not None else IngestStats()
    worker = _Ingest(config, group, client_id, stats)
    try:
        work = asyncio.create_task(worker.run(), name="ingest")
        waits: set[asyncio.Future[Any]] = {work}
        if ready is not None:
            relay = asyncio.create_task(worker.subscribed.wait())
            relay.add_done_callback(lambda _: ready.set())
        if stop is not None:
            waits.add(asyncio.ensure_future(stop.wait()))
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
        if work in done and work.exception() is not None:
            raise work.exception()  # type: ignore[misc]
    finally:
        await asyncio.to_thread(worker.close)
    return stats

"""Sparkplug 3.0 primary host STATE rules against real Mosquitto: timestamps decide, not arrival."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from servers import MosquittoServer

from edge_agent.config import SparkplugConfig
from edge_agent.delivery.sparkplug import SparkplugSink
from edge_agent.delivery.sparkplug.topics import state_topic

pytestmark = pytest.mark.servers


async def _until(cond: Callable[[], bool], within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not cond():  # noqa: ASYNC110  (polling the sink's state is the check)
            await asyncio.sleep(0.02)


async def test_stale_state_is_ignored_and_offline_ends_the_session(mosquitto_server: MosquittoServer) -> None:
    host_id = f"scada-{uuid.uuid4().hex[:8]}"
    cfg = SparkplugConfig(
        host=mosquitto_server.host,
        port=mosquitto_server.port,
        group_id=f"plant-{uuid.uuid4().hex[:8]}",
        primary_host_id=host_id,
        backoff_max=1,
    )
    host = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=host_id)
    host.connect(mosquitto_server.host, mosquitto_server.port)
    host.loop_start()

    def state(online: bool, ts: int) -> None:
        payload = json.dumps({"online": online, "timestamp": ts})
        host.publish(state_topic(host_id), payload, qos=1, retain=True).wait_for_publish(5)

    try:
        async with SparkplugSink(cfg, agent="gw1", units={}) as sink:
            await asyncio.sleep(0.5)
            assert not sink.connected  # no STATE yet: no birth
            state(True, 2000)
            await _until(lambda: sink.connected)
            first = sink.node.bd_seq
            state(False, 1000)  # older than the online: must be ignored
            await asyncio.sleep(0.5)
            assert sink.connected and sink.node.bd_seq == first
            state(True, 2500)  # a newer online while born: nothing to do
            state(False, 3000)  # really offline: NDEATH, a new session that waits
            await _until(lambda: not sink.connected and sink.node.bd_seq == (first + 1) % 256)
            await asyncio.sleep(0.5)
            assert not sink.connected
            host.publish(state_topic(host_id), b"not json", qos=1).wait_for_publish(5)  # logged, ignored
            state(True, 4000)
            await _until(lambda: sink.connected)
            assert sink.node.bd_seq == (first + 1) % 256
    finally:
        host.publish(state_topic(host_id), b"", qos=1, retain=True).wait_for_publish(5)  # clear retained
        host.disconnect()
        host.loop_stop()

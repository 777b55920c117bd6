"""The lean MQTT publisher against a real Mosquitto: flow control, refusals, both protocols."""

from __future__ import annotations

import asyncio
import queue
import signal
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from servers import MosquittoServer

from edge_agent.config import MqttConfig
from edge_agent.delivery.mqtt_publisher import MqttPublisher

pytestmark = pytest.mark.servers


class _Broker(MosquittoServer):
    """Mosquitto with a small Receive Maximum and an ACL that refuses one topic tree."""

    def __init__(self, workdir: Path, inflight: int) -> None:
        super().__init__(workdir)
        acl = workdir / "acl"
        acl.write_text("topic readwrite ok/#\ntopic read denied/#\n")
        text = self.conf.read_text().replace(
            "max_inflight_messages 1000", f"max_inflight_messages {inflight}"
        )
        self.conf.write_text(
            text.replace("allow_anonymous true\n", f"allow_anonymous true\nacl_file {acl}\n", 1)
        )


def _subscriber(server: MosquittoServer, topic: str) -> tuple[mqtt.Client, queue.Queue[bytes]]:
    got: queue.Queue[bytes] = queue.Queue()
    c = mqtt.Client(CallbackAPIVersion.VERSION2)
    c.on_message = lambda cl, u, m: got.put(bytes(m.payload))
    c.connect(server.host, server.port)
    c.subscribe(topic, qos=1)
    c.loop_start()
    return c, got


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[_Broker]:
    b = _Broker(tmp_path, inflight=5)
    b.start()
    yield b
    b.stop()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_every_message_is_acknowledged_through_a_small_receive_window(
    broker: _Broker, protocol: str
) -> None:
    sub, got = _subscriber(broker, "ok/#")
    await asyncio.sleep(0.3)
    pub = MqttPublisher(
        MqttConfig(host=broker.host, port=broker.port, protocol=protocol, max_inflight=100), "pub-window"
    )
    await pub.start()
    try:
        assert await pub.wait_connected(10)
        if protocol == "5":
            assert pub.limits.window == 5  # Mosquitto's Receive Maximum, not our 100
        codes: list[int] = []
        done = asyncio.get_running_loop().create_future()

        def ack(code: int) -> None:
            codes.append(code)
            if len(codes) == 300 and not done.done():
                done.set_result(None)

        for i in range(300):
            pub.publish(f"ok/{i % 7}", f"m{i}".encode(), qos=1, ack=ack)
        await asyncio.wait_for(done, 20)
        assert codes == [0] * 300
        received: set[bytes] = set()
        while len(received) < 300:
            received.add(got.get(timeout=10))
        assert received == {f"m{i}".encode() for i in range(300)}
    finally:
        await pub.stop()
        sub.loop_stop()
        sub.disconnect()


async def test_a_refused_publish_reports_its_reason_code_and_the_others_land(broker: _Broker) -> None:
    pub = MqttPublisher(MqttConfig(host=broker.host, port=broker.port, protocol="5"), "pub-acl")
    await pub.start()
    try:
        assert await pub.wait_connected(10)
        codes: dict[str, int] = {}
        done = asyncio.get_running_loop().create_future()

        def on(topic: str):  # type: ignore[no-untyped-def]
            def ack(code: int) -> None:
                codes[topic] = code
                if len(codes) == 2 and not done.done():
                    done.set_result(None)

            return ack

        pub.publish("denied/x", b"no", qos=1, ack=on("denied/x"))
        pub.publish("ok/x", b"yes", qos=1, ack=on("ok/x"))
        await asyncio.wait_for(done, 10)
        assert codes["ok/x"] < 0x80  # success (0x10 "no matching subscribers" is one too)
        assert codes["denied/x"] >= 0x80  # Not authorized (0x87): a permanent refusal for the sink
    finally:
        await pub.stop()


async def test_a_lost_connection_fails_the_unacknowledged_and_reconnects(broker: _Broker) -> None:
    pub = MqttPublisher(MqttConfig(host=broker.host, port=broker.port, backoff_max=1), "pub-loss")
    await pub.start()
    try:
        assert await pub.wait_connected(10)
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGSTOP)  # PUBACKs stop coming
        codes: list[int] = []
        for i in range(20):
            pub.publish(f"ok/{i}", b"x", qos=1, ack=codes.append)
        await asyncio.sleep(0.3)
        broker.stop()  # SIGTERM while stopped: delivered once continued
        broker.proc = None
        for _ in range(100):
            if len(codes) == 20:
                break
            await asyncio.sleep(0.1)
        assert len(codes) == 20 and all(c < 0x80 for c in codes) and -1 in codes
        broker.start()
        assert await pub.wait_connected(15), pub.last_error
        back: list[int] = []
        pub.publish("ok/again", b"y", qos=1, ack=back.append)
        for _ in range(100):
            if back:
                break
            await asyncio.sleep(0.05)
        assert len(back) == 1 and 0 <= back[0] < 0x80
    finally:
        await pub.stop()

"""A Sparkplug B primary host application built on pysparkplug, independent of edge-agent's sink.

Run as its own process (``python tests/sparkplug_host.py HOST PORT GROUP HOST_ID``) so its
protobuf module never shares a descriptor pool with the agent's. MQTT transport is paho 2;
everything Sparkplug (topics, payload decoding, alias resolution, datatypes, NCMD and STATE
encoding) is pysparkplug's. pysparkplug's Metric drops property sets, so quality and units
are read from pysparkplug's own generated protobuf classes.

stdout: one JSON object per line (``ready``, ``msg``, ``error``); stdin commands:
``online``, ``offline``, ``rebirth <node>``.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import threading
from typing import Any

import paho.mqtt.client as mqtt
import pysparkplug as spb
from paho.mqtt.enums import CallbackAPIVersion
from pysparkplug import _protobuf as spb_pb

_out = threading.Lock()


def emit(**event: Any) -> None:
    with _out:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()


def _plain(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


class Host:
    def __init__(self, group: str, host_id: str) -> None:
        self.group, self.host_id = group, host_id
        self.state_topic = str(spb.Topic(message_type=spb.MessageType.STATE, sparkplug_host_id=host_id))
        self.births: dict[tuple[str, str | None], spb.NBirth | spb.DBirth] = {}
        self.bd_seq: dict[str, int] = {}
        self.next_seq: dict[str, int] = {}
        self.online_ts = 0
        self.seen: set[bytes] = set()
        # A persistent session: the broker queues what arrives while this host is away.
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"spb-host-{host_id}", clean_session=False
        )
        self.client.on_connect = self.on_connect
        self.client.on_message = self.on_message
        self.client.reconnect_delay_set(1, 1)

    def state(self, online: bool) -> None:
        ts = spb.get_current_timestamp()
        payload = spb.State(timestamp=ts, online=online).encode()
        self.client.publish(self.state_topic, payload, qos=1, retain=True)
        if online:
            self.online_ts = ts
            # Sparkplug 3.0: the will says offline with the same timestamp as the birth.
            self.client.will_set(self.state_topic, spb.State(timestamp=ts, online=False).encode(), 1, True)

    def rebirth(self, node: str) -> None:
        ncmd = spb.NCmd(
            timestamp=spb.get_current_timestamp(),
            metrics=(
                spb.Metric(
                    timestamp=None, name="Node Control/Rebirth", datatype=spb.DataType.BOOLEAN, value=True
                ),
            ),
        )
        topic = spb.Topic(group_id=self.group, message_type=spb.MessageType.NCMD, edge_node_id=node)
        self.client.publish(str(topic), ncmd.encode(include_dtypes=True), qos=0)

    def on_connect(self, client: mqtt.Client, u: Any, f: Any, rc: Any, p: Any) -> None:
        if not f.session_present:  # nothing queued for us: what we knew may be stale
            self.births.clear()
            self.next_seq.clear()
        client.subscribe(f"spBv1.0/{self.group}/#", qos=1)
        if self.online_ts:  # Sparkplug 3.0: a host re-announces itself on every connect
            self.state(True)
        emit(ev="ready", session_present=bool(f.session_present))

    def on_message(self, client: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        # QoS 1 is at-least-once to us too: after a broker restart it resends what we took but
        # had not acknowledged yet (DUP set). Such a copy is not a new message from the node.
        digest = hashlib.sha256(msg.topic.encode() + b"\0" + msg.payload).digest()
        if msg.dup and digest in self.seen:
            emit(ev="duplicate", topic=msg.topic)
            return
        self.seen.add(digest)
        try:
            self.handle(msg.topic, bytes(msg.payload))
        except Exception as exc:  # report, never die: the test asserts on errors
            emit(ev="error", topic=msg.topic, error=f"{type(exc).__name__}: {exc}")

    def check_seq(self, node: str, kind: str, seq: int) -> None:
        want = self.next_seq.get(node)
        if kind != "NBIRTH" and want is not None and seq != want:
            emit(ev="error", error=f"{kind} from {node}: seq {seq}, expected {want}")
            self.rebirth(node)
        self.next_seq[node] = (seq + 1) % 256

    def handle(self, topic_s: str, raw: bytes) -> None:
        topic = spb.Topic.from_str(topic_s)
        kind = str(topic.message_type)
        node, device = topic.edge_node_id or "", topic.device_id
        classes: dict[str, Any] = {
            "NBIRTH": spb.NBirth,
            "DBIRTH": spb.DBirth,
            "DDATA": spb.DData,
            "NDATA": spb.NData,
            "DDEATH": spb.DDeath,
            "NDEATH": spb.NDeath,
        }
        if kind not in classes:
            return  # our own NCMD
        pb = spb_pb.Payload.FromString(raw)  # also for property sets (quality, units)
        if pb.HasField("seq"):
            self.check_seq(node, kind, pb.seq)
        birth = self.births.get((node, device)) if kind in ("DDATA", "NDATA") else None
        if kind in ("DDATA", "NDATA") and birth is None:
            emit(ev="rebirth_requested", node=node, reason=f"{kind} for {device} before its birth")
            self.rebirth(node)
            return
        payload = classes[kind].decode(raw, birth=birth)
        metrics = []
        if isinstance(payload, spb.NDeath):
            decoded: tuple[spb.Metric, ...] = (payload.bd_seq_metric,)
        else:
            decoded = getattr(payload, "metrics", ())  # DDEATH has none
        for m, pm in zip(decoded, pb.metrics, strict=True):
            props = dict(zip(pm.properties.keys, pm.properties.values, strict=True))
            q = props.get("Quality")
            u = props.get("engUnit")
            metrics.append(
                {
                    "name": m.name,
                    "alias": pm.alias if pm.HasField("alias") else None,
                    "datatype": m.datatype.name,
                    "value": _plain(m.value),
                    "is_null": m.is_null,
                    "ts": m.timestamp,
                    "quality": q.int_value if q is not None else None,
                    "unit": u.string_value if u is not None else None,
                }
            )
        seq = getattr(payload, "seq", None)
        extra: dict[str, Any] = {}
        if kind == "NBIRTH":
            self.births = {k: v for k, v in self.births.items() if k[0] != node}
            self.births[(node, None)] = payload
            self.bd_seq[node] = next(m["value"] for m in metrics if m["name"] == "bdSeq")
        elif kind == "DBIRTH":
            self.births[(node, device)] = payload
        elif kind == "DDEATH":
            self.births.pop((node, device), None)
        elif kind == "NDEATH":
            bd = next(m["value"] for m in metrics if m["name"] == "bdSeq")
            extra["matches_birth"] = bd == self.bd_seq.get(node)
            if extra["matches_birth"]:  # a stale NDEATH (old bdSeq) must not kill the new session
                self.births = {k: v for k, v in self.births.items() if k[0] != node}
                self.next_seq.pop(node, None)
        emit(ev="msg", type=kind, node=node, device=device, seq=seq, metrics=metrics, **extra)


def main() -> None:
    host, port, group, host_id = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    h = Host(group, host_id)
    h.client.connect(host, port, keepalive=5)
    h.client.loop_start()
    for line in sys.stdin:
        cmd = line.split()
        if cmd == ["online"]:
            h.state(True)
        elif cmd == ["offline"]:
            h.state(False)
        elif cmd[:1] == ["rebirth"]:
            h.rebirth(cmd[1])
        emit(ev="done", cmd=line.strip())
    h.client.loop_stop()


if __name__ == "__main__":
    main()

"""The edge node's Sparkplug state, free of I/O: bdSeq, seq, aliases and which devices are born.

Every method returns the messages to publish, already numbered; the sink publishes them in
the order returned and in the same synchronous step, so ``seq`` on the wire is gap-free.
"""

from __future__ import annotations

__all__ = ["EdgeNode", "Message"]

from collections.abc import Mapping
from dataclasses import dataclass

from edge_agent.delivery.record import Record
from edge_agent.delivery.sparkplug import sparkplug_b_pb2 as pb
from edge_agent.delivery.sparkplug.metrics import MetricTable
from edge_agent.delivery.sparkplug.payload import (
    BDSEQ,
    REBIRTH,
    birth_metric,
    data_payload,
    death_payload,
    new_payload,
)
from edge_agent.delivery.sparkplug.topics import NodeTopics


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    kind: str  # NBIRTH, DBIRTH, DDATA, DDEATH, NDEATH


class EdgeNode:
    """One edge node (the gateway) whose devices are assets.

    ``bd_seq`` counts MQTT sessions (0..255) and ties NBIRTH to the NDEATH will; ``seq``
    numbers every other message of a session and wraps after 255.
    """

    def __init__(self, topics: NodeTopics, units: Mapping[tuple[str, str], str]) -> None:
        self.topics = topics
        self.metrics = MetricTable(units)
        self.bd_seq = -1
        self._seq = 0
        self.node_born = False
        self.born: set[str] = set()  # devices with a DBIRTH in the current birth epoch
        self.lost: set[str] = set()  # devices whose poller is down (DDEATH sent or due)
        self._last: dict[int, tuple[int, float | int, int]] = {}  # alias → (ts_ms, value, quality)

    # -- sessions ----------------------------------------------------------------------------
    def new_session(self) -> Message:
        """Next bdSeq; returns the NDEATH to register as the MQTT will of the new connection."""
        self.bd_seq = (self.bd_seq + 1) % 256
        self.node_born = False
        self.born.clear()
        return self.ndeath()

    def ndeath(self) -> Message:
        p = death_payload(None, self.bd_seq)
        return Message(self.topics.node("NDEATH"), p.SerializeToString(), "NDEATH")

    def end_session(self) -> None:
        self.node_born = False
        self.born.clear()

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = (self._seq + 1) % 256
        return seq

    # -- births ------------------------------------------------------------------------------
    def birth(self) -> list[Message]:
        """NBIRTH (seq 0, bdSeq, Node Control/Rebirth) and a DBIRTH for every live device."""
        self._seq = 0
        p = new_payload(self._next_seq())
        p.metrics.add(name=BDSEQ, datatype=pb.Int64, long_value=self.bd_seq)
        p.metrics.add(name=REBIRTH, datatype=pb.Boolean, boolean_value=False)
        out = [Message(self.topics.node("NBIRTH"), p.SerializeToString(), "NBIRTH")]
        self.node_born = True
        self.born.clear()
        for device in self.metrics.devices():
            if device not in self.lost:
                out.append(self.dbirth(device))
        return out

    def dbirth(self, device: str) -> Message:
        p = new_payload(self._next_seq())
        for d in self.metrics.device_metrics(device).values():
            birth_metric(p, d, self._last.get(d.alias), p.timestamp)
        self.born.add(device)
        return Message(self.topics.device("DBIRTH", device), p.SerializeToString(), "DBIRTH")

    # -- data and deaths ---------------------------------------------------------------------
    def data(self, rec: Record) -> list[Message]:
        """DDATA for one batch, preceded by a DBIRTH if the device or any metric is new.

        A late batch for a lost device is still delivered (at-least-once), bracketed by a
        DBIRTH and a fresh DDEATH so the host ends in the right state.
        """
        if not self.node_born:
            raise RuntimeError("EdgeNode.data() before birth()")
        device = rec.placement.asset
        out = []
        if self.metrics.learn(device, rec) or device not in self.born:
            out.append(self.dbirth(device))
        p = data_payload(rec, self.metrics.device_metrics(device), self._next_seq(), self._last)
        out.append(Message(self.topics.device("DDATA", device), p.SerializeToString(), "DDATA"))
        if device in self.lost:
            out.append(self._ddeath(device))
        return out

    def device_lost(self, device: str) -> list[Message]:
        self.lost.add(device)
        return [self._ddeath(device)] if self.node_born and device in self.born else []

    def device_restored(self, device: str) -> list[Message]:
        self.lost.discard(device)
        if self.node_born and device not in self.born and self.metrics.device_metrics(device):
            return [self.dbirth(device)]
        return []

    def _ddeath(self, device: str) -> Message:
        self.born.discard(device)
        p = death_payload(self._next_seq())
        return Message(self.topics.device("DDEATH", device), p.SerializeToString(), "DDEATH")

"""Sparkplug B 3.0 topic names: ``spBv1.0/<group>/<TYPE>/<node>[/<device>]`` and the host's STATE."""

from __future__ import annotations

__all__ = ["NAMESPACE", "NodeTopics", "state_topic"]

from dataclasses import dataclass

NAMESPACE = "spBv1.0"


def state_topic(host_id: str) -> str:
    """Where a primary host application announces itself (retained JSON, Sparkplug 3.0)."""
    return f"{NAMESPACE}/STATE/{host_id}"


@dataclass(frozen=True, slots=True)
class NodeTopics:
    """The topics of one edge node; devices are the agent's assets."""

    group_id: str
    node_id: str

    def node(self, kind: str) -> str:
        return f"{NAMESPACE}/{self.group_id}/{kind}/{self.node_id}"

    def device(self, kind: str, device: str) -> str:
        return f"{NAMESPACE}/{self.group_id}/{kind}/{self.node_id}/{device}"

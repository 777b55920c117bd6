"""Turn configured addresses into this session's NodeIds.

Runs on every connect because namespace indexes and browse-path targets belong to the
server's current configuration, not to ours. A tag that cannot be resolved does not stop
the device: it is reported (with the status that explains why) and reads as Bad.
"""

from __future__ import annotations

__all__ = ["Resolution", "resolve"]

from collections.abc import Sequence
from dataclasses import dataclass, field

from edge_agent.drivers.opcua._ua import ua
from edge_agent.drivers.opcua.addressing import (
    BrowsePathAddress,
    NodeAddress,
    UnresolvedNamespaceError,
    browse_path_request,
    plain_node_id,
)
from edge_agent.drivers.opcua.connection import Connection
from edge_agent.drivers.opcua.failures import status_text, translate
from edge_agent.drivers.opcua.polling import chunk


@dataclass(slots=True)
class Resolution:
    """NodeIds by tag index, and for the rest a status code and a plain-words reason."""

    node_ids: dict[int, ua.NodeId] = field(default_factory=dict)
    unresolved: dict[int, tuple[int, str]] = field(default_factory=dict)


async def resolve(connection: Connection, addresses: Sequence[NodeAddress | BrowsePathAddress]) -> Resolution:
    out = Resolution()
    namespaces = connection.namespaces
    paths: list[tuple[int, ua.BrowsePath]] = []
    for i, address in enumerate(addresses):
        try:
            if isinstance(address, NodeAddress):
                out.node_ids[i] = address.resolve(namespaces)
            else:
                paths.append((i, browse_path_request(address, namespaces)))
        except UnresolvedNamespaceError as exc:
            known = ", ".join(sorted(namespaces)) or "none"
            out.unresolved[i] = (
                ua.StatusCodes.BadNodeIdUnknown,
                f"namespace {exc.uri!r} is not on the server (it has: {known}); fix the URI in the config",
            )
    if not paths:
        return out
    client = connection.client
    for part in chunk(paths, connection.limits.max_nodes_per_translate):
        try:
            results = await client.uaclient.translate_browsepaths_to_nodeids([request for _, request in part])
        except Exception as exc:
            raise translate(connection.config.name, exc, f"resolving {len(part)} browse path(s)") from exc
        for (i, _), result in zip(part, results, strict=False):
            code = result.StatusCode.value if result.StatusCode is not None else 0
            if code >> 30 or not result.Targets:
                code = code or ua.StatusCodes.BadNoMatch
                out.unresolved[i] = (
                    code,
                    f"browse path {addresses[i]} was not found ({status_text(code)}); "
                    "check it with 'edge-agent opcua browse'",
                )
            else:
                out.node_ids[i] = plain_node_id(result.Targets[0].TargetId)
    return out

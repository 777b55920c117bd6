"""`edge-agent opcua browse`: show a server's Objects tree and write a starting config from it.

Connects exactly as the driver does (same security, trust list and auth), walks
hierarchical references level by level with batched Browse and Read calls, and names
every node by namespace URI so the generated config survives index changes.
"""

from __future__ import annotations

__all__ = ["BrowsedNode", "browse", "browse_command", "config_yaml", "tree_text"]

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from edge_agent.drivers.opcua._ua import ua
from edge_agent.drivers.opcua.config import OpcUaAuth, OpcUaDeviceConfig, OpcUaSecurity
from edge_agent.drivers.opcua.connection import Connection, open_connection
from edge_agent.drivers.opcua.failures import status_of, status_text, translate
from edge_agent.drivers.opcua.polling import chunk

_NUMERIC = {
    "Boolean",
    "SByte",
    "Byte",
    "Int16",
    "UInt16",
    "Int32",
    "UInt32",
    "Int64",
    "UInt64",
    "Float",
    "Double",
}
_TAG_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class BrowsedNode:
    """One Object or Variable below Objects, named by namespace URI."""

    node_id: str
    browse_name: str
    path: str
    node_class: str
    data_type: str | None = None
    value: Any = None
    writable: bool = False
    status: str | None = None
    children: list[BrowsedNode] = field(default_factory=list)

    @property
    def is_numeric(self) -> bool:
        scalar = not isinstance(self.value, list | tuple | bytes)
        return self.node_class == "Variable" and self.data_type in _NUMERIC and scalar

    def walk(self) -> Iterator[BrowsedNode]:
        yield self
        for child in self.children:
            yield from child.walk()


def _uri_form(nid: Any, namespaces: list[str]) -> str:
    plain = ua.NodeId(nid.Identifier, 0, nid.NodeIdType).to_string()
    index = nid.NamespaceIndex
    if index == 0:
        return str(plain)
    uri = namespaces[index] if index < len(namespaces) else None
    return f"nsu={uri};{plain}" if uri else str(nid.to_string())


async def _children(conn: Connection, parents: list[Any]) -> list[list[Any]]:
    """Forward hierarchical references to Objects and Variables, for many parents at once."""
    client = conn.client
    out: list[list[Any]] = []
    for part in chunk(parents, conn.limits.max_nodes_per_browse):
        params = ua.BrowseParameters()
        params.RequestedMaxReferencesPerNode = 0
        for nid in part:
            desc = ua.BrowseDescription()
            desc.NodeId = nid
            desc.BrowseDirection = ua.BrowseDirection.Forward
            desc.ReferenceTypeId = ua.NodeId(ua.ObjectIds.HierarchicalReferences)
            desc.IncludeSubtypes = True
            desc.NodeClassMask = ua.NodeClass.Object | ua.NodeClass.Variable
            desc.ResultMask = ua.BrowseResultMask.All
            params.NodesToBrowse.append(desc)
        for result in await client.uaclient.browse(params):
            refs = list(result.References)
            point = result.ContinuationPoint
            while point:
                more = ua.BrowseNextParameters(ReleaseContinuationPoints=False, ContinuationPoints=[point])
                extra = (await client.uaclient.browse_next(more))[0]
                refs += extra.References
                point = extra.ContinuationPoint
            out.append(refs)
    return out


async def _read(conn: Connection, ids: list[Any], attr: Any) -> list[Any]:
    out: list[Any] = []
    for part in chunk(ids, conn.limits.max_nodes_per_read):
        out += await conn.client.uaclient.read_attributes(list(part), attr)
    return out


async def _fill_variables(conn: Connection, nodes: list[tuple[BrowsedNode, Any]]) -> None:
    if not nodes:
        return
    ids = [nid for _, nid in nodes]
    types = await _read(conn, ids, ua.AttributeIds.DataType)
    values = await _read(conn, ids, ua.AttributeIds.Value)
    access = await _read(conn, ids, ua.AttributeIds.UserAccessLevel)
    for (node, _), t, v, a in zip(nodes, types, values, access, strict=True):
        dtype = t.Value.Value if t.Value is not None else None
        if dtype is not None and dtype.NamespaceIndex == 0:
            node.data_type = ua.ObjectIdNames.get(dtype.Identifier, str(dtype.to_string()))
        elif dtype is not None:
            node.data_type = str(dtype.to_string())
        node.value = v.Value.Value if v.Value is not None else None
        code = status_of(v)
        if code:
            node.status = status_text(code)
        level = a.Value.Value if a.Value is not None and isinstance(a.Value.Value, int) else 0
        node.writable = bool(level & ua.AccessLevel.CurrentWrite.mask)


async def browse(
    endpoint: str,
    *,
    depth: int = 6,
    security: OpcUaSecurity | None = None,
    auth: OpcUaAuth | None = None,
    request_timeout: float = 5.0,
) -> BrowsedNode:
    """The Objects folder and everything below it up to ``depth`` levels (standard nodes skipped)."""
    config = OpcUaDeviceConfig(
        name="browse",
        driver="opcua",
        endpoint=endpoint,
        timeout=request_timeout,
        security=security or OpcUaSecurity(),
        auth=auth or OpcUaAuth(),
    )
    conn = await open_connection(config)
    try:
        namespaces = sorted(conn.namespaces, key=conn.namespaces.__getitem__)
        root = BrowsedNode("i=85", "Objects", "", "Object")
        level: list[tuple[BrowsedNode, Any]] = [(root, ua.NodeId(ua.ObjectIds.ObjectsFolder))]
        for _ in range(depth):
            if not level:
                break
            try:
                refs = await _children(conn, [nid for _, nid in level])
            except Exception as exc:
                raise translate(config.name, exc, "browsing") from exc
            nxt: list[tuple[BrowsedNode, Any]] = []
            variables: list[tuple[BrowsedNode, Any]] = []
            for (parent, _), children in zip(level, refs, strict=True):
                for ref in children:
                    nid = ua.NodeId(ref.NodeId.Identifier, ref.NodeId.NamespaceIndex, ref.NodeId.NodeIdType)
                    if nid.NamespaceIndex == 0:
                        continue  # the standard Server object and friends
                    qn = ref.BrowseName
                    uri = namespaces[qn.NamespaceIndex] if qn.NamespaceIndex < len(namespaces) else ""
                    segment = f"{{{uri}}}{qn.Name}"
                    child = BrowsedNode(
                        _uri_form(nid, namespaces),
                        str(qn.Name),
                        f"{parent.path}/{segment}" if parent.path else segment,
                        ref.NodeClass.name,
                    )
                    parent.children.append(child)
                    nxt.append((child, nid))
                    if child.node_class == "Variable":
                        variables.append((child, nid))
            try:
                await _fill_variables(conn, variables)
            except Exception as exc:
                raise translate(config.name, exc, "reading variable attributes") from exc
            level = nxt
        return root
    finally:
        await conn.close()


def tree_text(root: BrowsedNode) -> str:
    """A box-drawing tree: name, type = value and the NodeId to put in a config."""
    lines = [root.browse_name]

    def add(node: BrowsedNode, prefix: str, last: bool) -> None:
        branch = "└── " if last else "├── "
        detail = ""
        if node.node_class == "Variable":
            value = repr(node.value)
            value = value if len(value) <= 40 else value[:37] + "..."
            rw = " rw" if node.writable else ""
            status = f" ({node.status})" if node.status else ""
            detail = f"  {node.data_type or '?'} = {value}{status}{rw}"
        lines.append(f"{prefix}{branch}{node.browse_name}{detail}  [{node.node_id}]")
        for i, child in enumerate(node.children):
            add(child, prefix + ("    " if last else "│   "), i == len(node.children) - 1)

    for i, child in enumerate(root.children):
        add(child, "", i == len(root.children) - 1)
    return "\n".join(lines)


def _tag_name(raw: str) -> str:
    return _TAG_CHARS.sub("_", raw).strip("_") or "tag"


def config_yaml(
    root: BrowsedNode,
    endpoint: str,
    *,
    device: str | None = None,
    security: OpcUaSecurity | None = None,
    auth: OpcUaAuth | None = None,
) -> str:
    """A config that validates as is: one asset per object holding numeric variables, generic roles."""
    host = urlparse(endpoint)
    device = device or _tag_name(f"opcua-{host.hostname}-{host.port or 4840}")
    assets: dict[str, dict[str, Any]] = {}
    tags: list[dict[str, Any]] = []
    used: set[str] = set()

    def visit(node: BrowsedNode, parent: BrowsedNode) -> None:
        for child in node.children:
            visit(child, node)
        if not node.is_numeric:
            return
        asset = _tag_name(parent.browse_name if parent.browse_name != "Objects" else device)
        assets.setdefault(
            asset,
            {"id": asset, "site": "site1", "area": "area1", "line": "line1", "rated_power_kw": 1.0},
        )
        name = _tag_name(node.browse_name)
        if name in used:
            name = _tag_name(f"{parent.browse_name}.{node.browse_name}")
        base, n = name, 2
        while name in used:
            name, n = f"{base}_{n}", n + 1
        used.add(name)
        tags.append({"name": name, "asset": asset, "role": "generic", "unit": "1", "node_id": node.node_id})

    for child in root.children:
        visit(child, root)
    dev: dict[str, Any] = {"name": device, "driver": "opcua", "endpoint": endpoint, "poll_interval": "1s"}
    if security is not None and security.mode != "None":
        dev["security"] = security.model_dump(mode="json")
    if auth is not None and auth.type == "username":
        dev["auth"] = {"type": "username", "username": auth.username, "password": "${OPCUA_PASSWORD}"}
    elif auth is not None and auth.type == "certificate":
        dev["auth"] = {
            "type": "certificate",
            "cert_file": str(auth.cert_file),
            "key_file": str(auth.key_file),
        }
    dev["tags"] = tags
    header = (
        f"# Starting config written by 'edge-agent opcua browse {endpoint}'.\n"
        "# Edit before use: set each asset's site/area/line and rated_power_kw, give tags their\n"
        "# role and unit (power/kW, energy_counter/kWh, ...), and delete tags you do not need.\n"
    )
    return header + yaml.safe_dump(
        {"assets": list(assets.values()), "devices": [dev]},
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=None,
        width=200,
    )


def browse_command(endpoint: str, *, depth: int = 6, write_config: Path | None = None) -> int:
    """CLI entry: print the tree; with ``write_config``, also write a starting config there."""
    root = asyncio.run(browse(endpoint, depth=depth))
    print(tree_text(root))
    if write_config is not None:
        text = config_yaml(root, endpoint)
        Path(write_config).write_text(text, encoding="utf-8")
        count = sum(1 for n in root.walk() if n.is_numeric)
        print(
            f"\nwrote {write_config}: {count} numeric tag(s); "
            f"check it with 'edge-agent validate {write_config}'"
        )
    return 0

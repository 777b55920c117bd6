"""Node addresses as configured, resolved against the live server once per session.

Namespace *indexes* may change whenever a server restarts or its configuration changes, so
the config names namespaces by URI (``nsu=urn:plant;s=cnc1.power_kw``) and browse-path
segments as ``{urn:plant}cnc1``; only :meth:`NodeAddress.resolve` and
:func:`browse_path_request` turn them into indexes, with the namespace array of the
session at hand.
"""

from __future__ import annotations

__all__ = [
    "BrowsePathAddress",
    "NodeAddress",
    "UnresolvedNamespaceError",
    "browse_path_request",
    "parse_browse_path",
    "parse_node_id",
    "plain_node_id",
]

import re
from collections.abc import Mapping
from dataclasses import dataclass

from edge_agent.drivers.opcua._ua import ua

_NUMERIC = (ua.NodeIdType.TwoByte, ua.NodeIdType.FourByte, ua.NodeIdType.Numeric)
_SEGMENT = re.compile(r"^(?:\{(?P<uri>[^{}]+)\})?(?P<name>[^{}/]+)$")
#: HierarchicalReferences with subtypes: Organizes, HasComponent, HasProperty, ...
_HIERARCHICAL = ua.NodeId(ua.ObjectIds.HierarchicalReferences)
_OBJECTS = ua.NodeId(ua.ObjectIds.ObjectsFolder)


class UnresolvedNamespaceError(LookupError):
    """The server does not (or no longer) publish a namespace URI the config names."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        super().__init__(f"namespace {uri!r} is not in the server's NamespaceArray")


def plain_node_id(node_id: ua.NodeId) -> ua.NodeId:
    """A plain NodeId (no URI, no server index), numeric types normalised for equality."""
    kind = ua.NodeIdType.Numeric if node_id.NodeIdType in _NUMERIC else node_id.NodeIdType
    return ua.NodeId(node_id.Identifier, node_id.NamespaceIndex, kind)


@dataclass(frozen=True, slots=True)
class NodeAddress:
    """A NodeId whose namespace is either a URI (resolved per session) or a fixed index."""

    identifier: ua.NodeId
    namespace_uri: str | None

    def resolve(self, namespaces: Mapping[str, int]) -> ua.NodeId:
        if self.namespace_uri is None:
            return self.identifier
        try:
            index = namespaces[self.namespace_uri]
        except KeyError:
            raise UnresolvedNamespaceError(self.namespace_uri) from None
        return ua.NodeId(self.identifier.Identifier, index, self.identifier.NodeIdType)

    def __str__(self) -> str:
        if self.namespace_uri is None:
            return str(self.identifier.to_string())
        plain = ua.NodeId(self.identifier.Identifier, 0, self.identifier.NodeIdType).to_string()
        return f"nsu={self.namespace_uri};{plain}"


@dataclass(frozen=True, slots=True)
class BrowsePathAddress:
    """A path of BrowseNames below the Objects folder, each qualified by namespace URI."""

    segments: tuple[tuple[str, str], ...]

    def __str__(self) -> str:
        return "/".join(f"{{{uri}}}{name}" for uri, name in self.segments)


def parse_node_id(text: str) -> NodeAddress:
    """Parse ``nsu=URI;s=...``, ``ns=2;i=5`` or ``i=2258``; ValueError says what is expected."""
    try:
        parsed = ua.NodeId.from_string(text.strip())
    except (ValueError, ua.UaError):
        raise ValueError(
            f"{text!r} is not a NodeId; expected e.g. 'nsu=urn:plant;s=cnc1.power_kw' "
            "(namespace by URI, preferred) or 'ns=2;i=1001'"
        ) from None
    uri = getattr(parsed, "NamespaceUri", None)
    if getattr(parsed, "ServerIndex", None):
        raise ValueError(f"{text!r}: NodeIds on other servers (svr=...) are not supported")
    plain = plain_node_id(parsed)
    if uri:
        plain = ua.NodeId(plain.Identifier, 0, plain.NodeIdType)
    return NodeAddress(plain, uri or None)


def parse_browse_path(text: str, default_namespace: str | None) -> BrowsePathAddress:
    """Parse ``Plant/{urn:plant}cnc1/power_kw``: segments below Objects, '/'-separated.

    A segment without ``{uri}`` takes the device's ``namespace``; ValueError if there is none.
    A leading ``Objects`` segment is accepted and dropped, since paths start there anyway.
    """
    parts = text.strip().strip("/").split("/")
    if len(parts) > 1 and parts[0] in ("Objects", "0:Objects"):
        parts = parts[1:]
    if not parts or any(not p.strip() for p in parts):
        raise ValueError(f"browse path {text!r} has an empty segment; expected 'Plant/cnc1/power_kw'")
    segments: list[tuple[str, str]] = []
    for part in parts:
        m = _SEGMENT.match(part.strip())
        if not m:
            raise ValueError(
                f"browse path segment {part!r} is malformed; write 'Name' or '{{namespace-uri}}Name'"
            )
        uri = m.group("uri") or default_namespace
        if uri is None:
            raise ValueError(
                f"browse path segment {part!r} names no namespace: write '{{urn:...}}{part}' "
                "or set the device's 'namespace' key to the namespace URI of its nodes"
            )
        segments.append((uri, m.group("name")))
    return BrowsePathAddress(tuple(segments))


def browse_path_request(path: BrowsePathAddress, namespaces: Mapping[str, int]) -> ua.BrowsePath:
    """The TranslateBrowsePathsToNodeIds item for ``path`` with this session's indexes."""
    elements = []
    for uri, name in path.segments:
        if uri not in namespaces:
            raise UnresolvedNamespaceError(uri)
        element = ua.RelativePathElement()
        element.ReferenceTypeId = _HIERARCHICAL
        element.IsInverse = False
        element.IncludeSubtypes = True
        element.TargetName = ua.QualifiedName(name, namespaces[uri])
        elements.append(element)
    request = ua.BrowsePath()
    request.StartingNode = _OBJECTS
    request.RelativePath = ua.RelativePath(Elements=elements)
    return request

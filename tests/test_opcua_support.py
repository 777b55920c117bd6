"""Real asyncua servers for the OPC UA tests (127.0.0.1, free ports). Holds helpers, no tests.

Named ``test_opcua_*`` so it stays with the OPC UA test files. The only fakes here inject
what asyncua's server cannot do on demand but real servers do: enforcing
MaxNodesPerRead / MaxMonitoredItemsPerCall (asyncua advertises 10000 and never refuses),
and a TCP proxy that can silently stop forwarding (a half-open link) to exercise the
keep-alive watchdog.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncua.common.callback import CallbackType, ServerItemCallback
from asyncua.common.node import Node
from asyncua.common.utils import ServiceError
from asyncua.crypto import cert_gen
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.server import Server
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from edge_agent.drivers.opcua._ua import ua

NS = "urn:edge-agent:test:plant"
EXTRA_NAMESPACES = ("urn:edge-agent:test:first", "urn:edge-agent:test:second")

# Nodes under Objects/Plant/cnc1, by name: (variant type, initial value).
CNC_NODES: dict[str, tuple[Any, Any]] = {
    "power_kw": (ua.VariantType.Double, 12.5),
    "energy_wh": (ua.VariantType.UInt32, 4_000_000_000),
    "parts": (ua.VariantType.UInt32, 17),
    "state": (ua.VariantType.UInt16, 2),
    "running": (ua.VariantType.Boolean, True),
    "setpoint_kw": (ua.VariantType.Double, 5.0),
    "int_setpoint": (ua.VariantType.Int16, 3),
    "temperature": (ua.VariantType.Float, 21.5),
    "sensor_bad": (ua.VariantType.Double, 99.0),
    "sensor_uncertain": (ua.VariantType.Double, 7.0),
    "label": (ua.VariantType.String, "cnc one"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def node_id(name: str) -> str:
    """The config form of a cnc1 node: namespace by URI, never by index."""
    return f"nsu={NS};s=cnc1.{name}"


@dataclass
class Limits:
    """Operation limits the server advertises and/or enforces, and what clients asked for."""

    max_nodes_per_read: int | None = None
    max_monitored_items_per_call: int | None = None
    advertise: bool = True
    read_sizes: list[int] = field(default_factory=list)
    item_call_sizes: list[int] = field(default_factory=list)


@dataclass
class Security:
    """Server side of a secured endpoint: its own key pair, users, and clients it trusts."""

    cert_path: Path
    key_path: Path
    users: dict[str, str] = field(default_factory=dict)
    trusted_client_dir: Path | None = None
    user_cert_ders: list[bytes] = field(default_factory=list)


@dataclass
class PlantServer:
    server: Server
    port: int
    ns: int
    cnc: dict[str, Node]
    bulk: list[Node]
    limits: Limits | None = None

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}"


def make_server_certificate(directory: Path, uri: str = "urn:edge-agent:test:server") -> Security:
    """A self-signed server certificate like the ones PLC servers generate."""
    directory.mkdir(parents=True, exist_ok=True)
    key = cert_gen.generate_private_key()
    cert = cert_gen.generate_self_signed_app_certificate(
        key,
        uri,
        {},
        [x509.UniformResourceIdentifier(uri), x509.DNSName("127.0.0.1")],
        extended=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    cert_path, key_path = directory / "server_cert.der", directory / "server_key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    key_path.write_bytes(cert_gen.dump_private_key_as_pem(key))
    return Security(cert_path=cert_path, key_path=key_path)


class _Users:
    def __init__(self, security: Security) -> None:
        self.security = security

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        if username is not None:
            ok = self.security.users.get(username) == password
            return User(role=UserRole.User, name=username) if ok else None
        if certificate is not None and certificate in self.security.user_cert_ders:
            return User(role=UserRole.User, name="x509")
        return None


def _trust_validator(directory: Path) -> Callable[[x509.Certificate, Any], Any]:
    async def validate(cert: x509.Certificate, app: Any) -> None:
        der = cert.public_bytes(serialization.Encoding.DER)
        trusted = {p.read_bytes() for p in sorted(directory.iterdir()) if p.suffix == ".der"}  # noqa: ASYNC240
        if der not in trusted:
            raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        if app.ApplicationUri not in san.get_values_for_type(x509.UniformResourceIdentifier):
            raise ServiceError(ua.StatusCodes.BadCertificateUriInvalid)  # Part 4: URI must match

    return validate


def _enforce(server: Server, limits: Limits) -> None:
    """Refuse over-limit requests with BadTooManyOperations, as real servers do."""

    async def pre_read(event: ServerItemCallback, _dispatcher: Any) -> None:
        if not event.is_external:
            return
        n = len(event.request_params.NodesToRead)
        limits.read_sizes.append(n)
        if limits.max_nodes_per_read and n > limits.max_nodes_per_read:
            raise ServiceError(ua.StatusCodes.BadTooManyOperations)

    server.subscribe_server_callback(CallbackType.PreRead, pre_read)
    service = server.iserver.subscription_service
    original = service.create_monitored_items

    async def create_monitored_items(params: ua.CreateMonitoredItemsParameters) -> Any:
        n = len(params.ItemsToCreate)
        limits.item_call_sizes.append(n)
        if limits.max_monitored_items_per_call and n > limits.max_monitored_items_per_call:
            raise ServiceError(ua.StatusCodes.BadTooManyOperations)
        return await original(params)

    service.create_monitored_items = create_monitored_items  # type: ignore[method-assign]


async def advertise(server: Server, limits: Limits) -> None:
    ids = ua.ObjectIds
    for oid, value in (
        (ids.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead, limits.max_nodes_per_read),
        (
            ids.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall,
            limits.max_monitored_items_per_call,
        ),
    ):
        advertised = value if (limits.advertise and value) else 0
        await server.get_node(ua.NodeId(oid)).write_value(ua.Variant(advertised, ua.VariantType.UInt32))


async def start_plant_server(
    port: int | None = None,
    *,
    bulk: int = 0,
    extra_namespaces: tuple[str, ...] = EXTRA_NAMESPACES,
    limits: Limits | None = None,
    security: Security | None = None,
    first_value: float = 0.0,
) -> PlantServer:
    """Start a server with Objects/Plant/cnc1/* (see CNC_NODES) and ``bulk`` Doubles under Bulk."""
    port = port or free_port()
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}")
    server.set_server_name("edge-agent test plant")
    if security is not None:
        await server.load_certificate(str(security.cert_path))
        await server.load_private_key(str(security.key_path))
        server.set_security_policy(
            [
                ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
                ua.SecurityPolicyType.Basic256Sha256_Sign,
                ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
                ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
            ]
        )
        server.iserver.user_manager = _Users(security)  # type: ignore[assignment]
        server.set_identity_tokens([ua.UserNameIdentityToken, ua.X509IdentityToken])
        if security.trusted_client_dir is not None:
            server.set_certificate_validator(_trust_validator(security.trusted_client_dir))
    else:
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    for uri in extra_namespaces:  # registered first, so ours gets a higher index
        await server.register_namespace(uri)
    ns = await server.register_namespace(NS)
    plant = await server.nodes.objects.add_object(ua.NodeId("Plant", ns), ua.QualifiedName("Plant", ns))
    cnc1 = await plant.add_object(ua.NodeId("cnc1", ns), ua.QualifiedName("cnc1", ns))
    cnc: dict[str, Node] = {}
    for name, (vtype, value) in CNC_NODES.items():
        node = await cnc1.add_variable(
            ua.NodeId(f"cnc1.{name}", ns), ua.QualifiedName(name, ns), ua.Variant(value, vtype)
        )
        await node.set_writable()
        cnc[name] = node
    await set_status(cnc["sensor_bad"], ua.StatusCodes.BadSensorFailure)
    await set_status(cnc["sensor_uncertain"], ua.StatusCodes.UncertainLastUsableValue)
    bulk_nodes: list[Node] = []
    if bulk:
        folder = await server.nodes.objects.add_object(ua.NodeId("Bulk", ns), ua.QualifiedName("Bulk", ns))
        for i in range(bulk):
            bulk_nodes.append(
                await folder.add_variable(
                    ua.NodeId(f"bulk.{i}", ns), ua.QualifiedName(f"v{i}", ns), first_value + float(i)
                )
            )
    if limits is not None:
        _enforce(server, limits)
    await server.start()
    if limits is not None:
        await advertise(server, limits)
    return PlantServer(server, port, ns, cnc, bulk_nodes, limits)


async def set_status(node: Node, code: int) -> None:
    """Keep the value but give it a non-Good status, as a server does for a failed sensor."""
    value = await node.read_data_value()
    assert value.Value is not None
    await node.write_value(ua.DataValue(value.Value, StatusCode=ua.StatusCode(code)))


@contextlib.asynccontextmanager
async def plant_server(**kwargs: Any) -> AsyncIterator[PlantServer]:
    plant = await start_plant_server(**kwargs)
    try:
        yield plant
    finally:
        await plant.server.stop()


class FreezableProxy:
    """TCP relay to a server that can stop forwarding without closing: a half-open link."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.frozen = False
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                while data := await src.read(65536):
                    if not self.frozen:
                        dst.write(data)
                        await dst.drain()
            with contextlib.suppress(Exception):
                dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    async def stop(self) -> None:
        for w in self._writers:
            with contextlib.suppress(Exception):
                w.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

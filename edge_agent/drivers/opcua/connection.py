"""Open one OPC UA session the way the config asks, or fail with a message that says what to do.

Covers endpoint selection, the server trust check (before any secret leaves the machine),
the client certificate, user authentication, and what the session needs to know about the
server afterwards: its namespace array and operation limits. asyncua's own reconnect is
off: the runtime owns backoff and re-enters the driver, which then builds a fresh session.
"""

from __future__ import annotations

__all__ = ["Connection", "OperationLimits", "open_connection"]

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncua.client.client import Client
from asyncua.client.ua_client import UaClientState
from asyncua.crypto import security_policies

from edge_agent.drivers.opcua._ua import ua
from edge_agent.drivers.opcua.certs import CertificateError, TrustList, describe, ensure_certificate
from edge_agent.drivers.opcua.config import OpcUaDeviceConfig
from edge_agent.drivers.opcua.failures import as_connect_error, status_of, status_text, translate
from edge_agent.errors import DeviceConnectError, DriverError

log = logging.getLogger("edge_agent.drivers.opcua")

_POLICIES: dict[str, type[security_policies.SecurityPolicy]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256_Sha256_RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
}
_MODES = {
    "None": ua.MessageSecurityMode.None_,
    "Sign": ua.MessageSecurityMode.Sign,
    "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt,
}
_LIMITS = ua.ObjectIds
_LIMIT_NODES = (
    _LIMITS.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead,
    _LIMITS.Server_ServerCapabilities_OperationLimits_MaxNodesPerWrite,
    _LIMITS.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall,
    _LIMITS.Server_ServerCapabilities_OperationLimits_MaxNodesPerTranslateBrowsePathsToNodeIds,
    _LIMITS.Server_ServerCapabilities_OperationLimits_MaxNodesPerBrowse,
)
_AUTH_REFUSED = {
    ua.StatusCodes.BadUserAccessDenied,
    ua.StatusCodes.BadIdentityTokenInvalid,
    ua.StatusCodes.BadIdentityTokenRejected,
    ua.StatusCodes.BadUserSignatureInvalid,
}
_CERT_REFUSED = {
    ua.StatusCodes.BadCertificateUntrusted,
    ua.StatusCodes.BadSecurityChecksFailed,
    ua.StatusCodes.BadCertificateInvalid,
    ua.StatusCodes.BadCertificateUriInvalid,
    ua.StatusCodes.BadCertificateTimeInvalid,
    ua.StatusCodes.BadCertificateRevoked,
    ua.StatusCodes.BadCertificateUseNotAllowed,
}


class _LinkLossEcho(logging.Filter):
    """Drop asyncua's own reports of a link that is already gone.

    A dropped connection makes asyncua log from several places (the publish loop at ERROR
    with a traceback, teardown of the closed channel and session at WARNING). The runtime
    already logs the outage once per device, so these echoes would only bury that line.
    """

    _TEARDOWN = ("was called but connection is closed", "close_session but connection wasn't established")

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if any(t in message for t in self._TEARDOWN):
            return False
        if message.startswith("Publish iteration crashed") and record.exc_info:
            return not isinstance(record.exc_info[1], ConnectionError | OSError | TimeoutError)
        return True


for _name in ("asyncua.client.ua_session.UaSession", "asyncua.client.ua_client.UaClient"):
    logging.getLogger(_name).addFilter(_LinkLossEcho())


@dataclass(frozen=True, slots=True)
class OperationLimits:
    """Server/ServerCapabilities/OperationLimits; 0 means the server sets no limit."""

    max_nodes_per_read: int = 0
    max_nodes_per_write: int = 0
    max_monitored_items_per_call: int = 0
    max_nodes_per_translate: int = 0
    max_nodes_per_browse: int = 0

    @staticmethod
    def effective(server: int, cap: int | None) -> int:
        """Smallest positive of the server's limit and the config's cap; 0 if neither is set."""
        values = [v for v in (server, cap or 0) if v > 0]
        return min(values) if values else 0


class Connection:
    """A live session plus the facts about the server it was opened against."""

    def __init__(self, client: Client, config: OpcUaDeviceConfig) -> None:
        self.client = client
        self.config = config
        self.namespaces: dict[str, int] = {}
        self.limits = OperationLimits()
        self.lost_reason: str | None = None
        client.connection_lost_callback = self._on_lost

    async def _on_lost(self, exc: Exception) -> None:
        self.lost_reason = f"connection to {self.config.endpoint} lost ({type(exc).__name__}: {exc})"

    def check_alive(self) -> None:
        """Raise DeviceConnectError once the keep-alive watchdog or the socket says the link is gone."""
        if self.lost_reason is None and self.client.state is not UaClientState.CONNECTED:
            self.lost_reason = f"connection to {self.config.endpoint} lost (state {self.client.state.value})"
        if self.lost_reason is not None:
            raise DeviceConnectError(self.config.name, self.lost_reason)

    async def load_server_facts(self) -> None:
        """Namespace array and operation limits, in one Read."""
        ids = [ua.NodeId(ua.ObjectIds.Server_NamespaceArray), *(ua.NodeId(i) for i in _LIMIT_NODES)]
        read = self.client.uaclient.read_attributes
        try:
            try:
                dvs = await read(ids, ua.AttributeIds.Value)
            except ua.UaStatusCodeError as exc:
                if exc.code != ua.StatusCodes.BadTooManyOperations:
                    raise
                dvs = [(await read([i], ua.AttributeIds.Value))[0] for i in ids]  # a very small limit
        except Exception as exc:
            raise translate(self.config.name, exc, "reading the namespace array") from exc
        ns = dvs[0]
        if status_of(ns) >> 30 or ns.Value is None or not isinstance(ns.Value.Value, list):
            raise DeviceConnectError(
                self.config.name, f"the server's NamespaceArray is unreadable ({status_text(status_of(ns))})"
            )
        self.namespaces = {str(uri): i for i, uri in enumerate(ns.Value.Value)}
        limits = []
        for dv in dvs[1:]:
            value = dv.Value.Value if dv.Value is not None and status_of(dv) >> 30 == 0 else 0
            limits.append(value if isinstance(value, int) and value > 0 else 0)
        cfg = self.config
        self.limits = OperationLimits(
            max_nodes_per_read=OperationLimits.effective(limits[0], cfg.max_nodes_per_read),
            max_nodes_per_write=limits[1],
            max_monitored_items_per_call=OperationLimits.effective(
                limits[2], cfg.max_monitored_items_per_call
            ),
            max_nodes_per_translate=limits[3],
            max_nodes_per_browse=limits[4],
        )

    async def close(self) -> None:
        """Close session and socket; never raises, bounded by the device timeout."""
        client = self.client
        client.connection_lost_callback = None
        protocol = client.uaclient.protocol
        dead = self.lost_reason is not None or client.state is not UaClientState.CONNECTED
        if dead and protocol is not None and protocol.transport is not None:
            # A dead link cannot carry CloseSession: drop the socket now (abort, since a
            # half-open link may never drain) and let asyncua tear down without waiting.
            protocol.transport.abort()
            await asyncio.sleep(0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), self.config.timeout)
        with contextlib.suppress(Exception):
            client.disconnect_socket()


def _first_certificate(der: bytes) -> bytes:
    """Servers may send their certificate followed by its chain; keep the leading DER item."""
    if len(der) < 2 or der[1] < 0x80:
        return der[: 2 + (der[1] if len(der) > 1 else 0)]
    n = der[1] & 0x7F
    length = int.from_bytes(der[2 : 2 + n], "big")
    return der[: 2 + n + length]


async def open_connection(config: OpcUaDeviceConfig) -> Connection:
    """Connect, secure and authenticate; on any failure the half-open client is torn down."""
    client = Client(config.endpoint, timeout=config.timeout, watchdog_intervall=config.keepalive)
    client.application_uri = config.security.application_uri
    client.name = client.description = f"edge-agent {config.name}"
    client.product_uri = "urn:edge-agent"
    client.session_timeout = int(config.session_timeout * 1000)
    conn = Connection(client, config)
    try:
        endpoint = _pick_endpoint(config, await client.connect_and_get_server_endpoints())
        if config.security.mode != "None":
            await _secure(client, config, endpoint)
        await _authenticate(client, config)
        try:
            await client.connect()
        except ua.UaStatusCodeError as exc:
            raise _refused(config, exc) from exc
        await conn.load_server_facts()
    except BaseException as exc:
        await conn.close()
        if not isinstance(exc, Exception):
            raise
        error = (
            exc
            if isinstance(exc, DriverError)
            else translate(config.name, exc, f"connecting to {config.endpoint}")
        )
        raise as_connect_error(error) from exc
    return conn


def _pick_endpoint(config: OpcUaDeviceConfig, endpoints: list[Any]) -> Any:
    """The server endpoint with the configured mode and policy, or an error listing what it offers."""
    sec = config.security
    mode = _MODES[sec.mode]
    uri = _POLICIES[sec.policy].URI if sec.mode != "None" else security_policies.SecurityPolicyNone.URI
    for ep in endpoints:
        if ep.SecurityMode == mode and ep.SecurityPolicyUri == uri:
            return ep
    offered = sorted(
        {f"{e.SecurityMode.name.rstrip('_')}/{e.SecurityPolicyUri.rsplit('#', 1)[-1]}" for e in endpoints}
    )
    wanted = sec.mode if sec.mode == "None" else f"{sec.mode}/{sec.policy}"
    raise DeviceConnectError(
        config.name,
        f"{config.endpoint} offers no endpoint with security {wanted}; it offers {', '.join(offered)}. "
        "Set security.mode (and security.policy) to one of these.",
    )


async def _secure(client: Client, config: OpcUaDeviceConfig, endpoint: Any) -> None:
    sec = config.security
    try:
        cert = await asyncio.to_thread(ensure_certificate, sec.cert_dir, sec.application_uri)
    except CertificateError as exc:
        raise DeviceConnectError(config.name, str(exc)) from exc
    if cert.created:
        log.warning(
            "device %r: created client certificate %s (thumbprint %s); it is reused from now on. "
            "Make the server trust it (copy it into the server's trusted certificates).",
            config.name,
            cert.cert_path,
            cert.thumbprint,
        )
    server_der = _first_certificate(endpoint.ServerCertificate or b"")
    trust = TrustList(sec.trust_dir)
    try:
        trusted = await asyncio.to_thread(trust.is_trusted, server_der)
    except (CertificateError, ValueError) as exc:
        raise DeviceConnectError(config.name, f"cannot check the server certificate: {exc}") from exc
    if not trusted:
        saved = await asyncio.to_thread(trust.reject, server_der)
        who = describe(server_der)
        raise DeviceConnectError(
            config.name,
            f"the server certificate of {config.endpoint} ({who}) is not trusted. It was saved to {saved}; "
            f"if this is the right server, copy that file into {sec.trust_dir}/ and the agent connects on "
            "its next retry.",
        )
    await client.set_security(
        _POLICIES[sec.policy],
        str(cert.cert_path),
        str(cert.key_path),
        server_certificate=server_der,
        mode=_MODES[sec.mode],
    )


async def _authenticate(client: Client, config: OpcUaDeviceConfig) -> None:
    auth = config.auth
    if auth.type == "username":
        assert auth.username is not None and auth.password is not None
        client.set_user(auth.username)
        client.set_password(auth.password.get_secret_value())
    elif auth.type == "certificate":
        assert auth.cert_file is not None and auth.key_file is not None
        secret = auth.key_password.get_secret_value() if auth.key_password else None
        try:
            await client.load_client_certificate(str(auth.cert_file))
            await client.load_private_key(Path(auth.key_file), secret)
        except (OSError, ValueError, TypeError) as exc:
            raise DeviceConnectError(
                config.name, f"cannot load the user certificate {auth.cert_file} / key {auth.key_file}: {exc}"
            ) from exc


def _refused(config: OpcUaDeviceConfig, exc: ua.UaStatusCodeError) -> DriverError:
    code = int(exc.code)
    why = status_text(code)
    if code in _AUTH_REFUSED:
        auth = config.auth
        who = {
            "anonymous": "anonymous access",
            "username": f"user {auth.username!r}",
            "certificate": f"user certificate {auth.cert_file}",
        }[auth.type]
        hint = {
            "anonymous": "configure auth (username or certificate) as the server requires",
            "username": "check auth.username and auth.password (usually ${ENV}) against the server's users",
            "certificate": "make the server accept that user certificate",
        }[auth.type]
        return DeviceConnectError(config.name, f"{config.endpoint} refused {who}: {why}; {hint}")
    if code in _CERT_REFUSED:
        sec = config.security
        cert = sec.cert_dir / "client_cert.der"
        return DeviceConnectError(
            config.name,
            f"{config.endpoint} refused the agent's client certificate {cert}: {why}. Add that file to the "
            "server's trusted certificates (many servers list it under 'rejected'), then the agent connects "
            "on its next retry.",
        )
    return translate(config.name, exc, f"opening a session on {config.endpoint}")

"""The client's application instance certificate and the server trust list, on disk.

A server trusts a client by its certificate, so regenerating it on every start breaks the
trust each time (a common collector failure). The certificate is therefore created once,
kept in ``cert_dir`` and reused; it is only replaced on explicit request (``force``).
Server certificates are trusted by copying them (or their issuing CA) into ``trust_dir``;
an unknown one is saved next to it under ``rejected/`` so the operator can inspect and
move it.
"""

from __future__ import annotations

__all__ = [
    "CERT_FILE",
    "KEY_FILE",
    "CertificateError",
    "ClientCertificate",
    "TrustList",
    "create_certificate",
    "describe",
    "ensure_certificate",
    "load_certificate",
    "thumbprint",
]

import hashlib
import os
import re
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from asyncua.crypto import cert_gen
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes, PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge_agent.errors import EdgeAgentError

CERT_FILE = "client_cert.der"
KEY_FILE = "client_key.pem"
_CERT_SUFFIXES = (".der", ".pem", ".crt", ".cer")


class CertificateError(EdgeAgentError):
    """A certificate or key file is missing, unreadable or does not fit the configuration."""


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    """Where the client certificate lives and what identifies it."""

    cert_path: Path
    key_path: Path
    application_uri: str
    thumbprint: str
    not_after: datetime
    created: bool


def thumbprint(der: bytes) -> str:
    """SHA-1 thumbprint in hex, the form OPC UA servers show in their trust lists."""
    return hashlib.sha1(der, usedforsecurity=False).hexdigest().upper()


def describe(der: bytes) -> str:
    """``CN=..., thumbprint ...`` of a DER certificate, for messages."""
    cert = x509.load_der_x509_certificate(der)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(names[0].value) if names else cert.subject.rfc4514_string()
    return f"CN={cn}, thumbprint {thumbprint(der)}"


def _uris(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(san.value.get_values_for_type(x509.UniformResourceIdentifier))


def _read_cert(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def _public(key: PublicKeyTypes | CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_certificate(directory: Path, application_uri: str) -> ClientCertificate:
    """Load the existing certificate; it must carry ``application_uri`` and still be valid."""
    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    if not cert_path.is_file() or not key_path.is_file():
        raise CertificateError(
            f"no client certificate in {directory} (expected {CERT_FILE} and {KEY_FILE}); "
            f"create it with 'edge-agent certs create --dir {directory} --application-uri {application_uri}'"
        )
    try:
        cert = _read_cert(cert_path)
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise CertificateError(f"cannot read {cert_path} / {key_path}: {exc}") from exc
    if _public(key.public_key()) != _public(cert.public_key()):
        raise CertificateError(
            f"{key_path} is not the private key of {cert_path}; re-create both with --force"
        )
    uris = _uris(cert)
    if application_uri not in uris:
        raise CertificateError(
            f"{cert_path} was made for application URI {', '.join(uris) or '(none)'}, but the config says "
            f"{application_uri!r}. Set security.application_uri to match, or replace the certificate with "
            f"'edge-agent certs create --dir {directory} --application-uri {application_uri} --force' "
            "(the server must then trust the new one)."
        )
    now = datetime.now(UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise CertificateError(
            f"{cert_path} is valid only from {cert.not_valid_before_utc:%Y-%m-%d} to "
            f"{cert.not_valid_after_utc:%Y-%m-%d}; renew it with 'edge-agent certs create --dir {directory} "
            f"--application-uri {application_uri} --force' and have the server trust the new one"
        )
    der = cert.public_bytes(serialization.Encoding.DER)
    return ClientCertificate(
        cert_path, key_path, application_uri, thumbprint(der), cert.not_valid_after_utc, False
    )


def create_certificate(
    directory: str | Path,
    application_uri: str,
    *,
    host_name: str | None = None,
    days: int = 5 * 365,
    force: bool = False,
) -> ClientCertificate:
    """Create the self-signed client certificate and key in ``directory`` unless one exists.

    An existing, matching certificate is returned unchanged (same thumbprint), so calling
    this on every start is safe. ``force`` replaces it: servers must then trust the new one.
    """
    directory = Path(directory)
    if not force and (directory / CERT_FILE).exists():
        return load_certificate(directory, application_uri)
    host = host_name or socket.gethostname()
    key = cert_gen.generate_private_key()
    cert = cert_gen.generate_self_signed_app_certificate(
        key,
        application_uri,
        {"organizationName": "edge-agent"},
        [x509.UniformResourceIdentifier(application_uri), x509.DNSName(host)],
        extended=[ExtendedKeyUsageOID.CLIENT_AUTH],
        days=days,
    )
    directory.mkdir(parents=True, exist_ok=True)
    _write_atomic(directory / KEY_FILE, cert_gen.dump_private_key_as_pem(key), mode=0o600)
    der = cert.public_bytes(serialization.Encoding.DER)
    _write_atomic(directory / CERT_FILE, der, mode=0o644)
    return ClientCertificate(
        directory / CERT_FILE,
        directory / KEY_FILE,
        application_uri,
        thumbprint(der),
        cert.not_valid_after_utc,
        True,
    )


def ensure_certificate(directory: Path, application_uri: str) -> ClientCertificate:
    """Load the certificate, creating it only when the directory has none yet."""
    if (directory / CERT_FILE).exists() or (directory / KEY_FILE).exists():
        return load_certificate(directory, application_uri)
    return create_certificate(directory, application_uri)


def _write_atomic(path: Path, data: bytes, *, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class TrustList:
    """Server certificates trusted by the operator: the exact certificate or its issuing CA."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.rejected_dir = directory.parent / "rejected"

    def _trusted(self) -> list[x509.Certificate]:
        if not self.directory.is_dir():
            return []
        out = []
        for path in sorted(self.directory.iterdir()):
            if path.suffix.lower() in _CERT_SUFFIXES and path.is_file():
                try:
                    out.append(_read_cert(path))
                except ValueError as exc:
                    raise CertificateError(f"{path} in the trust list is not a certificate: {exc}") from exc
        return out

    def is_trusted(self, der: bytes) -> bool:
        """Re-read on every check, so a certificate copied in takes effect on the next connect."""
        cert = x509.load_der_x509_certificate(der)
        for trusted in self._trusted():
            if trusted.public_bytes(serialization.Encoding.DER) == der:
                return True
            try:
                cert.verify_directly_issued_by(trusted)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return True
        return False

    def reject(self, der: bytes) -> Path:
        """Save an untrusted server certificate where the operator can review and move it."""
        cert = x509.load_der_x509_certificate(der)
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        cn = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(names[0].value) if names else "server")
        path = self.rejected_dir / f"{cn}_{thumbprint(der)[:16]}.der"
        self.rejected_dir.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            _write_atomic(path, der, mode=0o644)
        return path

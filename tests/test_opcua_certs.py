"""Client application instance certificate: created once, reused, replaced only on request."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from asyncua.crypto import cert_gen
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from edge_agent.drivers.opcua import CertificateError, TrustList, create_certificate, load_certificate
from edge_agent.drivers.opcua.certs import CERT_FILE, KEY_FILE, ensure_certificate, thumbprint
from edge_agent.opcua_tools import certs_create_command

URI = "urn:edge-agent:test:client"


def test_created_certificate_fits_opc_ua(tmp_path: Path) -> None:
    cert = create_certificate(tmp_path / "pki", URI)
    assert cert.created and cert.cert_path == tmp_path / "pki" / CERT_FILE
    parsed = x509.load_der_x509_certificate(cert.cert_path.read_bytes())
    san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [URI]
    assert socket.gethostname() in san.get_values_for_type(x509.DNSName)
    eku = parsed.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    assert (parsed.not_valid_after_utc - parsed.not_valid_before_utc).days >= 5 * 365 - 1
    assert os.stat(cert.key_path).st_mode & 0o077 == 0  # the private key is not world-readable
    key = serialization.load_pem_private_key(cert.key_path.read_bytes(), None)
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    assert key.public_key().public_bytes(enc, public) == parsed.public_key().public_bytes(enc, public)
    assert cert.thumbprint == thumbprint(cert.cert_path.read_bytes()) and len(cert.thumbprint) == 40


def test_existing_certificate_is_reused_not_regenerated(tmp_path: Path) -> None:
    first = create_certificate(tmp_path, URI)
    der, mtime = first.cert_path.read_bytes(), first.cert_path.stat().st_mtime_ns
    for again in (
        create_certificate(tmp_path, URI),
        ensure_certificate(tmp_path, URI),
        load_certificate(tmp_path, URI),
    ):
        assert not again.created and again.thumbprint == first.thumbprint
    assert first.cert_path.read_bytes() == der and first.cert_path.stat().st_mtime_ns == mtime


def test_other_application_uri_needs_force(tmp_path: Path) -> None:
    first = create_certificate(tmp_path, URI)
    with pytest.raises(CertificateError) as info:
        create_certificate(tmp_path, "urn:other")
    assert str(first.cert_path) in str(info.value) and "--force" in str(info.value) and URI in str(info.value)
    replaced = create_certificate(tmp_path, "urn:other", force=True)
    assert replaced.created and replaced.thumbprint != first.thumbprint
    assert load_certificate(tmp_path, "urn:other").thumbprint == replaced.thumbprint


def test_missing_or_mismatched_files_explain_the_fix(tmp_path: Path) -> None:
    with pytest.raises(CertificateError, match="edge-agent certs create --dir"):
        load_certificate(tmp_path / "empty", URI)
    create_certificate(tmp_path / "a", URI)
    create_certificate(tmp_path / "b", URI)
    (tmp_path / "a" / KEY_FILE).write_bytes((tmp_path / "b" / KEY_FILE).read_bytes())
    with pytest.raises(CertificateError, match="is not the private key of"):
        load_certificate(tmp_path / "a", URI)
    (tmp_path / "b" / KEY_FILE).unlink()  # half a pair is never silently replaced
    with pytest.raises(CertificateError, match="no client certificate"):
        ensure_certificate(tmp_path / "b", URI)


def test_trust_list_accepts_exact_certificates_and_issuing_cas(tmp_path: Path) -> None:
    server = create_certificate(tmp_path / "server", "urn:server")
    other = create_certificate(tmp_path / "other", "urn:other")
    trust = TrustList(tmp_path / "trusted")
    der = server.cert_path.read_bytes()
    assert not trust.is_trusted(der)
    saved = trust.reject(der)
    assert saved.parent == tmp_path / "rejected" and saved.read_bytes() == der
    (tmp_path / "trusted").mkdir()
    (tmp_path / "trusted" / "other.der").write_bytes(other.cert_path.read_bytes())
    assert not trust.is_trusted(der)
    pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
    (tmp_path / "trusted" / "server.pem").write_bytes(pem)
    assert trust.is_trusted(der)


def test_trust_list_accepts_certificates_issued_by_a_trusted_ca(tmp_path: Path) -> None:
    ca_key = cert_gen.generate_private_key()
    ca = cert_gen.generate_self_signed_app_certificate(
        ca_key, "plant CA", {}, [x509.UniformResourceIdentifier("urn:plant-ca")], extended=[]
    )
    key = cert_gen.generate_private_key()
    csr = cert_gen.generate_app_certificate_signing_request(
        key, "plc1", {}, [x509.UniformResourceIdentifier("urn:plc1")], [ExtendedKeyUsageOID.SERVER_AUTH]
    )
    server_der = cert_gen.sign_certificate_request(csr, ca, ca_key).public_bytes(serialization.Encoding.DER)
    stranger = create_certificate(tmp_path / "stranger", "urn:plc1").cert_path.read_bytes()
    (tmp_path / "trusted").mkdir()
    (tmp_path / "trusted" / "ca.der").write_bytes(ca.public_bytes(serialization.Encoding.DER))
    trust = TrustList(tmp_path / "trusted")
    assert trust.is_trusted(server_der)
    assert not trust.is_trusted(stranger)  # self-signed, not issued by the CA


def test_certs_create_command_prints_identity(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert certs_create_command(tmp_path, application_uri=URI) == 0
    out = capsys.readouterr().out
    cert = load_certificate(tmp_path, URI)
    assert "created client certificate" in out and cert.thumbprint in out and URI in out
    assert certs_create_command(tmp_path, application_uri=URI) == 0
    assert "kept existing" in capsys.readouterr().out
    assert load_certificate(tmp_path, URI).thumbprint == cert.thumbprint

"""`edge-agent certs create`: make the client certificate once, show what the server must trust."""

from __future__ import annotations

__all__ = ["certs_create_command"]

from pathlib import Path

from edge_agent.drivers.opcua.certs import CERT_FILE, create_certificate


def certs_create_command(
    directory: str | Path, *, application_uri: str = "urn:edge-agent:client", force: bool = False
) -> int:
    """CLI entry: create (or, without ``force``, keep) the certificate and print its identity.

    Raises CertificateError (an EdgeAgentError) when an existing certificate does not fit.
    """
    cert = create_certificate(directory, application_uri, force=force)
    verb = "created" if cert.created else "kept existing"
    print(f"{verb} client certificate {cert.cert_path}")
    print(f"  private key      {cert.key_path} (keep it secret; mode 600)")
    print(f"  application URI  {cert.application_uri}")
    print(f"  thumbprint       {cert.thumbprint}")
    print(f"  valid until      {cert.not_after:%Y-%m-%d}")
    if cert.created:
        print(
            f"Next: make the OPC UA server trust {Path(directory) / CERT_FILE} (copy it into its trusted "
            "certificates), and put the server's certificate into the agent's security.trust_dir."
        )
    return 0

"""OPC UA driver: batched polling and subscriptions, quality-coded, secure, self-recovering.

Registered as the ``opcua`` entry point of ``edge_agent.drivers``. See :class:`OpcUaDriver`
and the config models :class:`OpcUaDeviceConfig` / :class:`OpcUaTagConfig`.
"""

from edge_agent.drivers.opcua.certs import (
    CertificateError,
    ClientCertificate,
    TrustList,
    create_certificate,
    load_certificate,
)
from edge_agent.drivers.opcua.config import (
    Deadband,
    OpcUaAuth,
    OpcUaDeviceConfig,
    OpcUaGroup,
    OpcUaSecurity,
    OpcUaTagConfig,
)
from edge_agent.drivers.opcua.driver import OpcUaDriver

__all__ = [
    "CertificateError",
    "ClientCertificate",
    "Deadband",
    "OpcUaAuth",
    "OpcUaDeviceConfig",
    "OpcUaDriver",
    "OpcUaGroup",
    "OpcUaSecurity",
    "OpcUaTagConfig",
    "TrustList",
    "create_certificate",
    "load_certificate",
]

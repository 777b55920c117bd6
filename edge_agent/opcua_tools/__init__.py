"""OPC UA command implementations the CLI calls: browse a server, create the client certificate."""

from edge_agent.drivers.opcua.certs import ClientCertificate, create_certificate
from edge_agent.opcua_tools.browse import BrowsedNode, browse, browse_command, config_yaml, tree_text
from edge_agent.opcua_tools.certs import certs_create_command

__all__ = [
    "BrowsedNode",
    "ClientCertificate",
    "browse",
    "browse_command",
    "certs_create_command",
    "config_yaml",
    "create_certificate",
    "tree_text",
]

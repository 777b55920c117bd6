"""edge-agent: shop-floor resource-efficiency monitoring.

Polls PLCs and meters over Modbus and OPC UA, turns raw signals into efficiency KPIs with a
vectorised numpy core, and delivers them over MQTT and to InfluxDB without losing data.
"""

from edge_agent.batch import Quality, SampleBatch
from edge_agent.config import AgentConfig, load_config
from edge_agent.drivers.base import Driver
from edge_agent.errors import (
    ConfigError,
    DriverError,
    EdgeAgentError,
    PermanentSinkError,
    SinkError,
    TransientSinkError,
)

__version__ = "0.1.0"

__all__ = [
    "AgentConfig",
    "ConfigError",
    "Driver",
    "DriverError",
    "EdgeAgentError",
    "PermanentSinkError",
    "Quality",
    "SampleBatch",
    "SinkError",
    "TransientSinkError",
    "__version__",
    "load_config",
]

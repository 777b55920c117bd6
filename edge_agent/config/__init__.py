"""Configuration: pydantic v2 models loaded from YAML."""

from edge_agent.config.loader import load_config, parse_config
from edge_agent.config.model import (
    AgentConfig,
    AgentSection,
    AnalyticsConfig,
    AssetConfig,
    DeviceConfig,
    StateThresholds,
    StatusPageConfig,
    TagConfig,
    build_config_model,
)
from edge_agent.config.sinks import (
    BufferConfig,
    InfluxConfig,
    MqttConfig,
    SinkLimits,
    SparkplugConfig,
    TlsConfig,
)
from edge_agent.config.types import ByteSize, Role, Seconds, StrictModel, Unit

__all__ = [
    "AgentConfig",
    "AgentSection",
    "AnalyticsConfig",
    "AssetConfig",
    "BufferConfig",
    "ByteSize",
    "DeviceConfig",
    "InfluxConfig",
    "MqttConfig",
    "Role",
    "Seconds",
    "SinkLimits",
    "SparkplugConfig",
    "StateThresholds",
    "StatusPageConfig",
    "StrictModel",
    "TagConfig",
    "TlsConfig",
    "Unit",
    "build_config_model",
    "load_config",
    "parse_config",
]

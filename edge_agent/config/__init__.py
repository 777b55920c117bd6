"""Configuration: pydantic v2 models loaded from YAML."""

from edge_agent.config.loader import load_config, parse_config
from edge_agent.config.model import (
    AgentConfig,
    AgentSection,
    AnalyticsConfig,
    AssetConfig,
    DeviceConfig,
    StateThresholds,
    TagConfig,
    build_config_model,
)
from edge_agent.config.sinks import BufferConfig, InfluxConfig, MqttConfig, SparkplugConfig, TlsConfig
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
    "SparkplugConfig",
    "StateThresholds",
    "StrictModel",
    "TagConfig",
    "TlsConfig",
    "Unit",
    "build_config_model",
    "load_config",
    "parse_config",
]

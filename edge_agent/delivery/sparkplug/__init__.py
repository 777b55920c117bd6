"""Sparkplug B edge node sink: the gateway is the edge node, each asset a Sparkplug device.

Payloads are built with the specification's ``sparkplug_b.proto`` (generated module
``sparkplug_b_pb2``; ``regenerate.sh`` rebuilds it). See docs/sparkplug.md.
"""

from edge_agent.delivery.sparkplug.liveness import (
    DeviceHealth,
    DeviceLossListener,
    asset_devices,
    device_watch,
    watch_devices,
)
from edge_agent.delivery.sparkplug.sink import SparkplugSink

__all__ = [
    "DeviceHealth",
    "DeviceLossListener",
    "SparkplugSink",
    "asset_devices",
    "device_watch",
    "watch_devices",
]

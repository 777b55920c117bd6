"""Modbus driver: TCP, RTU over TCP and serial RTU, with a compiled request plan.

Registered as the ``modbus`` entry point of ``edge_agent.drivers``. Integrators configure
:class:`ModbusDeviceConfig` / :class:`ModbusTagConfig` in YAML; the planner, codec and
transport modules are importable for tests and tools but are not needed to use the driver.
"""

from edge_agent.drivers.modbus.config import ModbusDeviceConfig, ModbusTagConfig
from edge_agent.drivers.modbus.driver import ModbusDriver
from edge_agent.drivers.modbus.exceptions import describe_code
from edge_agent.drivers.modbus.planner import Plan, Request, SpanTable, TagSpan, build_plan, split_request

__all__ = [
    "ModbusDeviceConfig",
    "ModbusDriver",
    "ModbusTagConfig",
    "Plan",
    "Request",
    "SpanTable",
    "TagSpan",
    "build_plan",
    "describe_code",
    "split_request",
]

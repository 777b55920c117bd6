"""The public driver conformance kit, run against our own built-in drivers and the simulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from plant import PlantServer

from edge_agent.config import DeviceConfig, build_config_model
from edge_agent.demo.plant_config import demo_config
from edge_agent.drivers.base import Driver
from edge_agent.plugins import driver_registry
from edge_agent.testing import DriverConformance


def _device(server: PlantServer, name: str, **override: Any) -> DeviceConfig:
    raw = demo_config(
        modbus_port=server.modbus_port,
        opcua_endpoint=server.opcua_endpoint,
        mqtt_port=None,
        data_dir=Path("unused"),
    )
    model = build_config_model([d.config_model for d in driver_registry().values()])
    raw["devices"] = [dict(d, **override) for d in raw["devices"] if d["name"] == name]
    device: DeviceConfig = model.model_validate(raw).devices[0]
    return device


class TestModbusConformance(DriverConformance):
    @pytest.fixture
    def driver_class(self) -> type[Driver[Any]]:
        return driver_registry()["modbus"]

    @pytest.fixture
    def device_config(self, plant_server: PlantServer) -> DeviceConfig:
        return _device(plant_server, "cnc1-modbus")

    @pytest.fixture
    def unreachable_config(self, plant_server: PlantServer) -> DeviceConfig:
        from edge_agent.broker import free_port

        return _device(plant_server, "cnc1-modbus", port=free_port(), timeout=0.5, retries=0)


class TestOpcUaConformance(DriverConformance):
    @pytest.fixture
    def driver_class(self) -> type[Driver[Any]]:
        return driver_registry()["opcua"]

    @pytest.fixture
    def device_config(self, plant_server: PlantServer) -> DeviceConfig:
        return _device(plant_server, "comp1-opcua")

    @pytest.fixture
    def unreachable_config(self, plant_server: PlantServer) -> DeviceConfig:
        from edge_agent.broker import free_port

        endpoint = f"opc.tcp://127.0.0.1:{free_port()}/edge-agent/simulator/"
        return _device(plant_server, "comp1-opcua", endpoint=endpoint, timeout=1.0)

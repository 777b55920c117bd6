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


_KIT_USER = """
from typing import Literal

import pytest

from edge_agent import Driver, SampleBatch
from edge_agent.batch import now_ns
from edge_agent.config import DeviceConfig, TagConfig
from edge_agent.testing import DriverConformance


class ConstConfig(DeviceConfig):
    driver: Literal["const"]
    tags: list[TagConfig] = []


class ConstDriver(Driver[ConstConfig]):
    config_model = ConstConfig

    async def connect(self) -> None: ...
    async def close(self) -> None: ...
    async def read(self) -> SampleBatch:
        return SampleBatch.single(self.name, now_ns(), {t.name: 1.0 for t in self.tags})


class TestConst(DriverConformance):
    @pytest.fixture
    def driver_class(self):
        return ConstDriver

    @pytest.fixture
    def device_config(self):
        return ConstConfig(name="const-1", driver="const",
                           tags=[TagConfig(name="p", asset="a1", role="power", unit="kW")])
"""


def test_kit_fails_with_what_to_add_when_a_fixture_is_missing(tmp_path: Path) -> None:
    """An integrator who forgets ``unreachable_config`` gets a failure naming it, never a skip."""
    import subprocess
    import sys

    (tmp_path / "test_const.py").write_text(_KIT_USER, encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", "test_const.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    # pytest counts a failure inside a fixture as an error: either way the run fails.
    assert ("1 failed" in out or "1 error" in out) and "skipped" not in out, out
    assert "test_unreachable_device_raises_driver_error" in out, out
    assert "add an 'unreachable_config' fixture" in out, out

"""Data-driven Modbus cases (tests/modbus_cases/<case>/): config + register contents -> values or error.

Each case goes through the real config loader and a real pymodbus server on 127.0.0.1.
Expected values are written by hand from the wire bytes, never computed by the codec.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from modbus_cases.harness import all_cases, expected_value, load_case, same_value, serve

from edge_agent.batch import Quality
from edge_agent.config import parse_config
from edge_agent.drivers.modbus import ModbusDeviceConfig, ModbusDriver
from edge_agent.errors import ConfigError

CASE_DIRS = all_cases()


def _document(device: dict[str, Any], port: int | None) -> str:
    """A whole agent config around the case's device, so the real loader validates it."""
    device = dict(device)
    if port is not None:
        device.setdefault("host", "127.0.0.1")
        device["port"] = port
    assets = sorted({str(t["asset"]) for t in device.get("tags", [])})
    doc = {
        "assets": [{"id": a, "site": "s", "area": "a", "line": "l", "rated_power_kw": 100.0} for a in assets],
        "devices": [device],
    }
    return yaml.safe_dump(doc, sort_keys=False)


def test_every_case_directory_is_complete() -> None:
    assert len(CASE_DIRS) >= 25
    for path in CASE_DIRS:
        expected = yaml.safe_load((path / "expected.yaml").read_text())
        assert ("error" in expected) != ("values" in expected), path
        if "values" in expected:
            assert (path / "registers.yaml").exists(), path


@pytest.mark.parametrize("path", CASE_DIRS, ids=[p.name for p in CASE_DIRS])
async def test_case(path: Path) -> None:
    case = load_case(path)
    exp = case.expected
    if "error" in exp:
        port = None if exp.get("serial") else 502
        with pytest.raises(ConfigError) as info:
            parse_config(_document(case.device, port), file=f"{case.name}.yaml")
        text = str(info.value)
        for fragment in exp["error"]:
            assert fragment in text, f"{case.name}: {fragment!r} not in\n{text}"
        assert all(p.line is not None for p in info.value.problems), text
        return

    async with serve({int(case.device.get("unit_id", 1)): case.registers}) as server:
        config = parse_config(_document(case.device, server.port), file=f"{case.name}.yaml")
        device = config.devices[0]
        assert isinstance(device, ModbusDeviceConfig)
        driver = ModbusDriver(device)
        async with driver:
            batch = await driver.read()
            before = server.faults[device.unit_id].reads
            again = await driver.read()
            second_poll_requests = server.faults[device.unit_id].reads - before

    assert batch.device == "case" and len(batch) == 1
    assert set(batch.tags) == set(exp["values"]) == {t.name for t in device.tags}
    want_quality = {k: Quality[v.upper()] for k, v in (exp.get("quality") or {}).items()}
    for tag, raw in exp["values"].items():
        want = expected_value(raw)
        for b in (batch, again):
            got = b.values[tag][0]
            q = Quality(int(b.quality[tag][0]))
            assert q == want_quality.get(tag, Quality.GOOD), f"{case.name}/{tag}: quality {q.name}"
            assert same_value(got, want), f"{case.name}/{tag}: got {got!r}, want {want!r}"
    for tag, dtype in (exp.get("dtypes") or {}).items():
        assert batch.values[tag].dtype == np.dtype(dtype), f"{case.name}/{tag}: {batch.values[tag].dtype}"
    for tag, code in (exp.get("status") or {}).items():
        assert int(batch.status[tag][0]) == code
        assert int(again.status[tag][0]) == code
    if "requests_after" in exp:
        assert len(driver.requests) == exp["requests_after"]
        assert second_poll_requests == exp["requests_after"]  # the split is remembered

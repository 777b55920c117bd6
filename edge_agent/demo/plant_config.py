"""The demo's agent config, generated from the simulator's own register map and node list.

Generating it (instead of hand-writing a second copy) means the demo can never drift from
the simulator: every address, data type and scale comes from one table.
"""

from __future__ import annotations

__all__ = ["ASSET_PLACES", "demo_config"]

from pathlib import Path
from typing import Any

import edge_agent_simulators as simulators

#: ISA-95 place and nameplate of each simulated asset.
ASSET_PLACES: dict[str, dict[str, Any]] = {
    "cnc1": {
        "area": "machining",
        "line": "line1",
        "kind": "machine",
        "rated_power_kw": 25.0,
        "ideal_cycle_time_s": 30.0,
        "description": "CNC machining centre",
        "states": {"off_below_kw": 1.0, "idle_below_kw": 10.0, "hysteresis_kw": 0.5, "min_dwell_s": 2},
    },
    "imm1": {
        "area": "moulding",
        "line": "line2",
        "kind": "machine",
        "rated_power_kw": 45.0,
        "ideal_cycle_time_s": 3.75,
        "description": "injection-moulding machine, 4 cavities",
        "states": {"off_below_kw": 1.0, "idle_below_kw": 20.0, "hysteresis_kw": 1.0, "min_dwell_s": 2},
    },
    "comp1": {
        "area": "utilities",
        "line": "air",
        "kind": "compressor",
        "rated_power_kw": 30.0,
        "description": "screw compressor, load/unload",
        "states": {"off_below_kw": 1.0, "idle_below_kw": 12.0, "hysteresis_kw": 0.5, "min_dwell_s": 1},
        # its state is the `loaded` signal: 0 unload (idle), 1 load (producing)
        "state_codes": {0: "idle", 1: "producing"},
    },
    "main": {
        "area": "site",
        "line": "incomer",
        "kind": "meter",
        "rated_power_kw": 200.0,
        "description": "site main meter",
    },
}
OPCUA_ASSETS = frozenset({"comp1"})  # the rest is read over Modbus TCP


def _tag(asset: str, signal: str, role: str, unit: str, scale: float) -> dict[str, Any]:
    tag: dict[str, Any] = {"name": signal, "asset": asset, "role": role, "unit": unit}
    if scale != 1.0:
        tag["scale"] = scale
    return tag


def demo_config(
    *,
    modbus_port: int,
    opcua_endpoint: str,
    mqtt_port: int | None,
    data_dir: Path,
    site: str = "demo-plant",
    poll_interval: float = 0.5,
) -> dict[str, Any]:
    """A complete agent config (as plain data) for the simulator on 127.0.0.1."""
    assets = [{"id": a, "site": site, **place} for a, place in ASSET_PLACES.items()]
    devices: list[dict[str, Any]] = []
    registers = [r for r in simulators.register_map() if r.register_type == "holding"]
    for asset in ASSET_PLACES:
        if asset in OPCUA_ASSETS:
            continue
        tags = []
        for r in registers:
            if r.asset != asset:
                continue
            tag = _tag(asset, r.signal, r.role, r.unit, r.scale)
            tag.update(register="holding", address=r.address, data_type=r.data_type)
            tags.append(tag)
        unit_id = next(r.unit_id for r in registers if r.asset == asset)
        devices.append(
            {
                "name": f"{asset}-modbus",
                "driver": "modbus",
                "host": "127.0.0.1",
                "port": modbus_port,
                "unit_id": unit_id,
                "poll_interval": poll_interval,
                "timeout": 1.0,
                "backoff_max": 5.0,
                "tags": tags,
            }
        )
    for asset in sorted(OPCUA_ASSETS):
        tags = []
        for n in simulators.opcua_nodes():
            if n.asset != asset:
                continue
            tag = _tag(asset, n.signal, n.role, n.unit, n.scale)
            tag["node_id"] = n.node_id
            tags.append(tag)
        devices.append(
            {
                "name": f"{asset}-opcua",
                "driver": "opcua",
                "endpoint": opcua_endpoint,
                "mode": "poll",
                "poll_interval": poll_interval,
                "timeout": 2.0,
                "backoff_max": 5.0,
                "tags": tags,
            }
        )
    config: dict[str, Any] = {
        "agent": {"name": "demo-gateway", "log_level": "warning"},
        "assets": assets,
        "devices": devices,
        # the simulator's grid mix; set your own grid's factor (kg CO2e per kWh)
        "analytics": {"kpi_interval": 15, "max_gap": 5, "emission_factor_kg_per_kwh": 0.4},
        "buffer": {"path": str(data_dir / "buffer.db"), "max_bytes": "64MB", "policy": "drop_oldest"},
    }
    if mqtt_port is not None:
        # MQTT 3.1.1 works with every broker, the embedded amqtt included
        config["mqtt"] = {"host": "127.0.0.1", "port": mqtt_port, "qos": 1, "protocol": "3.1.1"}
    return config

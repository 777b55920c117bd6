"""Bundled plant simulator: one seeded plant model served over Modbus TCP and OPC UA.

Run it live (``Simulator`` / ``serve``) to exercise the agent without hardware, or write
weeks of interval history with exact ground truth (``generate_history``) for the
before/after evaluator. ``register_map()`` and ``opcua_nodes()`` describe every signal as
data; the demo configuration is generated from them.
"""

from __future__ import annotations

__all__ = [
    "AssetTruth",
    "Fault",
    "HistoryResult",
    "MachineState",
    "OpcUaNode",
    "PlantConfig",
    "PlantModel",
    "PlantTruth",
    "RegisterEntry",
    "RetrofitConfig",
    "Simulator",
    "Snapshot",
    "generate_history",
    "main",
    "opcua_nodes",
    "register_map",
    "serve",
]

from .catalog import OpcUaNode, RegisterEntry, opcua_nodes, register_map
from .cli import main
from .config import PlantConfig, RetrofitConfig
from .faults import Fault
from .history import HistoryResult, generate_history
from .host import Simulator, serve
from .plant import PlantModel, Snapshot
from .states import MachineState
from .truth import AssetTruth, PlantTruth

"""A PLC that serves its state as text ("RUN", "IDLE"): the asset's ``state_codes`` map works
end to end over a real asyncua server, polled and subscribed (issue #12).

Before, the driver turned every String value into Bad (it is no number), so the state map
never saw it and such a machine had no states at all.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from test_opcua_support import PlantServer, node_id, plant_server

from edge_agent.batch import Quality, SampleBatch
from edge_agent.config import AssetConfig, build_config_model
from edge_agent.drivers.opcua._ua import ua
from edge_agent.plugins import driver_registry
from edge_agent.runtime.service import Agent

pytestmark = pytest.mark.asyncio(loop_scope="module")

CODES = {"RUN": "producing", "IDLE": "idle", "STOP": "off", "SETUP": "setup", "ALARM": "fault"}
PRODUCING, IDLE = 3, 1
LABEL, POWER = node_id("label"), node_id("power_kw")  # a String node the test writes states to


class Collector:
    """Keeps what the agent hands to delivery."""

    def __init__(self) -> None:
        self.raw: dict[str, list[SampleBatch]] = defaultdict(list)
        self.kpi: dict[str, list[SampleBatch]] = defaultdict(list)

    async def submit(
        self, kind: str, asset: AssetConfig, batch: SampleBatch, *, window: str | None = None
    ) -> None:
        if kind == "raw":
            self.raw[asset.id].append(batch)
        elif window == "1s":  # the live window (the longer ones repeat the same time)
            self.kpi[asset.id].append(batch)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def plant() -> AsyncIterator[PlantServer]:
    async with plant_server() as p:
        yield p


def config(endpoint: str, data_dir: Path) -> Any:
    def asset(name: str) -> dict[str, Any]:
        place = {"site": "s", "area": "a", "line": "l"}
        return {"id": name, **place, "rated_power_kw": 50.0, "state_codes": CODES}

    def device(name: str, asset: str, mode: str) -> dict[str, Any]:
        return {
            "name": name,
            "driver": "opcua",
            "endpoint": endpoint,
            "mode": mode,
            "poll_interval": 0.1,
            "tags": [
                {"name": "mode", "asset": asset, "role": "state", "unit": "state", "node_id": LABEL},
                {"name": "power", "asset": asset, "role": "power", "unit": "kW", "node_id": POWER},
            ],
        }

    raw = {
        "agent": {"name": "text-states"},
        "assets": [asset("polled"), asset("subscribed")],
        "devices": [device("ua-poll", "polled", "poll"), device("ua-sub", "subscribed", "subscribe")],
        "analytics": {"kpi_interval": 1, "max_gap": 5, "emission_factor_kg_per_kwh": 0.4},
        "buffer": {"path": str(data_dir / "buffer.db")},
    }
    return build_config_model([d.config_model for d in driver_registry().values()]).model_validate(raw)


async def write_text(plant: PlantServer, text: str) -> None:
    await plant.cnc["label"].write_value(ua.Variant(text, ua.VariantType.String))


async def test_text_state_codes_map_to_states_polled_and_subscribed(
    plant: PlantServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="edge_agent.analytics")
    await write_text(plant, "RUN")
    sink = Collector()
    agent = Agent(config(plant.endpoint, tmp_path), sink=sink, persist_state=False)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await asyncio.sleep(2.5)
        await write_text(plant, "IDLE")
        await asyncio.sleep(2.5)
        await write_text(plant, "HALT")  # not in the map: no state, logged once
        await asyncio.sleep(1.5)
    finally:
        stop.set()
        await task
        await write_text(plant, "cnc one")

    for asset in ("polled", "subscribed"):
        raw = SampleBatch.concat(sink.raw[asset])
        v, q = raw.values["mode"], raw.quality["mode"]
        # raw samples carry the state code the text maps to: a number, never the text
        assert v.dtype.kind == "f", (asset, v.dtype)
        good = q <= Quality.UNCERTAIN
        assert set(v[good].tolist()) == {PRODUCING, IDLE}, asset
        assert (v[good] == PRODUCING).sum() >= 5 and (v[good] == IDLE).sum() >= 5, asset
        halt = ~good & (q != Quality.MISSING)  # the unknown text: no value
        assert halt.sum() >= 3 and np.isnan(v[halt]).all(), asset
        assert raw.ts[halt].min() > raw.ts[v == IDLE].max(), asset  # only after it was written

        # the analytics booked the machine producing, then idle, and counted the unknown text
        last = {int(b.ts[0]): b for b in sink.kpi[asset]}  # a window reported twice: the later
        seconds = {
            s: sum(float(np.nan_to_num(b.values[f"time_{s}_s"][0])) for b in last.values())
            for s in ("off", "idle", "setup", "producing", "fault")
        }
        assert seconds["producing"] > 1.5 and seconds["idle"] > 1.5, (asset, seconds)
        assert seconds["off"] == seconds["setup"] == seconds["fault"] == 0.0, (asset, seconds)
        totals = agent.analytics.totals()[asset]
        assert totals.invalid_state_codes >= 3 and not math.isnan(totals.energy_kwh)
    halts = [r for r in caplog.records if "HALT" in r.getMessage()]
    assert len(halts) == 2  # once per asset
    assert all("state_codes" in r.getMessage() for r in halts)

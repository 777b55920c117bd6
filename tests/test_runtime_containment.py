"""Containment: a driver plugin that raises anything (KeyError, TypeError, RuntimeError, on
connect or on read) stays with its device, while real Modbus devices of the same agent keep
their poll rate. The faulty plugin is the one fake here: a real server cannot raise a
KeyError inside our process on cue."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Literal

import numpy as np
import pytest
from plant import PlantServer
from pydantic import Field

from edge_agent.batch import Quality, SampleBatch, now_ns
from edge_agent.config import AgentConfig, AssetConfig, DeviceConfig, TagConfig, build_config_model
from edge_agent.demo.plant_config import demo_config
from edge_agent.drivers.base import Driver
from edge_agent.plugins import driver_registry
from edge_agent.runtime.service import Agent

ERRORS: dict[str, type[Exception]] = {
    "KeyError": KeyError,
    "TypeError": TypeError,
    "RuntimeError": RuntimeError,
}
POLL = 0.1


class FaultyConfig(DeviceConfig):
    driver: Literal["faulty"] = "faulty"
    fails: str = "KeyError"
    when: Literal["init", "connect", "read"] = "read"
    tags: list[TagConfig] = Field(default_factory=list)


class FaultyDriver(Driver[FaultyConfig]):
    """A buggy plugin: raises a non-DriverError on connect, or on every second read."""

    config_model = FaultyConfig

    def __init__(self, config: FaultyConfig) -> None:
        super().__init__(config)
        self.reads = 0
        if config.when == "init":
            self._raise()

    def _raise(self) -> None:
        exc = ERRORS[self.config.fails]
        raise exc("bug in plugin") if exc is not TypeError else TypeError("__init__() missing 1 argument")

    async def connect(self) -> None:
        if self.config.when == "connect":
            self._raise()

    async def close(self) -> None:
        pass

    async def read(self) -> SampleBatch:
        self.reads += 1
        if self.reads % 2 == 0:
            self._raise()
        return SampleBatch.single(self.name, now_ns(), {"x": float(self.reads)})


class Counter:
    """A sink that counts rows per device (the delivery layer is not under test here)."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}
        self.bad: dict[str, int] = {}

    async def submit(
        self,
        kind: Literal["raw", "kpi"],
        asset: AssetConfig,
        batch: SampleBatch,
        *,
        window: str | None = None,
    ) -> None:
        if kind != "raw":
            return
        self.rows[batch.device] = self.rows.get(batch.device, 0) + len(batch)
        bad = int(np.all(np.vstack(list(batch.quality.values())) == Quality.BAD, axis=0).sum())
        self.bad[batch.device] = self.bad.get(batch.device, 0) + bad


def _config(plant: PlantServer, tmp: Any, *, faulty: bool) -> AgentConfig:
    raw = demo_config(
        modbus_port=plant.modbus_port, opcua_endpoint=plant.opcua_endpoint, mqtt_port=None, data_dir=tmp
    )
    raw["devices"] = [dict(d, poll_interval=POLL) for d in raw["devices"] if d["driver"] == "modbus"]
    asset = raw["assets"][0]["id"]
    if faulty:
        for name in ERRORS:
            for when in ("init", "connect", "read"):
                raw["devices"].append(
                    {
                        "name": f"bug-{name.lower()}-{when}",
                        "driver": "faulty",
                        "fails": name,
                        "when": when,
                        "poll_interval": POLL / 2,
                        "backoff_max": 0.05,
                        "tags": [{"name": f"x_{name.lower()}_{when}", "asset": asset}],
                    }
                )
    models = [d.config_model for d in driver_registry().values()] + [FaultyConfig]
    return build_config_model(models).model_validate(raw)


async def _run(config: AgentConfig, seconds: float) -> tuple[Agent, Counter]:
    drivers: dict[str, type[Driver[Any]]] = {**driver_registry(), "faulty": FaultyDriver}
    sink = Counter()
    agent = Agent(config, sink=sink, drivers=drivers)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    # start counting once every Modbus device has read once (connect time is not poll rate)
    deadline = time.monotonic() + 20
    modbus = [p for p in agent.pollers if p.driver.config.driver == "modbus"]
    while not all(p.stats.polls for p in modbus) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    marks = {p.name: p.stats.polls for p in modbus}
    await asyncio.sleep(seconds)
    counted = {p.name: p.stats.polls - marks[p.name] for p in modbus}
    stop.set()
    await asyncio.wait_for(task, 30)  # returns normally: no ExceptionGroup
    agent.counted = counted  # type: ignore[attr-defined]
    return agent, sink


async def test_plugin_exceptions_stay_with_their_device(
    plant_server: PlantServer, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    seconds = 3.0
    base, _ = await _run(_config(plant_server, tmp_path, faulty=False), seconds)
    with caplog.at_level(logging.DEBUG, logger="edge_agent.poller"):
        agent, sink = await _run(_config(plant_server, tmp_path, faulty=True), seconds)

    expected = seconds / POLL
    for name, polls in agent.counted.items():  # type: ignore[attr-defined]
        before = base.counted[name]  # type: ignore[attr-defined]
        assert polls >= 0.85 * expected, (name, polls, expected)
        assert polls >= 0.85 * before, (name, polls, before)  # the bugs cost the others nothing

    bugs = [p for p in agent.pollers if p.name.startswith("bug-")]
    assert len(bugs) == 9
    for p in bugs:
        st = p.stats
        assert st.reconnects >= 3, (p.name, st)  # restarted with backoff, again and again
        assert st.failed_polls >= 3 and st.quality["bad"] >= 3
        assert sink.bad.get(p.name, 0) >= 3  # the gaps are visible as Bad rows
        assert st.last_error is not None and "driver raised" in st.last_error and p.name in st.last_error
        kind = p.driver.config.fails
        assert kind in st.last_error
        if p.driver.config.when == "read":
            assert st.polls >= 3  # every other read works; each good one is delivered
        errors = [r for r in caplog.records if r.levelno == logging.ERROR and p.name in r.getMessage()]
        # logged once per outage, each time with its traceback
        assert errors and all(r.exc_info is not None for r in errors), p.name
        if p.driver.config.when in ("init", "connect"):
            assert len(errors) == 1, [r.getMessage() for r in errors]

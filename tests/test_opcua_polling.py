"""OPC UA driver against a real asyncua server: polling, quality, addressing, subscriptions, writes.

One server for the module (it takes ~2 s to start). It registers two namespaces before
the plant's, so the plant namespace index is 4, while every tag names it by URI.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from test_opcua_support import NS, PlantServer, node_id, plant_server, set_status

from edge_agent.batch import Quality, SampleBatch, now_ns
from edge_agent.cli import main
from edge_agent.config import parse_config
from edge_agent.drivers.opcua import OpcUaDeviceConfig, OpcUaDriver
from edge_agent.drivers.opcua._ua import ua
from edge_agent.drivers.opcua.subscriptions import to_ns
from edge_agent.errors import DeviceExceptionError, WriteNotAllowedError
from edge_agent.opcua_tools import browse, browse_command, tree_text

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def plant() -> AsyncIterator[PlantServer]:
    async with plant_server() as p:
        yield p


def device(endpoint: str, tags: list[dict[str, Any]], **extra: Any) -> OpcUaDeviceConfig:
    base = {"name": "cnc1-ua", "driver": "opcua", "endpoint": endpoint, "poll_interval": "100ms"}
    return OpcUaDeviceConfig.model_validate({**base, **extra, "tags": tags})


def tag(name: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "asset": "cnc1", **kw}


async def collect(driver: OpcUaDriver, until: float, *, every: float = 0.05) -> SampleBatch:
    """Read repeatedly for ``until`` seconds and join everything read."""
    batches = []
    deadline = asyncio.get_running_loop().time() + until
    while asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(every)
        batch = await driver.read()
        if len(batch):
            batches.append(batch)
    return SampleBatch.concat(batches) if batches else await driver.read()


def good_values(batch: SampleBatch, name: str) -> list[float]:
    return [float(v) for v in batch.values[name][batch.good(name)]]


def changes(values: list[float]) -> list[float]:
    """A subscribed tag holds its value in every row: the sequence of distinct values."""
    return [v for i, v in enumerate(values) if i == 0 or v != values[i - 1]]


async def test_poll_reads_all_types_with_quality_and_scaling(plant: PlantServer) -> None:
    cfg = device(
        plant.endpoint,
        [
            tag("power", role="power", unit="kW", node_id=node_id("power_kw"), scale=2.0, offset=1.0),
            tag("energy", role="energy_counter", unit="kWh", node_id=node_id("energy_wh"), scale=0.001),
            tag("state", node_id=node_id("state"), unit="state"),
            tag("running", node_id=node_id("running")),
            tag("temperature", role="temperature", unit="degC", node_id=node_id("temperature")),
            tag("bad", node_id=node_id("sensor_bad")),
            tag("uncertain", node_id=node_id("sensor_uncertain")),
            tag("label", node_id=node_id("label")),
        ],
    )
    async with OpcUaDriver(cfg) as driver:
        conn = driver.connection
        assert conn is not None and conn.namespaces[NS] == plant.ns == 4
        batch = await driver.read()
    assert len(batch) == 1
    row = {name: batch.values[name][0] for name in batch.tags}
    q = {name: Quality(int(batch.quality[name][0])) for name in batch.tags}
    assert row["power"] == pytest.approx(12.5 * 2.0 + 1.0)
    # Counters stay exact raw integers (4e9 does not fit int32); their scale is for analytics.
    assert batch.values["energy"].dtype == np.int64 and int(row["energy"]) == 4_000_000_000
    assert row["state"] == 2.0 and row["running"] == 1.0
    assert row["temperature"] == pytest.approx(21.5)
    assert q["bad"] is Quality.BAD and math.isnan(row["bad"])
    assert int(batch.status["bad"][0]) == ua.StatusCodes.BadSensorFailure
    assert q["uncertain"] is Quality.UNCERTAIN and row["uncertain"] == 7.0
    assert int(batch.status["uncertain"][0]) == ua.StatusCodes.UncertainLastUsableValue
    assert q["label"] is Quality.BAD and math.isnan(row["label"])  # a string is not a number
    assert all(q[t] is Quality.GOOD for t in ("power", "energy", "state", "running", "temperature"))


async def test_status_change_turns_the_value_bad_then_good_again(plant: PlantServer) -> None:
    cfg = device(plant.endpoint, [tag("setpoint", node_id=node_id("setpoint_kw"))])
    node = plant.cnc["setpoint_kw"]
    async with OpcUaDriver(cfg) as driver:
        await node.write_value(33.0)
        first = await driver.read()
        await set_status(node, ua.StatusCodes.BadCommunicationError)
        failed = await driver.read()
        await node.write_value(34.0)
        again = await driver.read()
    assert good_values(first, "setpoint") == [33.0]
    assert failed.quality["setpoint"][0] == Quality.BAD and math.isnan(failed.values["setpoint"][0])
    assert int(failed.status["setpoint"][0]) == ua.StatusCodes.BadCommunicationError
    assert good_values(again, "setpoint") == [34.0]


async def test_browse_path_tags_and_unresolvable_tags_are_isolated(plant: PlantServer) -> None:
    cfg = device(
        plant.endpoint,
        [
            tag("by_id", node_id=node_id("parts")),
            tag("by_path", browse_path="Plant/cnc1/parts"),
            tag("by_full_path", browse_path=f"/Objects/{{{NS}}}Plant/{{{NS}}}cnc1/{{{NS}}}temperature"),
            tag("wrong_path", browse_path="Plant/cnc1/nope"),
            tag("wrong_ns", node_id="nsu=urn:not-on-this-server;s=cnc1.parts"),
            tag("wrong_id", node_id=f"nsu={NS};s=cnc1.missing"),
        ],
        namespace=NS,
    )
    async with OpcUaDriver(cfg) as driver:
        batch = await driver.read()
        again = await driver.read()
    assert len(batch) == 1
    assert batch.values["by_path"][0] == batch.values["by_id"][0] == 17
    assert batch.values["by_full_path"][0] == pytest.approx(21.5)
    for name, code in (
        ("wrong_path", ua.StatusCodes.BadNoMatch),
        ("wrong_ns", ua.StatusCodes.BadNodeIdUnknown),
        ("wrong_id", ua.StatusCodes.BadNodeIdUnknown),
    ):
        assert batch.quality[name][0] == Quality.BAD, name
        assert int(batch.status[name][0]) == code, name
        assert again.quality[name][0] == Quality.BAD, name
    assert batch.quality["by_id"][0] == Quality.GOOD


async def test_unresolved_tag_is_logged_once_with_what_to_fix(
    plant: PlantServer, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = device(
        plant.endpoint, [tag("ok", node_id=node_id("parts")), tag("lost", node_id="nsu=urn:gone;s=x")]
    )
    driver = OpcUaDriver(cfg)
    for _ in range(3):  # reconnects must not repeat the warning
        async with driver:
            await driver.read()
    lines = [r.getMessage() for r in caplog.records if "lost" in r.getMessage()]
    assert len(lines) == 1
    assert "urn:gone" in lines[0] and "cnc1-ua" in lines[0] and "fix the URI" in lines[0]


async def test_subscription_uses_source_timestamps_and_keeps_every_change(plant: PlantServer) -> None:
    cfg = device(
        plant.endpoint,
        [tag("power", role="power", unit="kW", node_id=node_id("power_kw"), group="fast")],
        groups={"fast": {"publishing_interval": "100ms", "sampling_interval": 0, "queue_size": 50}},
    )
    node = plant.cnc["power_kw"]
    async with OpcUaDriver(cfg) as driver:
        await collect(driver, 0.3)  # the initial value
        # sampled just now (server and agent share a clock here), as a server stamps changes;
        # the driver hands rows out a publishing interval behind, so none is overtaken
        base = datetime.now(UTC) - timedelta(milliseconds=10)
        stamps = [base + timedelta(microseconds=1000 * i + 1) for i in range(8)]
        for i, stamp in enumerate(stamps):  # faster than the publishing interval: the queue keeps them
            dv = ua.DataValue(ua.Variant(100.0 + i, ua.VariantType.Double), SourceTimestamp=stamp)
            await node.write_value(dv)
        batch = await collect(driver, 0.6)
    assert changes(good_values(batch, "power"))[-8:] == [100.0 + i for i in range(8)]
    assert {to_ns(s) for s in stamps} <= set(batch.ts.tolist())  # exact to the microsecond
    assert np.all(np.diff(batch.ts) >= 0)


async def test_deadband_filters_small_changes(plant: PlantServer) -> None:
    cfg = device(
        plant.endpoint,
        [
            tag(
                "sp",
                node_id=node_id("setpoint_kw"),
                mode="subscribe",
                deadband={"type": "absolute", "value": 1.0},
            )
        ],
    )
    node = plant.cnc["setpoint_kw"]
    await node.write_value(10.0)
    async with OpcUaDriver(cfg) as driver:
        await collect(driver, 0.3)
        for value in (10.2, 10.5, 12.0, 12.4, 9.0):
            await node.write_value(value)
            await asyncio.sleep(0.15)
        batch = await collect(driver, 0.3)
    assert changes(good_values(batch, "sp"))[-2:] == [12.0, 9.0]
    assert 10.2 not in good_values(batch, "sp") and 12.4 not in good_values(batch, "sp")


async def test_subscribed_bad_status_arrives_as_bad_nan(plant: PlantServer) -> None:
    cfg = device(plant.endpoint, [tag("t", node_id=node_id("int_setpoint"), mode="subscribe")])
    node = plant.cnc["int_setpoint"]
    await node.write_value(ua.Variant(3, ua.VariantType.Int16))
    async with OpcUaDriver(cfg) as driver:
        initial = await collect(driver, 0.3)
        await set_status(node, ua.StatusCodes.BadDeviceFailure)
        failed = await collect(driver, 0.4)
        await node.write_value(ua.Variant(4, ua.VariantType.Int16))
        recovered = await collect(driver, 0.4)
    assert changes(good_values(initial, "t")) == [3.0]
    # the Bad status holds (with its code) until the next change, like the value did
    last = failed.quality["t"][-3:]
    assert last.tolist() == [Quality.BAD] * 3
    assert math.isnan(failed.values["t"][-1])
    assert int(failed.status["t"][-1]) == ua.StatusCodes.BadDeviceFailure
    assert changes(good_values(recovered, "t"))[-1] == 4.0 and recovered.good("t")[-1]


async def test_poll_and_subscribe_mixed_in_one_device(plant: PlantServer) -> None:
    cfg = device(
        plant.endpoint,
        [
            tag("polled", node_id=node_id("parts")),
            tag("subscribed", node_id=node_id("temperature"), mode="subscribe"),
        ],
    )
    async with OpcUaDriver(cfg) as driver:
        batch = await collect(driver, 0.5, every=0.1)
    assert len(good_values(batch, "polled")) >= 3  # one row per read
    # an unchanged subscribed value is notified once, then held in every read's row
    assert len(good_values(batch, "subscribed")) >= 3
    assert set(good_values(batch, "subscribed")) == {21.5}
    assert np.all(np.diff(batch.ts) >= 0)


async def test_writes_need_writable_and_a_fitting_value(plant: PlantServer) -> None:
    cfg = device(
        plant.endpoint,
        [
            tag("sp", node_id=node_id("setpoint_kw"), writable=True, scale=0.5, offset=2.0),
            tag("isp", node_id=node_id("int_setpoint"), writable=True),
            tag("parts", node_id=node_id("parts")),
        ],
    )
    async with OpcUaDriver(cfg) as driver:
        await driver.write("sp", 7.0)  # engineering 7.0 = raw (7 - 2) / 0.5
        assert await plant.cnc["setpoint_kw"].read_value() == 10.0
        await driver.write("isp", 12)
        assert await plant.cnc["int_setpoint"].read_value() == 12
        with pytest.raises(DeviceExceptionError, match="not a whole number"):
            await driver.write("isp", 1.5)
        with pytest.raises(WriteNotAllowedError, match="writable: true"):
            await driver.write("parts", 0)
        assert await plant.cnc["parts"].read_value() == 17
        read_back = await driver.read()
    assert read_back.values["sp"][0] == pytest.approx(7.0)


async def test_describe_plan_names_endpoint_modes_and_nodes(plant: PlantServer) -> None:
    cfg = device(
        plant.endpoint,
        [
            tag("a", node_id=node_id("parts")),
            tag("b", node_id=node_id("temperature"), group="g", deadband={"type": "percent", "value": 5}),
        ],
        groups={"g": {"publishing_interval": "250ms", "queue_size": 4}},
    )
    plan = OpcUaDriver(cfg).describe_plan()
    assert plant.endpoint in plan
    assert "1 node(s)" in plan and "subscription @ 250 ms" in plan
    assert "deadband percent 5" in plan and "queue 4" in plan
    assert f"nsu={NS};s=cnc1.parts" in plan


async def test_browse_prints_a_tree_and_writes_a_config_that_validates(
    plant: PlantServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await plant.cnc["power_kw"].write_value(12.5)  # earlier tests moved it
    root = await browse(plant.endpoint, depth=4)
    text = tree_text(root)
    assert text.splitlines()[0] == "Objects"
    assert "└── Plant" in text or "├── Plant" in text
    assert f"power_kw  Double = 12.5 rw  [nsu={NS};s=cnc1.power_kw]" in text
    assert "label  String = 'cnc one'" in text
    path = tmp_path / "start.yaml"
    code = await asyncio.to_thread(browse_command, plant.endpoint, depth=4, write_config=path)
    assert code == 0 and "Plant" in capsys.readouterr().out
    config = parse_config(path.read_text(encoding="utf-8"), file=str(path))
    dev = config.devices[0]
    assert isinstance(dev, OpcUaDeviceConfig)
    names = {t.name for t in dev.tags}
    assert {"power_kw", "energy_wh", "parts", "state", "running", "temperature"} <= names
    assert "label" not in names  # not a number
    assert main(["validate", str(path)]) == 0
    async with OpcUaDriver(dev) as driver:
        batch = await driver.read()
    assert batch.values["power_kw"][0] == 12.5 and batch.values["parts"][0] == 17.0


@pytest.mark.parametrize(
    ("bogus", "value"), [(datetime(1601, 1, 1, tzinfo=UTC), 30.0), (datetime(9999, 12, 31, tzinfo=UTC), 31.0)]
)
async def test_impossible_source_timestamps_count_as_missing(
    plant: PlantServer, bogus: datetime, value: float
) -> None:
    cfg = device(
        plant.endpoint,
        [tag("t", role="temperature", unit="degC", node_id=node_id("temperature"))],
        mode="subscribe",
    )
    node = plant.cnc["temperature"]
    async with OpcUaDriver(cfg) as driver:
        await collect(driver, 0.3)
        before = now_ns()
        # 1601 is what servers send for "no source timestamp"; 9999 does not fit int64 ns.
        await node.write_value(ua.DataValue(ua.Variant(value, ua.VariantType.Float), SourceTimestamp=bogus))
        batch = await collect(driver, 0.4)
        after = now_ns()
    first = int(np.flatnonzero(batch.values["t"] == value)[0])
    assert changes(good_values(batch, "t"))[-1] == value
    assert before <= int(batch.ts[first]) <= after  # stamped on arrival


async def test_a_monitored_item_the_server_refuses_reads_bad_and_is_reported(
    plant: PlantServer, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = device(
        plant.endpoint,
        [
            tag("ok", node_id=node_id("parts"), mode="subscribe"),
            tag("missing", node_id=f"nsu={NS};s=cnc1.not_there", mode="subscribe"),
        ],
    )
    async with OpcUaDriver(cfg) as driver:
        batch = await collect(driver, 0.4)
    assert set(good_values(batch, "ok")) == {17.0} and len(good_values(batch, "ok")) >= 2
    assert (batch.quality["missing"][batch.quality["missing"] != Quality.MISSING] == Quality.BAD).all()
    assert (
        int(batch.status["missing"][batch.quality["missing"] == Quality.BAD][0])
        == ua.StatusCodes.BadNodeIdUnknown
    )
    warning = [r.getMessage() for r in caplog.records if "'missing'" in r.getMessage()]
    assert len(warning) == 1 and "refused to monitor it (BadNodeIdUnknown" in warning[0]


async def test_source_clock_off_by_an_hour_never_drops_or_reorders_data(plant: PlantServer) -> None:
    # one time base per device: a source timestamp far ahead or behind the agent's clock is
    # pulled into [last handed out, arrival], so every change arrives, in order
    cfg = device(
        plant.endpoint,
        [
            tag("sp", node_id=node_id("setpoint_kw"), mode="subscribe"),
            tag("polled", node_id=node_id("parts")),
            tag("typo", node_id=f"nsu={NS};s=cnc1.no_such_node", mode="subscribe"),
        ],
    )
    node = plant.cnc["setpoint_kw"]
    async with OpcUaDriver(cfg) as driver:
        first = await collect(driver, 0.3)
        hour = timedelta(hours=1)
        for value, shift in ((50.0, hour), (51.0, -hour), (52.0, hour)):
            stamp = datetime.now(UTC) + shift
            await node.write_value(
                ua.DataValue(ua.Variant(value, ua.VariantType.Double), SourceTimestamp=stamp)
            )
            await asyncio.sleep(0.25)
        batch = await collect(driver, 0.3)
        end = now_ns()
    joined = SampleBatch.concat([first, batch])
    assert changes(good_values(batch, "sp"))[-3:] == [50.0, 51.0, 52.0]
    assert np.all(np.diff(joined.ts) >= 0) and int(joined.ts[-1]) <= end
    # the refused node's Bad filler rows share the real rows' clock: nothing out of order
    typo = joined.quality["typo"]
    assert (typo[typo != Quality.MISSING] == Quality.BAD).all() and (typo == Quality.BAD).sum() >= 3

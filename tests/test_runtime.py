"""Runtime behaviour that every driver gets for free: poll cadence, log-once, Bad gaps, plugins."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from importlib.metadata import EntryPoint
from typing import Literal

import numpy as np
import pytest
from pydantic import Field

from edge_agent.batch import Quality, SampleBatch, now_ns
from edge_agent.config import DeviceConfig, TagConfig
from edge_agent.demo.write_config import PLANT_SIM_CONFIG, render_plant_sim_config
from edge_agent.drivers.base import Driver
from edge_agent.errors import DeviceConnectError, DeviceTimeoutError, PluginError, WriteNotAllowedError
from edge_agent.plugins import load_drivers
from edge_agent.runtime.poller import DevicePoller


class ScriptedConfig(DeviceConfig):
    driver: Literal["scripted"] = "scripted"
    tags: list[TagConfig] = Field(default_factory=list)


class ScriptedDriver(Driver[ScriptedConfig]):
    """Fault injection: a device whose reads follow a script (a real server can't fail on cue)."""

    config_model = ScriptedConfig

    def __init__(self, config: ScriptedConfig, script: list[str]) -> None:
        super().__init__(config)
        self.script = script
        self.connects = 0
        self.value = 0

    async def connect(self) -> None:
        self.connects += 1
        if self.script and self.script[0] == "refuse":
            self.script.pop(0)
            raise DeviceConnectError(self.name, "connection refused by 127.0.0.1:1502")

    async def close(self) -> None:
        pass

    async def read(self) -> SampleBatch:
        step = self.script.pop(0) if self.script else "ok"
        if step == "timeout":
            raise DeviceTimeoutError(self.name, "no answer within 0.1 s")
        if step == "drop":
            raise DeviceConnectError(self.name, "connection reset by peer")
        self.value += 1
        return SampleBatch.single(self.name, now_ns(), {"v": float(self.value)})


def _config(name: str = "dev1", interval: float = 0.02) -> ScriptedConfig:
    return ScriptedConfig(
        name=name,
        poll_interval=interval,
        backoff_max=0.05,
        tags=[TagConfig(name="v", asset="a1")],
    )


async def _run_for(poller: DevicePoller, seconds: float) -> None:
    task = asyncio.create_task(poller.run())
    await asyncio.sleep(seconds)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_failures_become_bad_rows_logged_once_and_polling_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    driver = ScriptedDriver(_config(), ["ok", "timeout", "timeout", "timeout", "drop", "refuse", "ok"])
    got: list[SampleBatch] = []

    async def collect(b: SampleBatch) -> None:
        got.append(b)

    poller = DevicePoller(driver, collect, backoff_initial=0.01)
    with caplog.at_level(logging.DEBUG, logger="edge_agent.poller"):
        await _run_for(poller, 0.6)
    quality = [int(b.quality["v"][0]) for b in got]
    values = [float(b.values["v"][0]) for b in got]
    # 3 timeouts + the drop + the refused reconnect: five Bad rows, each NaN, never a stale value
    assert quality.count(Quality.BAD) == 5
    assert all(np.isnan(v) for v, q in zip(values, quality, strict=True) if q == Quality.BAD)
    good = [v for v, q in zip(values, quality, strict=True) if q == Quality.GOOD]
    assert good == sorted(good) and len(set(good)) == len(good)  # every Good value is fresh
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "dev1" in errors[0].getMessage()
    assert any("recovered" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)
    assert driver.connects >= 3  # the drop forced a reconnect; the refusal forced another
    assert poller.stats.healthy


async def test_a_failing_device_does_not_slow_the_others() -> None:
    slow = ScriptedDriver(_config("broken"), ["refuse"] * 1000)
    fine = ScriptedDriver(_config("fine", interval=0.02), [])
    counts = {"broken": 0, "fine": 0}

    async def collect(b: SampleBatch) -> None:
        counts[b.device] += int((b.quality["v"] == Quality.GOOD).sum())

    limiter = asyncio.Semaphore(1)
    pollers = [DevicePoller(d, collect, limiter=limiter, backoff_initial=0.01) for d in (slow, fine)]
    tasks = [asyncio.create_task(p.run()) for p in pollers]
    await asyncio.sleep(1.0)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert counts["broken"] == 0
    assert counts["fine"] >= 35  # 50 ticks at 20 ms; allow for a loaded CI machine


def test_writes_are_refused_unless_the_tag_is_writable() -> None:
    driver = ScriptedDriver(_config(), [])
    with pytest.raises(WriteNotAllowedError, match="writable: true"):
        driver.check_writable("v")
    with pytest.raises(WriteNotAllowedError, match="unknown tag"):
        driver.check_writable("nope")


def test_builtin_drivers_register_through_entry_points() -> None:
    drivers = load_drivers()
    assert {"modbus", "opcua"} <= set(drivers)
    assert all(issubclass(cls, Driver) for cls in drivers.values())


def test_duplicate_driver_name_is_an_error() -> None:
    eps = [
        EntryPoint("modbus", "edge_agent.drivers.modbus:ModbusDriver", "edge_agent.drivers"),
        EntryPoint("modbus", "tests_plugin:OtherModbus", "edge_agent.drivers"),
    ]
    with pytest.raises(PluginError, match="two driver plugins are named 'modbus'"):
        load_drivers(eps)


def test_broken_plugin_names_itself() -> None:
    eps = [EntryPoint("acme", "acme_missing_module:Driver", "edge_agent.drivers")]
    with pytest.raises(PluginError, match=r"'acme'.*failed to import"):
        load_drivers(eps)


def test_only_the_drivers_a_config_names_are_loaded_and_a_broken_unused_one_does_no_harm() -> None:
    eps = [
        EntryPoint("modbus", "edge_agent.drivers.modbus:ModbusDriver", "edge_agent.drivers"),
        EntryPoint("acme", "acme_missing_module:Driver", "edge_agent.drivers"),
    ]
    from edge_agent.drivers.modbus import ModbusDriver

    assert load_drivers(eps, only={"modbus"}) == {"modbus": ModbusDriver}
    with pytest.raises(PluginError, match=r"'acme'.*failed to import"):
        load_drivers(eps, only={"modbus", "acme"})
    # a name nothing provides loads them all, so the config error can list what is installed
    with pytest.raises(PluginError, match=r"'acme'.*failed to import"):
        load_drivers(eps, only={"siemens"})
    twice = [*eps, EntryPoint("acme", "other:Driver", "edge_agent.drivers")]
    with pytest.raises(PluginError, match="two driver plugins are named 'acme'"):
        load_drivers(twice, only={"modbus"})  # a clash is found without importing either


def test_an_unknown_driver_name_lists_the_installed_ones() -> None:
    from edge_agent.config import parse_config
    from edge_agent.errors import ConfigError

    text = """
assets: [{id: a1, site: s, area: a, line: l, rated_power_kw: 10}]
devices:
  - {name: d1, driver: modbus, host: 127.0.0.1, tags: [{name: p, asset: a1, address: 0}]}
  - {name: d2, driver: siemens, tags: []}
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, file="plant.yaml")
    assert "siemens" in str(info.value) and "opcua" in str(info.value) and "modbus" in str(info.value)


def test_committed_plant_sim_config_matches_the_simulator_catalogue() -> None:
    assert PLANT_SIM_CONFIG.read_text(encoding="utf-8") == render_plant_sim_config(), (
        "configs/plant-sim.yaml is stale: run python -m edge_agent.demo.write_config"
    )


def test_nonfinite_values_are_marked_bad_not_published_as_numbers() -> None:
    batch = SampleBatch(
        device="d",
        ts=np.asarray([1, 2, 3, 4], dtype=np.int64),
        values={"p": np.asarray([1.0, np.nan, np.inf, -np.inf]), "n": np.asarray([1, 2, 3, 4])},
        quality={"p": np.zeros(4, np.uint8), "n": np.zeros(4, np.uint8)},
    )
    fixed = batch.with_nonfinite_bad()
    assert fixed.quality["p"].tolist() == [Quality.GOOD, Quality.BAD, Quality.BAD, Quality.BAD]
    assert fixed.quality["n"].tolist() == [Quality.GOOD] * 4
    clean = SampleBatch.single("d", 1, {"p": 2.0})
    assert clean.with_nonfinite_bad() is clean  # no copy on the hot path when nothing is wrong


class SlowDriver(ScriptedDriver):
    """Reads take longer than the poll interval for the first ``slow`` reads."""

    def __init__(self, config: ScriptedConfig, slow: int, delay: float) -> None:
        super().__init__(config, [])
        self.slow, self.delay = slow, delay

    async def read(self) -> SampleBatch:
        if self.slow > 0:
            self.slow -= 1
            await asyncio.sleep(self.delay)
        return await super().read()


async def test_overrunning_polls_are_counted_as_skipped_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    driver = SlowDriver(_config(interval=0.05), slow=4, delay=0.13)  # each slow read spans 3 ticks

    async def ignore(b: SampleBatch) -> None:
        pass

    poller = DevicePoller(driver, ignore)
    with caplog.at_level(logging.INFO, logger="edge_agent.poller"):
        await _run_for(poller, 1.2)
    st = poller.stats
    assert 8 <= st.skipped_polls <= 12, st  # 4 reads x 2-3 missed ticks each (timing noise)
    assert st.polls >= 10 and st.last_good_poll is not None and st.quality["good"] == st.polls
    warned = [r for r in caplog.records if "skipped" in r.getMessage() and r.levelno == logging.WARNING]
    # once per episode, not per skipped tick nor per slow read (a loaded CI box may add an episode)
    assert 1 <= len(warned) <= 2 and "dev1" in warned[0].getMessage(), [r.getMessage() for r in warned]
    assert any("on time again" in r.getMessage() for r in caplog.records)


async def test_the_poll_queue_never_blocks_and_counts_every_dropped_sample(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from edge_agent.runtime.queue import BatchQueue

    q = BatchQueue(capacity=10)
    with caplog.at_level(logging.WARNING, logger="edge_agent.runtime.queue"):
        for i in range(25):  # one sample each
            q.offer(SampleBatch.single("dev1", i, {"v": float(i)}))
        assert q.stats.depth == 10 and q.stats.dropped_samples == 15 and q.stats.dropped_batches == 15
        got = await q.take_all()
        assert [float(b.values["v"][0]) for b in got] == [float(i) for i in range(15, 25)]  # newest kept
        assert await q.take_all(0.01) == []
    msgs = [r.getMessage() for r in caplog.records]
    assert len([m for m in msgs if "queue is full" in m]) == 1
    assert any("15 samples were dropped" in m for m in msgs)


async def test_stop_never_hangs_on_a_delivery_that_does_not_take_data(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A sink that never returns (policy block, dead sinks) must not hold the stop beyond stop_timeout."""
    from edge_agent.config import AssetConfig, build_config_model
    from edge_agent.runtime.service import Agent

    class Stuck:
        calls = 0

        async def submit(
            self, kind: str, asset: AssetConfig, batch: SampleBatch, *, window: str | None = None
        ) -> None:
            Stuck.calls += 1
            await asyncio.Event().wait()  # never

    config = build_config_model([ScriptedConfig]).model_validate(
        {
            "agent": {"stop_timeout": 0.3},
            "assets": [{"id": "a1", "site": "s", "area": "a", "line": "l", "rated_power_kw": 10}],
            "buffer": {"linger": 0.0},
            "devices": [_config().model_dump()],
        }
    )
    agent = Agent(config, sink=Stuck(), drivers={"scripted": lambda c: ScriptedDriver(c, [])})  # type: ignore[dict-item]
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    await asyncio.sleep(0.3)
    stop.set()
    t0 = asyncio.get_running_loop().time()
    with caplog.at_level(logging.WARNING, logger="edge_agent.agent"):
        await asyncio.wait_for(task, 5)
    assert asyncio.get_running_loop().time() - t0 < 1.5  # two stop_timeouts at most, not forever
    assert Stuck.calls >= 1 and agent.pollers[0].stats.polls >= 5  # polling went on while it was stuck
    assert any("stop_timeout" in r.getMessage() for r in caplog.records)


def test_quality_mix_counts_every_sample_and_reuses_a_read_only_mapping() -> None:
    """The all-Good mapping the Modbus codec reuses is counted in O(1), and exactly."""
    from types import MappingProxyType

    good = np.zeros(2, np.uint8)
    good.flags.writeable = False
    shared = MappingProxyType({"a": good, "b": good})
    ts = np.asarray([1, 2], np.int64)
    vals = {"a": np.zeros(2), "b": np.zeros(2)}
    poller = DevicePoller(ScriptedDriver(_config(), []), _noop)
    for _ in range(3):
        poller._count(SampleBatch(device="dev1", ts=ts, values=vals, quality=shared))
    mixed = {"a": np.asarray([0, 2], np.uint8), "b": np.asarray([1, 3], np.uint8)}
    poller._count(SampleBatch(device="dev1", ts=ts, values=vals, quality=mixed))
    assert poller.stats.quality == {"good": 13, "uncertain": 1, "bad": 1, "missing": 1}
    assert poller.stats.polls == 4


async def _noop(batch: SampleBatch) -> None:
    pass


async def test_rows_of_a_device_removed_by_a_reload_are_dropped_not_crashing_processing() -> None:
    """A poll offered just before a reload removed its device is still in the queue afterwards."""
    from edge_agent.config import AssetConfig, build_config_model
    from edge_agent.runtime.service import Agent

    got: list[str] = []

    class Collect:
        async def submit(
            self, kind: str, asset: AssetConfig, batch: SampleBatch, *, window: str | None = None
        ) -> None:
            got.append(batch.device)

    config = build_config_model([ScriptedConfig]).model_validate(
        {
            "assets": [{"id": "a1", "site": "s", "area": "a", "line": "l", "rated_power_kw": 10}],
            "devices": [_config().model_dump()],
        }
    )
    drivers = {"scripted": lambda c: ScriptedDriver(c, [])}
    agent = Agent(config, sink=Collect(), drivers=drivers, persist_state=False)  # type: ignore[arg-type]
    await agent._handle(SampleBatch.single("removed-dev", now_ns(), {"v": 1.0}))  # no KeyError
    await agent._handle(SampleBatch.single("dev1", now_ns(), {"v": 1.0}))
    assert got == ["dev1"]


class NanDriver(ScriptedDriver):
    """Reads alternate a NaN and a number: a plugin that leaves marking to the runtime."""

    def __init__(self, config: ScriptedConfig) -> None:
        super().__init__(config, [])

    async def read(self) -> SampleBatch:
        self.value += 1
        return SampleBatch.single(self.name, now_ns(), {"v": np.nan if self.value % 2 else 1.0})


class NanMarkingDriver(NanDriver):
    """Declares that it marks non-finite values itself (here falsely): the runtime takes its word."""

    marks_nonfinite = True


@pytest.mark.parametrize(("cls", "checked"), [(NanDriver, True), (NanMarkingDriver, False)])
async def test_the_runtime_marks_a_plugins_nan_bad_unless_the_driver_says_it_does(
    cls: type[NanDriver], checked: bool
) -> None:
    from edge_agent.config import AssetConfig, build_config_model
    from edge_agent.runtime.service import Agent

    got: list[SampleBatch] = []
    enough = asyncio.Event()

    class Collect:
        async def submit(
            self, kind: str, asset: AssetConfig, batch: SampleBatch, *, window: str | None = None
        ) -> None:
            if kind == "raw":
                got.append(batch)
                if sum(map(len, got)) >= 6:
                    enough.set()

    config = build_config_model([ScriptedConfig]).model_validate(
        {
            "assets": [{"id": "a1", "site": "s", "area": "a", "line": "l", "rated_power_kw": 10}],
            "buffer": {"linger": 0.0},
            "devices": [_config().model_dump()],
        }
    )
    agent = Agent(config, sink=Collect(), drivers={"scripted": cls}, persist_state=False)  # type: ignore[dict-item]
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    await asyncio.wait_for(enough.wait(), 10)
    stop.set()
    await asyncio.wait_for(task, 10)
    values = np.concatenate([b.values["v"] for b in got])
    quality = np.concatenate([b.quality["v"] for b in got])
    nan = np.isnan(values)
    assert nan.any() and (~nan).any()
    assert (quality[~nan] == Quality.GOOD).all()
    assert (quality[nan] == (Quality.BAD if checked else Quality.GOOD)).all()


async def test_a_long_analytics_round_yields_so_other_devices_keep_their_cadence() -> None:
    """Acquisition apart from processing: a device round of many assets whose analytics take
    a whole second must not hold the event loop, or every other device skips polls."""
    import time

    from edge_agent.config import AssetConfig, build_config_model
    from edge_agent.runtime.service import Agent

    class Collect:
        async def submit(
            self, kind: str, asset: AssetConfig, batch: SampleBatch, *, window: str | None = None
        ) -> None:
            pass

    class WideDriver(ScriptedDriver):
        """One value per asset, like a PLC serving a whole line."""

        async def read(self) -> SampleBatch:
            return SampleBatch.single(self.name, now_ns(), {t.name: 1.0 for t in self.config.tags})

    n = 100
    wide = ScriptedConfig(
        name="line", poll_interval=0.5, tags=[TagConfig(name=f"v{i}", asset=f"a{i}") for i in range(n)]
    )
    fast = _config("fast", interval=0.05)
    config = build_config_model([ScriptedConfig]).model_validate(
        {
            "assets": [
                {"id": f"a{i}", "site": "s", "area": "a", "line": "l", "rated_power_kw": 10} for i in range(n)
            ],
            "buffer": {"linger": 0.0},
            "devices": [wide.model_dump(), fast.model_dump()],
        }
    )
    drivers = {"scripted": lambda c: (WideDriver if c.name == "line" else ScriptedDriver)(c, [])}
    agent = Agent(config, sink=Collect(), drivers=drivers, persist_state=False)  # type: ignore[dict-item]
    busy = 0.0

    def slow_update(route: object, part: SampleBatch) -> list[object]:
        nonlocal busy
        time.sleep(0.005)  # 5 ms of CPU-bound analytics per asset: 0.5 s a round of the line
        busy += 0.005
        return []

    agent.analytics.update = slow_update  # type: ignore[assignment,method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    await asyncio.sleep(2.5)
    stop.set()
    await asyncio.wait_for(task, 10)
    stats = {p.name: p.stats for p in agent.pollers}
    assert busy >= 1.0  # the loop really was busy most of the time
    assert stats["fast"].polls >= 35  # 2.5 s at 0.05 s, start-up aside
    assert stats["fast"].skipped_polls <= 2, stats["fast"]


async def test_polls_wait_the_linger_only_when_another_poll_of_the_device_can_join_them() -> None:
    """A device polled faster than ``buffer.linger`` has its polls joined into one record; one
    polled no faster goes out at once: its next poll could not join within the linger, and
    waiting for it only made every sample ``linger`` older."""
    import time

    from edge_agent.config import AssetConfig, build_config_model
    from edge_agent.runtime.service import Agent

    linger = 0.25
    seen: dict[str, list[tuple[int, float]]] = {"slow": [], "fast": []}  # (rows, age in s)

    class Collect:
        async def submit(
            self, kind: str, asset: AssetConfig, batch: SampleBatch, *, window: str | None = None
        ) -> None:
            if kind == "raw":
                seen[batch.device].append((len(batch), (time.time_ns() - int(batch.ts[0])) / 1e9))

    slow = _config("slow", interval=0.3)
    fast = _config("fast", interval=0.05).model_copy(update={"tags": [TagConfig(name="v", asset="a2")]})
    config = build_config_model([ScriptedConfig]).model_validate(
        {
            "assets": [
                {"id": a, "site": "s", "area": "a", "line": "l", "rated_power_kw": 10} for a in ("a1", "a2")
            ],
            "buffer": {"linger": linger},
            "devices": [slow.model_dump(), fast.model_dump()],
        }
    )
    drivers = {"scripted": lambda c: ScriptedDriver(c, [])}
    agent = Agent(config, sink=Collect(), drivers=drivers, persist_state=False)  # type: ignore[dict-item]
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    for _ in range(100):  # until each device has several records
        await asyncio.sleep(0.1)
        if len(seen["slow"]) >= 6 and len(seen["fast"]) >= 6:
            break
    stop.set()
    await asyncio.wait_for(task, 10)
    slow_ages = sorted(age for _, age in seen["slow"])
    assert all(rows == 1 for rows, _ in seen["slow"]), seen["slow"]
    # waiting the linger made every age at least the linger; now the median is well below it
    assert slow_ages[len(slow_ages) // 2] < linger / 2, slow_ages
    fast_rows = [rows for rows, _ in seen["fast"][:-1]]  # the last may be cut short by the stop
    assert max(fast_rows) >= 3 and sum(fast_rows) / len(fast_rows) >= 2, fast_rows  # joined


class CancelSwallowingDriver(ScriptedDriver):
    """Fault injection: a read that loses its cancellation, as Python 3.11's ``asyncio.wait_for``
    (inside pymodbus and asyncua) does when the cancel lands as the awaited answer arrives."""

    def __init__(self, config: ScriptedConfig, script: list[str]) -> None:
        super().__init__(config, script)
        self.reading = asyncio.Event()

    async def read(self) -> SampleBatch:
        self.reading.set()
        # the answer (or the link error) "arrives" with the cancel: wait_for returns it
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(1.0)
        return await super().read()


@pytest.mark.parametrize("answer", ["ok", "drop"])
async def test_a_poller_stops_when_cancelled_even_if_its_driver_swallowed_the_cancel(answer: str) -> None:
    driver = CancelSwallowingDriver(_config(), [answer] * 100)
    task = asyncio.create_task(DevicePoller(driver, _noop, backoff_initial=0.01).run())
    await driver.reading.wait()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2.0)  # it polled on (and a stop hung) before
    task.cancel()
    assert done and task.cancelled(), f"the poller ran on after its cancel ({driver.value} good reads)"

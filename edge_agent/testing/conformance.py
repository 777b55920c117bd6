"""Checks every driver must pass, whoever wrote it.

Integrators subclass :class:`DriverConformance` in their own test suite and provide three
fixtures: ``driver_class``, ``device_config`` (a config for a reachable device with at
least one read-only tag) and ``unreachable_config`` (a config for a device that cannot be
reached, e.g. a closed port). pytest then runs the whole contract against their driver:
batches well-formed, quality honest, writes refused, reconnect safe, errors name the device.

A missing fixture fails with a message saying what to add: a kit that skips a check
silently would pass a driver that crashes the agent the first time its device is down.
The guide with a complete example is docs/tutorials/write-a-driver-plugin.md.
"""

from __future__ import annotations

__all__ = ["DriverConformance", "check_batch"]

import time
import typing
from typing import Any

import numpy as np
import pytest

from edge_agent.batch import Quality, SampleBatch
from edge_agent.config import DeviceConfig
from edge_agent.drivers.base import Driver
from edge_agent.errors import DriverError, WriteNotAllowedError

_CLOCK_SLACK_NS = 300 * 1_000_000_000  # source timestamps may lag; five minutes is plenty


def check_batch(batch: SampleBatch, config: DeviceConfig) -> None:
    """Assert one batch obeys the SampleBatch contract for this device's config."""
    assert isinstance(batch, SampleBatch), f"read() returned {type(batch).__name__}, not SampleBatch"
    assert batch.device == config.name, f"batch.device {batch.device!r} != config name {config.name!r}"
    tags = {t.name: t for t in config.tag_configs()}
    unknown = set(batch.tags) - set(tags)
    assert not unknown, f"batch carries tags not in the config: {sorted(unknown)}"
    if len(batch):
        now = time.time_ns()
        assert np.all(batch.ts > now - 10 * 365 * 86400 * 10**9), "timestamps must be ns since the epoch"
        assert np.all(batch.ts < now + _CLOCK_SLACK_NS), "timestamps lie in the future"
    for name, values in batch.values.items():
        q = batch.quality[name]
        assert q.dtype == np.uint8, f"tag {name!r}: quality must be uint8, got {q.dtype}"
        assert np.all(q <= Quality.MISSING), f"tag {name!r}: unknown quality codes {np.unique(q)}"
        usable = q <= Quality.UNCERTAIN
        if tags[name].is_counter:
            assert np.issubdtype(values.dtype, np.integer), (
                f"tag {name!r}: counters must stay exact integers, got {values.dtype}"
            )
        elif np.issubdtype(values.dtype, np.floating):
            bad = ~usable
            assert np.all(np.isnan(values[bad])), (
                f"tag {name!r}: a Bad or Missing sample must carry NaN, never a stale number"
            )


class DriverConformance:
    """Base test class: the driver contract. Provide ``driver_class`` and ``device_config``."""

    reads: typing.ClassVar[int] = 3

    @pytest.fixture
    def driver_class(self) -> type[Driver[Any]]:
        pytest.fail(
            f"{type(self).__name__}: add a 'driver_class' fixture returning your Driver subclass.",
            pytrace=False,
        )

    @pytest.fixture
    def device_config(self) -> DeviceConfig:
        pytest.fail(
            f"{type(self).__name__}: add a 'device_config' fixture returning your config model for "
            "a reachable device with at least one read-only tag.",
            pytrace=False,
        )

    @pytest.fixture
    def unreachable_config(self) -> DeviceConfig:
        pytest.fail(
            f"{type(self).__name__}: add an 'unreachable_config' fixture returning a config for a "
            "device that cannot be reached (e.g. a closed port on 127.0.0.1 and a short timeout). "
            "The kit needs it to check that a failed connection raises a DriverError naming the "
            "device instead of crashing the agent.",
            pytrace=False,
        )

    def test_config_model_is_discriminated(self, driver_class: type[Driver[Any]]) -> None:
        model = driver_class.config_model
        assert issubclass(model, DeviceConfig)
        annotation = model.model_fields["driver"].annotation
        assert typing.get_origin(annotation) is typing.Literal, (
            "config_model.driver must be Literal['<entry-point name>'] so configs select the driver"
        )

    def test_config_round_trips(self, driver_class: type[Driver[Any]], device_config: DeviceConfig) -> None:
        model = driver_class.config_model
        again = model.model_validate(device_config.model_dump())
        assert again == device_config

    @pytest.mark.asyncio
    async def test_reads_well_formed_batches(
        self, driver_class: type[Driver[Any]], device_config: DeviceConfig
    ) -> None:
        got = 0
        async with driver_class(device_config) as driver:
            for _ in range(self.reads):
                batch = await driver.read()
                check_batch(batch, device_config)
                got += int(sum(int(np.sum(q <= Quality.UNCERTAIN)) for q in batch.quality.values()))
        assert got > 0, "a reachable device produced no usable sample in several reads"

    @pytest.mark.asyncio
    async def test_reenter_after_close(
        self, driver_class: type[Driver[Any]], device_config: DeviceConfig
    ) -> None:
        driver = driver_class(device_config)
        async with driver:
            check_batch(await driver.read(), device_config)
        await driver.close()  # a second close must be harmless
        async with driver:  # the runtime re-enters the same instance after a connection loss
            check_batch(await driver.read(), device_config)

    @pytest.mark.asyncio
    async def test_writes_refused_unless_writable(
        self, driver_class: type[Driver[Any]], device_config: DeviceConfig
    ) -> None:
        readonly = [t for t in device_config.tag_configs() if not t.writable]
        assert readonly, "give device_config at least one tag without 'writable: true'"
        async with driver_class(device_config) as driver:
            with pytest.raises(WriteNotAllowedError):
                await driver.write(readonly[0].name, 1.0)

    def test_describes_its_plan(self, driver_class: type[Driver[Any]], device_config: DeviceConfig) -> None:
        plan = driver_class(device_config).describe_plan()
        assert isinstance(plan, str) and device_config.name in plan

    @pytest.mark.asyncio
    async def test_unreachable_device_raises_driver_error(
        self, driver_class: type[Driver[Any]], unreachable_config: DeviceConfig
    ) -> None:
        driver = driver_class(unreachable_config)
        with pytest.raises(DriverError) as info:
            async with driver:
                await driver.read()
                pytest.fail(
                    f"device {unreachable_config.name!r} is unreachable, but connect() and read() "
                    "did not raise: raise DeviceConnectError(self.name, 'why, in plain words')",
                    pytrace=False,
                )
        assert unreachable_config.name in str(info.value), (
            f"errors must name the device {unreachable_config.name!r}; got {info.value!s}. "
            "Pass the device name first: DeviceConnectError(self.name, message)"
        )

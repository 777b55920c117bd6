"""ModbusDriver against a real pymodbus server: splits, stale data, writes, error messages, plugin."""

from __future__ import annotations

import itertools
import math
import struct
from typing import Any

import numpy as np
import pytest
from modbus_cases.harness import PlantServer, free_port, serve
from pymodbus.client import AsyncModbusTcpClient

from edge_agent.batch import Cause, Quality, SampleBatch
from edge_agent.drivers.modbus import ModbusDeviceConfig, ModbusDriver, describe_code
from edge_agent.errors import (
    DeviceConnectError,
    DeviceExceptionError,
    DeviceTimeoutError,
    WriteNotAllowedError,
)
from edge_agent.plugins import ENTRY_POINT_GROUP, load_drivers


def device(port: int, tags: list[dict[str, Any]], **extra: Any) -> ModbusDeviceConfig:
    return ModbusDeviceConfig.model_validate(
        {"name": "dev", "driver": "modbus", "host": "127.0.0.1", "port": port, "tags": tags, **extra}
    )


def tag(name: str, address: int, **kw: Any) -> dict[str, Any]:
    return {"name": name, "asset": "m1", "address": address, **kw}


def test_describe_code_names_the_exception() -> None:
    assert describe_code(2) == "0x02 ILLEGAL DATA ADDRESS"
    assert describe_code(0x0B) == "0x0B GATEWAY TARGET DEVICE FAILED TO RESPOND"
    assert describe_code(0x42) == "0x42 UNKNOWN EXCEPTION"


def test_registered_as_the_modbus_entry_point() -> None:
    from importlib.metadata import entry_points

    eps = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == "modbus"]
    assert load_drivers(eps) == {"modbus": ModbusDriver}
    assert ModbusDriver.config_model is ModbusDeviceConfig


async def test_refused_register_in_a_filled_gap_costs_no_tag() -> None:
    async with serve({1: {"holding": {0: list(range(100, 140))}}}) as srv:
        srv.faults[1].refuse[("holding", 17)] = 2  # not a tag's register, but inside the filled gap
        drv = ModbusDriver(device(srv.port, [tag(f"t{a}", a) for a in range(0, 40, 3)]))
        assert len(drv.requests) == 1
        async with drv:
            first = await drv.read()
            before = srv.faults[1].reads
            second = await drv.read()
            second_reads = srv.faults[1].reads - before
    for b in (first, second):
        assert all(b.quality[n][0] == Quality.GOOD for n in b.tags)
        assert [int(b.values[f"t{a}"][0]) for a in range(0, 40, 3)] == list(range(100, 140, 3))
    assert all(not (r.start <= 17 < r.end) for r in drv.requests)  # the bad register is avoided
    assert second_reads == len(drv.requests) > 1  # splits are remembered, not rediscovered
    assert (
        f"in {len(drv.requests)} request(s) per poll ({len(drv.requests) - 1} more after learned splits)"
        in (drv.describe_plan())
    )


async def test_refused_tag_register_only_that_tag_goes_bad_then_recovers() -> None:
    async with serve({1: {"holding": {0: list(range(100, 140))}}}) as srv:
        srv.faults[1].refuse[("holding", 15)] = 2
        drv = ModbusDriver(device(srv.port, [tag(f"t{a}", a) for a in range(0, 40, 3)]))
        async with drv:
            polls = [await drv.read() for _ in range(4)]
            srv.faults[1].refuse.clear()  # e.g. the device's map was extended
            polls += [await drv.read() for _ in range(4)]
    for b in polls[:4]:
        bad = {n for n in b.tags if b.quality[n][0] != Quality.GOOD}
        assert bad == {"t15"}
        assert math.isnan(b.values["t15"][0]) and b.status["t15"][0] == 2
        assert b.values["t12"][0] == 112 and b.values["t18"][0] == 118  # neighbours keep values
    assert polls[-1].quality["t15"][0] == Quality.GOOD and polls[-1].values["t15"][0] == 115
    assert polls[-1].status == {}


async def test_device_that_rejects_large_reads_is_bisected_to_what_it_accepts() -> None:
    async with serve({1: {"holding": {0: list(range(120))}}}) as srv:
        srv.faults[1].max_count = 16  # answers 0x03 ILLEGAL DATA VALUE above 16 registers
        drv = ModbusDriver(device(srv.port, [tag(f"r{a}", a) for a in range(120)]))
        async with drv:
            batch = await drv.read()
    assert [int(batch.values[f"r{a}"][0]) for a in range(120)] == list(range(120))
    assert all(r.count <= 16 for r in drv.requests)
    assert all(q[0] == Quality.GOOD for q in batch.quality.values())


async def test_every_request_refused_is_a_device_error_with_code_and_register() -> None:
    async with serve({1: {"holding": {0: [1, 2]}}}) as srv:
        drv = ModbusDriver(device(srv.port, [tag("x", 40)]))  # no such register
        async with drv:
            with pytest.raises(DeviceExceptionError) as info:
                await drv.read()
    text = str(info.value)
    assert info.value.code == 2 and info.value.device == "dev"
    assert f"tcp 127.0.0.1:{srv.port} unit 1" in text
    assert "holding 40..40 (tag x)" in text and "0x02 ILLEGAL DATA ADDRESS" in text


async def test_good_samples_are_never_stale() -> None:
    async with serve({1: {"holding": {0: [0], 5: [5]}}}) as srv:
        srv.faults[1].counter_address = 0  # the server increments it on every read
        drv = ModbusDriver(device(srv.port, [tag("seq", 0), tag("other", 5)], max_gap=0))
        async with drv:
            seqs = []
            for i in range(6):
                srv.faults[1].refuse = {("holding", 0): 4} if i in (2, 3) else {}
                b = await drv.read()
                seqs.append((int(b.quality["seq"][0]), b.values["seq"][0]))
                assert b.quality["other"][0] == Quality.GOOD and b.values["other"][0] == 5
    good = [v for q, v in seqs if q == Quality.GOOD]
    assert [q for q, _ in seqs] == [
        Quality.GOOD,
        Quality.GOOD,
        Quality.BAD,
        Quality.BAD,
        Quality.GOOD,
        Quality.GOOD,
    ]
    assert all(b > a for a, b in itertools.pairwise(good))
    assert all(math.isnan(v) for q, v in seqs if q == Quality.BAD)


async def test_connect_failure_names_the_endpoint() -> None:
    port = free_port()  # nothing listens here
    drv = ModbusDriver(device(port, [tag("x", 0)], timeout="300ms"))
    with pytest.raises(DeviceConnectError) as info:
        await drv.connect()
    assert f"tcp 127.0.0.1:{port} unit 1" in str(info.value) and "dev" in str(info.value)
    with pytest.raises(DeviceConnectError):
        await drv.read()  # not connected: the runtime reconnects, never reads garbage
    await drv.close()
    await drv.close()  # safe twice


# -- writes -------------------------------------------------------------------------------------


async def test_writes_are_refused_unless_the_tag_is_writable() -> None:
    async with serve({1: {"holding": {0: [7]}}}) as srv:
        drv = ModbusDriver(device(srv.port, [tag("setpoint", 0)]))
        async with drv:
            with pytest.raises(WriteNotAllowedError, match="writable: true"):
                await drv.write("setpoint", 3)
            with pytest.raises(WriteNotAllowedError, match="unknown tag 'nope'"):
                await drv.write("nope", 3)
            assert (await drv.read()).values["setpoint"][0] == 7  # untouched
        assert srv.faults[1].reads == 1  # nothing but the read reached the device


async def test_writes_encode_with_the_same_codec_and_read_back() -> None:
    regs = {"holding": {0: [0] * 20}, "coil": {0: [0] * 8}}
    tags = [
        tag("sp", 0, data_type="float32", byte_order="CDAB", scale=0.5, offset=10, writable=True),
        tag("limit", 2, data_type="int32", byte_order="DCBA", writable=True),
        tag("mode", 4, writable=True),
        tag("flag", 5, data_type="bool", bit=9, writable=True),
        tag("flags", 5),
        tag("label", 6, data_type="string", length=3, byte_order="BA", writable=True),
        tag("big", 10, data_type="float64", byte_order="GHEFCDAB", writable=True),
        tag("run", 3, register="coil", writable=True),
    ]
    async with serve({1: regs}) as srv:
        drv = ModbusDriver(device(srv.port, tags))
        async with drv:
            await drv.write("sp", 13.5)  # raw (13.5 - 10) / 0.5 = 7.0
            await drv.write("limit", -123456)
            await drv.write("mode", 513)
            await drv.write("flag", True)
            await drv.write("label", "ABCDE")
            await drv.write("big", -2.5e-300)
            await drv.write("run", 1)
            back = await drv.read()
            await drv.write("flag", False)
            cleared = await drv.read()
        # an independent reader: pymodbus's own client, raw registers decoded with struct
        raw = AsyncModbusTcpClient("127.0.0.1", port=srv.port)
        await raw.connect()
        words = (await raw.read_holding_registers(0, count=14, device_id=1)).registers
        coils = (await raw.read_coils(0, count=8, device_id=1)).bits
        raw.close()
    wire = b"".join(w.to_bytes(2, "big") for w in words)
    assert struct.unpack(">f", wire[2:4] + wire[0:2])[0] == 7.0  # CDAB
    assert struct.unpack("<i", wire[4:8])[0] == -123456  # DCBA is little-endian
    assert words[4] == 513
    assert wire[12:18] == b"BADC\x00E"  # BA: bytes swapped within each register
    assert struct.unpack(">d", wire[26:28] + wire[24:26] + wire[22:24] + wire[20:22])[0] == -2.5e-300
    assert coils[3] is True and coils[:3] == [False] * 3
    assert back.values["sp"][0] == 13.5 and back.values["limit"][0] == -123456
    assert back.values["label"][0] == "ABCDE" and back.values["big"][0] == -2.5e-300
    assert back.values["flag"][0] == 1.0 and back.values["flags"][0] == 1 << 9
    assert back.values["run"][0] == 1.0
    assert cleared.values["flag"][0] == 0.0 and cleared.values["flags"][0] == 0


async def test_bit_write_keeps_the_other_bits_of_the_register() -> None:
    async with serve({1: {"holding": {0: [0b1010_0000_0000_0101]}}}) as srv:
        drv = ModbusDriver(
            device(srv.port, [tag("b1", 0, data_type="bool", bit=1, writable=True), tag("w", 0)])
        )
        async with drv:
            await drv.write("b1", 1)
            assert (await drv.read()).values["w"][0] == 0b1010_0000_0000_0111


@pytest.mark.parametrize(
    ("spec", "value", "message"),
    [
        (tag("i", 0, data_type="int16", writable=True), 40000, "outside int16 range -32768..32767"),
        (tag("u", 0, writable=True, scale=0.1), -1, "outside uint16 range 0..65535"),
        (tag("f", 0, data_type="float32", writable=True), 1e39, "overflows float32"),
        (tag("b", 0, register="coil", writable=True), 2, "a bool takes 0/1"),
        (tag("s", 0, data_type="string", length=1, writable=True), "ABC", "needs 3 bytes, the tag holds 2"),
        (tag("n", 0, writable=True), "12", "expected a number"),
        (tag("c", 0, writable=True, data_type="uint16"), float("nan"), "outside uint16 range"),
    ],
)
async def test_out_of_range_writes_are_refused_before_sending(
    spec: dict[str, Any], value: Any, message: str
) -> None:
    async with serve({1: {"holding": {0: [1]}, "coil": {0: [0]}}}) as srv:
        drv = ModbusDriver(device(srv.port, [spec]))
        async with drv:
            with pytest.raises(ValueError, match=message) as info:
                await drv.write(spec["name"], value)
        assert f"device 'dev' tag {spec['name']!r}" in str(info.value)
        assert srv.faults[1].reads == 0


async def test_a_refused_write_raises_with_the_exception_code() -> None:
    async with serve({1: {"holding": {0: [1]}}}) as srv:
        srv.faults[1].refuse[("holding", 0)] = 4
        drv = ModbusDriver(device(srv.port, [tag("x", 0, writable=True)]))
        async with drv:
            with pytest.raises(DeviceExceptionError, match="0x04 SERVER DEVICE FAILURE") as info:
                await drv.write("x", 5)
    assert info.value.code == 4 and "write holding 0 (tag x)" in str(info.value)


async def test_counter_values_are_exact_integers() -> None:
    big = 2**53 + 1  # not representable as float64
    words = [(big >> s) & 0xFFFF for s in (48, 32, 16, 0)]
    async with serve({1: {"holding": {0: words}}}) as srv:
        spec = tag("e", 0, data_type="uint64", role="energy_counter", unit="kWh", scale=0.001)
        drv = ModbusDriver(device(srv.port, [spec]))
        async with drv:
            b = await drv.read()
    assert b.values["e"].dtype == np.uint64 and int(b.values["e"][0]) == big


def test_plan_is_compiled_without_an_event_loop() -> None:
    # `edge-agent validate --plan` builds drivers outside asyncio
    drv = ModbusDriver(device(502, [tag("x", 0)], transport="rtu_over_tcp"))
    assert "rtu_over_tcp 127.0.0.1:502 unit 1" in drv.describe_plan()


_ = PlantServer  # re-exported for readers of this module


@pytest.mark.parametrize(
    ("line", "gap"),
    [
        ({"transport": "tcp", "host": "h"}, 0.0),
        ({"transport": "serial", "serial_port": "/dev/ttyS0", "baudrate": 9600}, 3.5 * 11 / 9600),
        ({"transport": "serial", "serial_port": "/dev/ttyS0", "baudrate": 115200}, 0.00175),
        ({"transport": "rtu_over_tcp", "host": "h"}, 0.00175),
        ({"transport": "serial", "serial_port": "/dev/ttyS0", "inter_frame_delay": "20ms"}, 0.02),
    ],
)
def test_inter_frame_delay_defaults_to_three_and_a_half_characters(line: dict[str, Any], gap: float) -> None:
    cfg = ModbusDeviceConfig.model_validate({"name": "d", "driver": "modbus", **line})
    assert cfg.frame_gap == pytest.approx(gap, rel=1e-12)


@pytest.mark.parametrize(("code", "error"), [(0x0B, DeviceTimeoutError), (0x0A, DeviceExceptionError)])
async def test_gateway_exceptions_fail_the_whole_poll(code: int, error: type[Exception]) -> None:
    async with serve({1: {"holding": {0: [1, 2]}}}) as srv:
        srv.faults[1].refuse[("holding", 1)] = code
        drv = ModbusDriver(device(srv.port, [tag("a", 0), tag("b", 1)]))
        async with drv:
            with pytest.raises(error, match=f"gateway replied 0x{code:02X}"):
                await drv.read()
    assert len(drv.requests) == 1  # not mistaken for a bad address: nothing was split


@pytest.mark.parametrize("seed", range(6))
async def test_driver_marks_every_nonfinite_float_itself_as_the_runtime_would(seed: int) -> None:
    """``marks_nonfinite``: the runtime skips its own check of Modbus batches, so the driver's
    marking must equal it for every tag, float32/float64 in any byte order, beside integer tags
    and a refused register (Bad for its own reason, status the exception code)."""
    rng = np.random.default_rng(seed)
    words = rng.integers(0, 2**16, 120).astype(np.int64)
    kinds = ["float32", "float32", "uint32", "int16"]
    tags = []
    for a in range(0, 120, 4):
        dt = "float64" if a >= 80 else kinds[(a // 4) % 4]
        order = "ABCD" if dt == "int16" else str(rng.choice(["ABCD", "CDAB"]))
        tags.append(tag(f"t{a}", a, data_type=dt, byte_order=order))
        n = {"float32": 2, "float64": 4}.get(dt, 0)
        if n and rng.random() < 0.4:  # exponent all ones in every word: NaN whatever the order
            words[a : a + n] |= 0x7F80 if n == 2 else 0x7FF0
            if n == 2 and order == "ABCD" and rng.random() < 0.4:
                words[a : a + 2] = [int(rng.choice([0x7F80, 0xFF80])), 0]  # +Inf or -Inf
    refused = 4 * int(rng.integers(0, 20))
    async with serve({1: {"holding": {0: words.tolist()}}}) as srv:
        srv.faults[1].refuse[("holding", refused)] = 2
        drv = ModbusDriver(device(srv.port, tags))
        async with drv:
            batch = await drv.read()
    assert ModbusDriver.marks_nonfinite
    # the runtime's reference: the same batch with only the refused tag's marking
    marked = {t for t, s in batch.status.items() if s[0] == Cause.NONFINITE}
    plain_quality = {t: np.zeros(1, np.uint8) if t in marked else q for t, q in batch.quality.items()}
    plain_status = {t: s for t, s in batch.status.items() if t not in marked}
    plain = SampleBatch.trusted(batch.device, batch.ts, batch.values, plain_quality, plain_status)
    want = plain.with_nonfinite_bad()
    hits = 0
    for t in batch.tags:
        assert batch.quality[t][0] == want.quality[t][0], t
        assert int(batch.status.get(t, [0])[0]) == int(want.status.get(t, [0])[0]), t
        v = batch.values[t][0]
        hits += batch.values[t].dtype.kind == "f" and not math.isfinite(v) and t != f"t{refused}"
    assert hits >= 3  # the case is not vacuous
    assert int(batch.status[f"t{refused}"][0]) == 2 and batch.quality[f"t{refused}"][0] == Quality.BAD

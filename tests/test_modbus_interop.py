"""Interoperability: the driver against pyModbusTCP's server, registers written by pyModbusTCP's encoders.

A second Modbus implementation guards against the driver and its own test server sharing a
misunderstanding of the byte layouts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from modbus_cases.harness import free_port
from pyModbusTCP import utils
from pyModbusTCP.server import DataBank, ModbusServer

from edge_agent.batch import Quality
from edge_agent.drivers.modbus import ModbusDeviceConfig, ModbusDriver


@pytest.fixture
def other_server() -> Iterator[tuple[ModbusServer, DataBank, int]]:
    port = free_port()
    bank = DataBank()
    server = ModbusServer(host="127.0.0.1", port=port, no_block=True, data_bank=bank)
    server.start()
    try:
        yield server, bank, port
    finally:
        server.stop()


def tags() -> list[dict[str, Any]]:
    def t(name: str, address: int, **kw: Any) -> dict[str, Any]:
        return {"name": name, "asset": "m", "address": address, **kw}

    return [
        t("f_abcd", 0, data_type="float32"),
        t("f_cdab", 2, data_type="float32", byte_order="CDAB"),
        t("d_abcd", 4, data_type="float64"),
        t("d_ghef", 8, data_type="float64", byte_order="GHEFCDAB"),
        t("i32", 12, data_type="int32"),
        t("u32", 14, data_type="uint32", role="energy_counter", unit="kWh"),
        t("i16", 16, data_type="int16"),
        t("i64", 17, data_type="int64", role="part_counter", unit="parts"),
        t("ir", 3, register="input", data_type="float32"),
        t("c5", 5, register="coil"),
        t("di7", 7, register="discrete_input"),
        t("w_f", 30, data_type="float32", byte_order="CDAB", writable=True),
        t("w_d", 32, data_type="float64", writable=True),
    ]


async def test_values_encoded_by_pymodbustcp(other_server: tuple[ModbusServer, DataBank, int]) -> None:
    _, bank, port = other_server
    f32, f64 = -123.456, 2.718281828459045
    bank.set_holding_registers(0, utils.long_list_to_word([utils.encode_ieee(f32)]))
    bank.set_holding_registers(2, utils.long_list_to_word([utils.encode_ieee(f32)], big_endian=False))
    bank.set_holding_registers(
        4, utils.long_list_to_word([utils.encode_ieee(f64, double=True)], long_long=True)
    )
    bank.set_holding_registers(
        8, utils.long_list_to_word([utils.encode_ieee(f64, double=True)], big_endian=False, long_long=True)
    )
    bank.set_holding_registers(12, utils.long_list_to_word([utils.get_2comp(-123456, 32)]))
    bank.set_holding_registers(14, utils.long_list_to_word([4_000_000_000]))
    bank.set_holding_registers(16, [utils.get_2comp(-5, 16)])
    bank.set_holding_registers(
        17, utils.long_list_to_word([utils.get_2comp(-(2**40) - 3, 64)], long_long=True)
    )
    bank.set_input_registers(3, utils.long_list_to_word([utils.encode_ieee(0.1)]))
    bank.set_coils(5, [True])
    bank.set_discrete_inputs(7, [True])

    cfg = ModbusDeviceConfig.model_validate(
        {"name": "other", "driver": "modbus", "host": "127.0.0.1", "port": port, "tags": tags()}
    )
    async with ModbusDriver(cfg) as drv:
        b = await drv.read()
        await drv.write("w_f", 42.25)
        await drv.write("w_d", -1e-10)

    assert all(q[0] == Quality.GOOD for q in b.quality.values())
    assert b.values["f_abcd"][0] == np.float32(f32) and b.values["f_cdab"][0] == np.float32(f32)
    assert b.values["d_abcd"][0] == f64 and b.values["d_ghef"][0] == f64
    assert b.values["i32"][0] == -123456 and b.values["i16"][0] == -5
    assert int(b.values["u32"][0]) == 4_000_000_000 and b.values["u32"].dtype == np.int64
    assert int(b.values["i64"][0]) == -(2**40) - 3
    assert b.values["ir"][0] == np.float32(0.1)
    assert b.values["c5"][0] == 1.0 and b.values["di7"][0] == 1.0
    # and the other way round: our writes, decoded by pyModbusTCP
    words = bank.get_holding_registers(30, 6)
    assert utils.decode_ieee(utils.word_list_to_long(words[:2], big_endian=False)[0]) == 42.25
    assert utils.decode_ieee(utils.word_list_to_long(words[2:], long_long=True)[0], double=True) == -1e-10

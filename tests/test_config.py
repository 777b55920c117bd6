"""Config loading and `edge-agent validate`: line-numbered problems, env secrets, masking."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from edge_agent.cli import main
from edge_agent.config import load_config
from edge_agent.errors import ConfigError

GOOD = textwrap.dedent(
    """\
    agent:
      name: gw-1
    assets:
      - id: cnc1
        site: plant
        area: machining
        line: line1
        rated_power_kw: 40
    devices:
      - name: cnc-meter
        driver: modbus
        host: 127.0.0.1
        port: 5020
        unit_id: 1
        poll_interval: 500ms
        tags:
          - name: power
            asset: cnc1
            role: power
            unit: kW
            address: 0
            data_type: float32
          - name: energy
            asset: cnc1
            role: energy_counter
            unit: kWh
            address: 2
            data_type: uint32
            scale: 0.0001
    mqtt:
      host: 127.0.0.1
      username: agent
      password: ${EDGE_TEST_MQTT_PASSWORD}
    """
)


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(p) for p in info.value.problems]


def test_valid_config_loads_with_units_and_durations(write_config, monkeypatch) -> None:
    monkeypatch.setenv("EDGE_TEST_MQTT_PASSWORD", "s3cret-value")
    cfg = load_config(write_config(GOOD))
    dev = cfg.devices[0]
    assert dev.poll_interval == 0.5
    assert [t.role for t in dev.tag_configs()] == ["power", "energy_counter"]
    assert cfg.mqtt is not None and cfg.mqtt.password is not None
    assert cfg.mqtt.password.get_secret_value() == "s3cret-value"


def test_validate_reports_unknown_key_wrong_type_and_missing_field_with_lines(
    write_config, capsys, monkeypatch
) -> None:
    monkeypatch.delenv("EDGE_TEST_MQTT_PASSWORD", raising=False)
    bad = GOOD.replace("    rated_power_kw: 40\n", "")  # missing field (asset item at line 4)
    bad = bad.replace("    unit_id: 1\n", "    unit_id: 1\n    pol_interval: 2s\n")  # unknown key, line 14
    bad = bad.replace("port: 5020", "port: not-a-port")  # wrong type, line 12
    path = write_config(bad)
    code = main(["validate", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "line 14: devices[0].pol_interval: unknown key" in err
    assert "line 12: devices[0].port:" in err and "not-a-port" in err
    assert "line 4: assets[0].rated_power_kw: required key 'rated_power_kw' is missing" in err
    # the missing env var is a problem too, located at its key
    assert "line 33: mqtt.password: environment variable EDGE_TEST_MQTT_PASSWORD is not set" in err


def test_every_problem_is_reported_not_just_the_first(write_config, monkeypatch) -> None:
    monkeypatch.setenv("EDGE_TEST_MQTT_PASSWORD", "x")
    bad = GOOD.replace("role: power", "role: powr").replace("unit: kWh", "unit: MWh")
    found = problems_of(write_config(bad))
    assert len(found) == 2, found
    assert any(p.startswith("line 19: devices[0].tags[0].role:") for p in found)
    assert any(p.startswith("line 26: devices[0].tags[1].unit:") for p in found)


def test_role_and_unit_must_agree(write_config, monkeypatch) -> None:
    monkeypatch.setenv("EDGE_TEST_MQTT_PASSWORD", "x")
    found = problems_of(write_config(GOOD.replace("unit: kW\n", "unit: kWh\n", 1)))
    assert any("role 'power' needs unit kW" in p for p in found), found


def test_tag_must_reference_a_known_asset(write_config, monkeypatch) -> None:
    monkeypatch.setenv("EDGE_TEST_MQTT_PASSWORD", "x")
    found = problems_of(write_config(GOOD.replace("asset: cnc1\n", "asset: cnc9\n", 1)))
    assert any("asset 'cnc9' is not defined" in p for p in found), found


def test_unknown_driver_names_the_choices(write_config, monkeypatch) -> None:
    monkeypatch.setenv("EDGE_TEST_MQTT_PASSWORD", "x")
    found = problems_of(write_config(GOOD.replace("driver: modbus", "driver: profinet")))
    assert any("profinet" in p and "modbus" in p and "line 11" in p for p in found), found


def test_valid_file_prints_summary_and_exits_zero(write_config, monkeypatch, capsys) -> None:
    monkeypatch.setenv("EDGE_TEST_MQTT_PASSWORD", "x")
    code = main(["validate", str(write_config(GOOD))])
    out = capsys.readouterr().out
    assert code == 0
    assert "cnc-meter" in out and "0.5 s" in out and "1 assets, 1 devices, 2 tags" in out


def test_dump_masks_secrets(write_config, monkeypatch, capsys) -> None:
    monkeypatch.setenv("EDGE_TEST_MQTT_PASSWORD", "s3cret-value")
    code = main(["validate", "--dump", str(write_config(GOOD))])
    out = capsys.readouterr().out
    assert code == 0
    assert "s3cret-value" not in out
    assert "password: '**********'" in out


def test_unreadable_file_is_a_config_error(tmp_path: Path, capsys) -> None:
    code = main(["validate", str(tmp_path / "nope.yaml")])
    assert code == 2
    assert "nope.yaml" in capsys.readouterr().err


def test_invalid_yaml_gives_its_line(write_config, capsys) -> None:
    code = main(["validate", str(write_config("assets:\n  - id: [unclosed\n"))])
    assert code == 2
    assert "not valid YAML" in capsys.readouterr().err

"""Large generated configs: JSON (a YAML subset) loads through a fast path with the same result
and the same line-numbered problems; a 50,000-tag file validates in seconds."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from edge_agent.config import load_config, parse_config
from edge_agent.config.loader import _as_json
from edge_agent.config.types import ROLE_UNITS
from edge_agent.config.yaml_parser import yaml_rs
from edge_agent.drivers.modbus import ModbusTagConfig
from edge_agent.errors import ConfigError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_gateway import agent_config  # the benchmark plant: 10 tags per asset


def test_json_and_yaml_of_one_config_validate_alike(tmp_path: Path) -> None:
    doc = agent_config(200, 5020, 1883, tmp_path, True, 1.0)
    as_yaml = parse_config(yaml.safe_dump(doc, sort_keys=False))
    as_json = parse_config(json.dumps(doc, indent=1))
    assert as_json.model_dump() == as_yaml.model_dump()
    assert sum(len(d.tags) for d in as_json.devices) == 200


def test_a_problem_in_a_json_config_names_its_line(tmp_path: Path) -> None:
    doc = agent_config(20, 5020, 1883, tmp_path, True, 1.0)
    doc["devices"][0]["tags"][13]["unit"] = "bar"  # t13 is a PLC state: unit must be state
    text = json.dumps(doc, indent=1)
    path = tmp_path / "big.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    name_line = next(i for i, s in enumerate(text.splitlines(), 1) if '"name": "t13"' in s)
    [problem] = info.value.problems
    assert problem.path == "devices[0].tags[13]" and "needs unit state" in problem.message
    assert problem.line == name_line - 1  # the line that opens the tag, as for YAML


@pytest.mark.slow
def test_a_50k_tag_json_config_loads_in_seconds(tmp_path: Path) -> None:
    path = tmp_path / "50k.json"
    path.write_text(json.dumps(agent_config(50_000, 5020, 1883, tmp_path, True, 1.0)))
    t0 = time.process_time()
    config = load_config(path)
    spent = time.process_time() - t0
    assert sum(len(d.tags) for d in config.devices) == 50_000
    assert spent < 10.0, f"{spent:.1f} s of CPU to load 50,000 tags"  # ~2 s measured; 5x headroom


def _tags_yaml(n: int, bad: dict[int, str]) -> str:
    """A device of n tags, one per line; tag i gets the unit bad[i] (kW otherwise)."""
    lines = ["assets:", "  - {id: m1, site: s, area: a, line: l, rated_power_kw: 10}", "devices:"]
    lines += ["  - name: meter", "    driver: modbus", "    host: 127.0.0.1", "    tags:"]
    for i in range(n):
        unit = bad.get(i, "kW")
        lines.append(f"      - {{name: t{i}, asset: m1, role: generic, unit: {unit}, address: {2 * i}}}")
    return "\n".join(lines) + "\n"


def test_problems_in_chunk_validated_tags_keep_their_paths_and_lines() -> None:
    """Tags are validated 100 at a time: a problem in the second and the third chunk still
    names its own tag and line, and the valid chunks around them are kept."""
    text = _tags_yaml(300, {150: "furlongs", 299: "parsecs"})
    with pytest.raises(ConfigError) as info:
        parse_config(text, file="plant.yaml")
    found = {(p.path, p.line) for p in info.value.problems}
    assert found == {("devices[0].tags[150].unit", 8 + 150), ("devices[0].tags[299].unit", 8 + 299)}, (
        found
    )  # tag i: line 8 + i
    assert all("got 'furlongs'" in p.message or "got 'parsecs'" in p.message for p in info.value.problems)


def test_many_broken_tags_list_the_first_problems_and_count_the_rest() -> None:
    text = _tags_yaml(5_000, {i: "furlongs" for i in range(5_000)})
    with pytest.raises(ConfigError) as info:
        parse_config(text, file="plant.yaml")
    problems = info.value.problems
    assert [p.path for p in problems[:3]] == [f"devices[0].tags[{i}].unit" for i in range(3)]
    assert problems[-2].message.startswith("... and ") and "more problem(s)" in problems[-2].message
    assert problems[-1].message.startswith("... stopped here")
    assert len(problems) <= 52


def test_duplicate_keys_and_merge_keys_are_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("assets: []\ndevices: []\nagent: {name: a}\nagent: {name: b}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "once in a mapping" in str(info.value)
    path.write_text("base: &b {name: a}\nassets: []\ndevices: []\nagent: {<<: *b}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "merge keys" in str(info.value)


def test_tags_given_the_same_keys_share_one_fields_set_and_copies_stay_apart() -> None:
    """A set per tag was 0.7 kB, 35 MB for 50,000 tags; sharing must not let one tag's
    ``model_copy(update=...)`` show up in another's ``model_fields_set``."""
    config = parse_config(_tags_yaml(3, {}))
    a, b, c = config.devices[0].tags
    assert a.model_fields_set == {"name", "asset", "role", "unit", "address"}
    assert a.model_fields_set is b.model_fields_set is c.model_fields_set
    changed = a.model_copy(update={"scale": 2.0})
    assert changed.model_fields_set == {"name", "asset", "role", "unit", "address", "scale"}
    assert b.model_fields_set == {"name", "asset", "role", "unit", "address"}
    assert changed.scale == 2.0 and b.scale == 1.0
    assert config.assets[0].model_fields_set == {"id", "site", "area", "line", "rated_power_kw"}


def test_repeated_names_and_equal_asset_settings_are_one_object() -> None:
    """An asset id in each of its tags, a site in each asset and equal thresholds and state
    codes are held once (a 50,000-tag plant repeats them thousands of times)."""
    text = """
assets:
  - {id: m1, site: s, area: a, line: l, rated_power_kw: 10, states: {idle_below_kw: 3}}
  - {id: m2, site: s, area: a, line: l, rated_power_kw: 10, states: {idle_below_kw: 3}}
  - {id: m3, site: s, area: a, line: l, rated_power_kw: 10, states: {idle_below_kw: 4},
     state_codes: {7: producing}}
devices:
  - name: d
    driver: modbus
    host: h
    tags:
      - {name: t1, asset: m1, address: 0}
      - {name: t2, asset: m1, address: 1}
"""
    config = parse_config(text)
    m1, m2, m3 = config.assets
    assert m1.site is m2.site is m3.site and m1.line is m3.line
    assert m1.states is m2.states and m1.states.idle_below_kw == 3
    assert m3.states.idle_below_kw == 4  # unequal values stay apart
    assert m1.state_codes is m2.state_codes and m1.state_codes["3"] == "producing"
    assert m3.state_codes == {"7": "producing"}
    t1, t2 = config.devices[0].tags
    assert t1.asset is t2.asset is m1.id


def test_loaded_tags_are_rebuilt_smaller_and_stay_equal() -> None:
    """The loader rebuilds tags with key-sharing instance dicts (edge_agent.config.compact):
    each equals, dumps, copies and hashes as the model pydantic builds from the same keys."""
    config = parse_config(_tags_yaml(50, {7: "kWh"}))
    for tag in config.devices[0].tags:
        built = ModbusTagConfig.model_validate(tag.model_dump(exclude_unset=True))
        assert tag == built and built == tag and hash(tag) == hash(built)
        assert tag.model_dump() == built.model_dump() and repr(tag) == repr(built)
        assert tag.model_fields_set == built.model_fields_set
        assert sys.getsizeof(tag.__dict__) < sys.getsizeof(built.__dict__)  # 216 vs 464 bytes
    t7 = config.devices[0].tags[7]
    assert t7.unit == "kWh" and t7.model_copy(update={"unit": "kW"}).unit == "kW" and t7.unit == "kWh"
    with pytest.raises(ValidationError):
        t7.unit = "kW"  # still frozen


def test_each_tags_own_checks_run_once_on_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """pydantic re-runs a model's "after" checks on every instance a containing model takes
    as is; in the loader's whole-file pass a device takes the tags built in chunks as they are
    (DeviceConfig._tags_built_already)."""
    import edge_agent.config.model as model

    class Counting(dict[str, frozenset[str]]):
        looked_up = 0

        def __getitem__(self, role: str) -> frozenset[str]:
            Counting.looked_up += 1
            return super().__getitem__(role)

    monkeypatch.setattr(model, "ROLE_UNITS", Counting(ROLE_UNITS))
    parse_config(_tags_yaml(300, {}))
    assert Counting.looked_up == 300  # TagConfig._unit_fits_role, once a tag
    Counting.looked_up = 0
    with pytest.raises(ConfigError):  # with a problem in a chunk, all is checked again in full
        parse_config(_tags_yaml(300, {5: "furlongs"}))
    assert Counting.looked_up == 2 * 299


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1e400", math.inf), ("-1.5E+400", -math.inf), (".NaN", math.nan), ("1" + "0" * 310 + ".0", math.inf)],
)
def test_yaml_values_json_has_not_keep_the_yaml_tree(value: str, expected: float) -> None:
    """A YAML tree is rebuilt through JSON (edge_agent.config.loader._as_json) only when JSON
    holds every value: orjson would write these floats as null."""
    text = _tags_yaml(2, {}).replace("address: 0}", f"address: 0, scale: {value}}}")
    assert _as_json(yaml_rs.loads(text), text) is None
    scale = parse_config(text).devices[0].tags[0].scale
    assert scale == expected or (math.isnan(expected) and math.isnan(scale))


def test_yaml_with_json_values_only_is_rebuilt_through_json() -> None:
    plain = _tags_yaml(3, {})
    assert _as_json(yaml_rs.loads(plain), plain) is not None
    for other in (
        "  - {id: m2, site: s, area: a, line: l, rated_power_kw: 10, description: 2026-01-01}",
        "  - {id: m2, site: s, area: a, line: l, rated_power_kw: 10, state_codes: {2: producing}}",
    ):
        text = plain.replace("devices:", other + "\ndevices:")  # a date, an integer key
        assert _as_json(yaml_rs.loads(text), text) is None
    text = plain.replace(
        "devices:",
        "  - {id: m2, site: s, area: a, line: l, rated_power_kw: 10, state_codes: {2: producing}}\ndevices:",
    )
    assert parse_config(text).assets[1].state_codes == {"2": "producing"}

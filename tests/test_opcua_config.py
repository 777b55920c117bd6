"""OPC UA config: what a typo produces (a clear, located error) and how settings merge."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from edge_agent.config import parse_config
from edge_agent.drivers.opcua import OpcUaDeviceConfig, OpcUaDriver
from edge_agent.drivers.opcua.addressing import (
    BrowsePathAddress,
    NodeAddress,
    parse_browse_path,
    parse_node_id,
)
from edge_agent.errors import ConfigError

NS = "urn:plant"


def device(tags: list[dict[str, Any]], **extra: Any) -> OpcUaDeviceConfig:
    base = {"name": "ua1", "driver": "opcua", "endpoint": "opc.tcp://plc:4840", "poll_interval": "1s"}
    return OpcUaDeviceConfig.model_validate({**base, **extra, "tags": tags})


def tag(**kw: Any) -> dict[str, Any]:
    return {"name": "t", "asset": "a", **kw}


def errors(exc: pytest.ExceptionInfo[ValidationError]) -> str:
    return " | ".join(e["msg"] for e in exc.value.errors())


def test_node_ids_resolve_by_namespace_uri_at_connect_time() -> None:
    address = parse_node_id(f"nsu={NS};s=cnc1.power_kw")
    assert address.namespace_uri == NS
    assert address.resolve({NS: 4}).NamespaceIndex == 4
    assert address.resolve({NS: 7}).NamespaceIndex == 7  # the index may move; the URI does not
    assert str(address) == f"nsu={NS};s=cnc1.power_kw"
    fixed = parse_node_id("ns=3;i=1001")
    assert fixed.namespace_uri is None and fixed.resolve({}).NamespaceIndex == 3
    assert parse_node_id("i=2258").resolve({}).Identifier == 2258


def test_browse_paths_take_uri_segments_or_the_device_namespace() -> None:
    path = parse_browse_path("/Objects/Plant/{urn:other}cnc1/power_kw", NS)
    assert path.segments == ((NS, "Plant"), ("urn:other", "cnc1"), (NS, "power_kw"))
    with pytest.raises(ValueError, match="names no namespace"):
        parse_browse_path("Plant/cnc1", None)
    with pytest.raises(ValueError, match="empty segment"):
        parse_browse_path("Plant//cnc1", NS)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (tag(), "exactly one of 'node_id'"),
        (tag(node_id="i=1", browse_path="A/B"), "exactly one of 'node_id'"),
        (tag(node_id="cnc1.power"), "'cnc1.power' is not a NodeId"),
        (tag(node_id="i=1", queue_size=0), "greater than or equal to 1"),
        (tag(node_id="i=1", deadband={"type": "percent", "value": 150}), "at most 100"),
        (tag(node_id="i=1", deadband={"type": "absolute", "value": 1}), "only applies to subscribed tags"),
        (tag(node_id="i=1", group="fast"), "group 'fast' is not under 'groups'"),
        (tag(browse_path="Plant/cnc1"), "names no namespace"),
    ],
)
def test_tag_mistakes_name_the_tag_and_the_fix(bad: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        device([bad])
    assert message in errors(info)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"endpoint": "http://plc:4840"}, "String should match pattern"),
        ({"auth": {"type": "username", "username": "u"}}, "needs password"),
        ({"auth": {"type": "anonymous", "username": "u"}}, "does not use username"),
        (
            {"auth": {"type": "certificate", "cert_file": "c.der", "key_file": "k.pem"}},
            "needs a signed channel",
        ),
        ({"security": {"mode": "Encrypt"}}, "Input should be 'None', 'Sign' or 'SignAndEncrypt'"),
        ({"security": {"mode": "Sign", "policy": "Basic128Rsa15"}}, "Input should be 'Basic256Sha256'"),
    ],
)
def test_device_mistakes(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        device([tag(node_id="i=1")], **extra)
    assert message in errors(info)


def test_acquisition_merges_tag_over_group_over_device() -> None:
    cfg = device(
        [
            tag(name="plain", node_id="i=1"),
            tag(name="grouped", node_id="i=2", group="fast"),
            tag(name="override", node_id="i=3", group="fast", queue_size=9, sampling_interval="10ms"),
            tag(name="sub", node_id="i=4", mode="subscribe"),
            tag(name="grouped2", node_id="i=5", group="fast"),
        ],
        groups={"fast": {"publishing_interval": "200ms", "queue_size": 3, "deadband": {"value": 0.5}}},
    )
    plain, grouped, override, sub, grouped2 = (cfg.acquisition(t) for t in cfg.tags)
    assert grouped2 is grouped  # equal settings: one object however many tags share them
    assert plain.mode == "poll"
    assert (grouped.mode, grouped.publishing_interval, grouped.sampling_interval) == ("subscribe", 0.2, 0.2)
    assert grouped.queue_size == 3 and grouped.deadband is not None and grouped.deadband.value == 0.5
    assert (override.queue_size, override.sampling_interval) == (9, 0.01)
    assert (sub.mode, sub.publishing_interval, sub.queue_size) == ("subscribe", 1.0, 1)
    assert isinstance(cfg.address(cfg.tags[0]), NodeAddress)
    driver = OpcUaDriver(cfg)
    assert "subscription @ 200 ms publishing: 3 monitored item(s)" in driver.describe_plan()


def test_yaml_errors_carry_the_line_and_password_comes_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    text = """\
assets:
  - {id: cnc1, site: s, area: a, line: l, rated_power_kw: 10}
devices:
  - name: ua1
    driver: opcua
    endpoint: opc.tcp://plc:4840
    auth: {type: username, username: agent, password: "${UA_PW}"}
    tags:
      - {name: p, asset: cnc1, node_id: "nsu=urn:x;s=p"}
      - {name: q, asset: cnc1, node_id: "cnc1.q"}
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, file="plant.yaml")
    message = str(info.value)
    assert "plant.yaml" in message and "UA_PW is not set" in message and "line 7" in message
    assert "line 10" in message and "'cnc1.q' is not a NodeId" in message
    monkeypatch.setenv("UA_PW", "pw")
    fixed = text.replace('"cnc1.q"', '"nsu=urn:x;s=q"')
    dev = parse_config(fixed).devices[0]
    assert isinstance(dev, OpcUaDeviceConfig) and dev.auth.password is not None
    assert dev.auth.password.get_secret_value() == "pw"
    assert isinstance(dev.address(dev.tags[0]), NodeAddress)


def test_browse_path_tag_in_yaml() -> None:
    text = f"""\
assets: [{{id: cnc1, site: s, area: a, line: l, rated_power_kw: 10}}]
devices:
  - {{name: ua1, driver: opcua, endpoint: "opc.tcp://plc:4840", namespace: "{NS}",
      tags: [{{name: p, asset: cnc1, browse_path: Plant/cnc1/power_kw, mode: subscribe}}]}}
"""
    dev = parse_config(text).devices[0]
    assert isinstance(dev, OpcUaDeviceConfig)
    address = dev.address(dev.tags[0])
    assert isinstance(address, BrowsePathAddress) and address.segments[-1] == (NS, "power_kw")


def test_the_readme_example_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    readme = Path(__file__).parents[1] / "edge_agent" / "drivers" / "opcua" / "README.md"
    match = re.search(r"```yaml\n(.*?)```", readme.read_text(encoding="utf-8"), re.S)
    assert match is not None
    monkeypatch.setenv("OPCUA_PASSWORD", "pw")
    assets = "assets:\n  - {id: cnc1, site: s, area: a, line: l, rated_power_kw: 10}\n"
    dev = parse_config(assets + match.group(1), file=str(readme)).devices[0]
    assert isinstance(dev, OpcUaDeviceConfig) and dev.security.mode == "SignAndEncrypt"
    assert "subscription @ 200 ms publishing: 1 monitored item(s)" in OpcUaDriver(dev).describe_plan()

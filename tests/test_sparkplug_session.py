"""The edge node's state machine and payloads, decoded with the generated protobuf module."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import yaml

from edge_agent.batch import Quality, SampleBatch
from edge_agent.config import SparkplugConfig
from edge_agent.delivery.record import Placement, Record
from edge_agent.delivery.sparkplug import sparkplug_b_pb2 as pb
from edge_agent.delivery.sparkplug.metrics import datatype_of, kpi_unit
from edge_agent.delivery.sparkplug.payload import is_rebirth_request
from edge_agent.delivery.sparkplug.session import EdgeNode, Message
from edge_agent.delivery.sparkplug.topics import NodeTopics
from edge_agent.errors import ConfigError

TOPICS = NodeTopics("plant", "gw1")


def _record(asset: str = "press1", *, kind: str = "raw", n: int = 3, rid: int = 1) -> Record:
    ts = 1_700_000_000_000_000_000 + np.arange(n, dtype=np.int64) * 1_000_000_000
    values = {
        "power": np.array([1.5, -2.25, np.nan][:n]),
        "energy_counter": np.array([2**40, 7, -3][:n], dtype=np.int64),
    }
    quality = {
        "power": np.array([Quality.GOOD, Quality.UNCERTAIN, Quality.GOOD][:n], dtype=np.uint8),
        "energy_counter": np.array([Quality.GOOD, Quality.MISSING, Quality.BAD][:n], dtype=np.uint8),
    }
    batch = SampleBatch(device="meter1", ts=ts, values=values, quality=quality)
    window = "60s" if kind == "kpi" else None
    return Record(rid, kind, Placement("s", "a", "l", asset, window), batch)  # type: ignore[arg-type]


def _decode(msg: Message) -> pb.Payload:
    return pb.Payload.FromString(msg.payload)


def _props(m: pb.Payload.Metric) -> dict[str, pb.Payload.PropertyValue]:
    return dict(zip(m.properties.keys, m.properties.values, strict=True))


def _node() -> EdgeNode:
    return EdgeNode(TOPICS, {("meter1", "power"): "kW", ("meter1", "energy_counter"): "kWh"})


def test_birth_death_certificates_share_bdseq_and_seq_starts_at_zero() -> None:
    node = _node()
    will = node.new_session()
    births = node.birth()
    assert will.topic == "spBv1.0/plant/NDEATH/gw1" and births[0].topic == "spBv1.0/plant/NBIRTH/gw1"
    nbirth, ndeath = _decode(births[0]), _decode(will)
    assert nbirth.seq == 0 and not ndeath.HasField("seq")
    metrics = {m.name: m for m in nbirth.metrics}
    assert metrics["bdSeq"].long_value == ndeath.metrics[0].long_value == 0
    assert metrics["Node Control/Rebirth"].datatype == pb.Boolean
    assert not metrics["Node Control/Rebirth"].boolean_value
    node.end_session()
    assert _decode(node.new_session()).metrics[0].long_value == 1  # next session, next bdSeq


def test_bdseq_wraps_at_255() -> None:
    node = _node()
    for _ in range(257):
        will = node.new_session()
    assert _decode(will).metrics[0].long_value == 0


def test_seq_runs_over_all_messages_and_wraps_after_255() -> None:
    node = _node()
    node.new_session()
    node.birth()
    seqs = []
    for i in range(300):
        seqs += [_decode(m).seq for m in node.data(_record(rid=i))]
    assert seqs[0] == 1  # the first batch's DBIRTH follows NBIRTH (seq 0)
    assert seqs[:256] == [*range(1, 256), 0]
    assert all(b == (a + 1) % 256 for a, b in itertools.pairwise(seqs))


def test_first_batch_births_the_device_with_aliases_units_and_datatypes() -> None:
    node = _node()
    node.new_session()
    node.birth()
    dbirth, ddata = node.data(_record())
    assert (
        dbirth.topic == "spBv1.0/plant/DBIRTH/gw1/press1" and ddata.topic == "spBv1.0/plant/DDATA/gw1/press1"
    )
    defs = {m.name: m for m in _decode(dbirth).metrics}
    assert set(defs) == {"raw/meter1/power", "raw/meter1/energy_counter"}
    assert defs["raw/meter1/power"].datatype == pb.Double
    assert defs["raw/meter1/energy_counter"].datatype == pb.Int64
    assert _props(defs["raw/meter1/power"])["engUnit"].string_value == "kW"
    assert _props(defs["raw/meter1/energy_counter"])["engUnit"].string_value == "kWh"
    aliases = {m.alias for m in defs.values()}
    assert len(aliases) == 2 and 0 not in aliases

    data = _decode(ddata).metrics
    by_alias: dict[int, list[pb.Payload.Metric]] = {}
    for m in data:
        assert not m.name  # DDATA uses aliases only
        by_alias.setdefault(m.alias, []).append(m)
    power = by_alias[defs["raw/meter1/power"].alias]
    assert [m.double_value for m in power[:2]] == [1.5, -2.25]
    assert [_props(m)["Quality"].int_value for m in power] == [192, 64, 0]  # NaN → Bad
    assert power[2].is_null
    counter = by_alias[defs["raw/meter1/energy_counter"].alias]
    assert len(counter) == 2  # the Missing sample is not published
    assert counter[0].long_value == 2**40
    assert counter[1].is_null and _props(counter[1])["Quality"].int_value == 0
    assert [m.timestamp for m in counter] == [1_700_000_000_000, 1_700_000_002_000]


def test_negative_integers_are_twos_complement() -> None:
    node = _node()
    node.new_session()
    node.birth()
    ts = np.array([1, 2], dtype=np.int64) * 1_000_000
    batch = SampleBatch(
        device="d",
        ts=ts,
        values={"a": np.array([-3, 4], dtype=np.int32), "b": np.array([-5, 6], dtype=np.int64)},
        quality={"a": np.zeros(2, np.uint8), "b": np.zeros(2, np.uint8)},
    )
    _, ddata = node.data(Record(1, "raw", Placement("s", "a", "l", "x"), batch))
    vals = [(m.int_value, m.long_value) for m in _decode(ddata).metrics]
    assert vals[0][0] == 2**32 - 3 and vals[2][1] == 2**64 - 5


def test_aliases_survive_rebirth_and_new_metrics_rebirth_the_device() -> None:
    node = _node()
    node.new_session()
    node.birth()
    first = {m.name: m.alias for m in _decode(node.data(_record())[0]).metrics}
    assert [m.kind for m in node.data(_record())] == ["DDATA"]
    kinds = [m.kind for m in node.data(_record(kind="kpi"))]
    assert kinds == ["DBIRTH", "DDATA"]  # KPI metrics are new for press1
    reborn = node.birth()
    assert [m.kind for m in reborn] == ["NBIRTH", "DBIRTH"]
    again = {m.name: m.alias for m in _decode(reborn[1]).metrics}
    assert {k: again[k] for k in first} == first and len(again) == 4
    # the rebirth carries the last known value
    power = next(m for m in _decode(reborn[1]).metrics if m.name == "raw/meter1/power")
    assert power.is_null  # the last sample was NaN → Bad


def test_device_loss_and_late_batches_of_a_lost_device() -> None:
    node = _node()
    node.new_session()
    node.birth()
    node.data(_record())
    (death,) = node.device_lost("press1")
    assert death.topic == "spBv1.0/plant/DDEATH/gw1/press1" and _decode(death).HasField("seq")
    assert node.device_lost("press1") == []  # reported once
    # a batch read before the loss still goes out, bracketed so the host ends with the device dead
    assert [m.kind for m in node.data(_record())] == ["DBIRTH", "DDATA", "DDEATH"]
    assert [m.kind for m in node.birth()] == ["NBIRTH"]  # a rebirth skips the lost device
    assert [m.kind for m in node.device_restored("press1")] == ["DBIRTH"]


def test_datatypes_units_and_rebirth_requests() -> None:
    assert datatype_of(np.zeros(1, np.float32)) == pb.Float
    assert datatype_of(np.zeros(1, np.uint16)) == pb.UInt16
    assert datatype_of(np.zeros(1, bool)) == pb.Boolean
    with pytest.raises(ValueError, match="no Sparkplug datatype"):
        datatype_of(np.array(["x"]))
    assert kpi_unit("energy_kwh") == "kWh" and kpi_unit("sec_kwh_per_part") == "kWh"
    assert kpi_unit("peak_demand_kw") == "kW" and kpi_unit("oee") == "1"
    ncmd = pb.Payload(timestamp=1)
    ncmd.metrics.add(name="Node Control/Rebirth", datatype=pb.Boolean, boolean_value=True)
    assert is_rebirth_request(ncmd.SerializeToString())
    assert not is_rebirth_request(b"\xff\xff not protobuf")
    assert not is_rebirth_request(pb.Payload(timestamp=1).SerializeToString())


def test_config_rejects_topic_characters_in_ids() -> None:
    with pytest.raises(ValueError, match=r"group_id 'plant/1' must be non-empty without '/'"):
        SparkplugConfig(group_id="plant/1")
    with pytest.raises(ValueError, match="primary_host_id '#'"):
        SparkplugConfig(group_id="plant", primary_host_id="#")
    cfg = SparkplugConfig(group_id="plant", primary_host_id="scada")
    assert cfg.edge_node_id is None and cfg.qos == 1


def test_the_documented_config_block_is_valid() -> None:
    text = (Path(__file__).parents[1] / "docs" / "sparkplug.md").read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    cfg = SparkplugConfig.model_validate(yaml.safe_load(block)["sparkplug"])
    assert (cfg.group_id, cfg.edge_node_id, cfg.primary_host_id) == ("plant-north", "gw-07", "scada")
    assert cfg.backoff_max == 30 and cfg.birth_wait == 5


async def test_a_missing_tls_file_fails_at_start_naming_the_file(tmp_path: Path) -> None:
    from edge_agent.delivery.sparkplug import SparkplugSink

    missing = tmp_path / "no-such-ca.pem"
    cfg = SparkplugConfig(group_id="plant", port=1, tls={"ca_file": missing})
    sink = SparkplugSink(cfg, agent="gw", units={})
    with pytest.raises(ConfigError, match=r"sparkplug\.tls: .*no-such-ca\.pem.*check that they exist"):
        await sink.start()
    await sink.stop()  # nothing started: stop is still safe

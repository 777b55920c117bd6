"""Delivery settings: the durable buffer, the MQTT sink (and ingest) and the InfluxDB sink."""

from __future__ import annotations

__all__ = [
    "TOPIC_FIELDS",
    "BufferConfig",
    "InfluxConfig",
    "MqttConfig",
    "SinkLimits",
    "SparkplugConfig",
    "TlsConfig",
    "check_topic_template",
]

import string
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from edge_agent.config.types import ByteSize, Seconds, StrictModel

#: Placeholders a data topic template may use; each must fill a whole topic level.
TOPIC_FIELDS = frozenset({"site", "area", "line", "asset", "kind"})


def check_topic_template(template: str, allowed: frozenset[str] = TOPIC_FIELDS) -> str:
    """Reject templates whose placeholders are unknown or share a level with text.

    Ingest turns every placeholder into the ``+`` wildcard, which MQTT only allows for a
    whole level, so ``plant-{site}/...`` could never be subscribed to.
    """
    levels = template.split("/")
    for level in levels:
        parsed = [f for _, f, _, _ in string.Formatter().parse(level) if f is not None]
        for name in parsed:
            if name not in allowed:
                raise ValueError(
                    f"topic template {template!r}: unknown placeholder {{{name}}}; "
                    f"use only {', '.join('{' + f + '}' for f in sorted(allowed))}"
                )
            if level != "{" + name + "}":
                raise ValueError(
                    f"topic template {template!r}: placeholder {{{name}}} must fill a whole level "
                    f"(got {level!r}); write e.g. 'plant/{{{name}}}/...'"
                )
        if any(c in level for c in "+#"):
            raise ValueError(f"topic template {template!r}: wildcards '+' and '#' are not allowed")
    return template


class SinkLimits(StrictModel):
    """One sink's share of the buffer (Vector's per-sink buffers are the model).

    ``drop_oldest``: past ``max_backlog_bytes`` this sink alone skips its oldest undelivered
    batches (counted in its ``dropped``), so a dead sink never fills the buffer for the others.
    ``block``: no own limit; the sink's backlog counts against the shared ``buffer.max_bytes``
    and its ``buffer.policy`` (under ``block`` a dead sink then holds up every sink).
    """

    max_backlog_bytes: ByteSize = Field(64 * 2**20, gt=0, description="this sink's undelivered bytes at most")
    when_full: Literal["drop_oldest", "block"] = "block"


class BufferConfig(StrictModel):
    """SQLite WAL buffer between analytics and the sinks, capped in bytes."""

    path: Path = Path("data/buffer.db")
    max_bytes: ByteSize = Field(
        256 * 2**20,
        ge=128 * 1024,
        description="cap on the buffer's files on disk (database and write-ahead log), at least 128 KiB",
    )
    policy: Literal["drop_oldest", "drop_newest", "block"] = "drop_oldest"
    block_timeout: Seconds = Field(
        60.0, gt=0, description="policy block: how long submit waits for room before BufferFullError"
    )
    synchronous: Literal["normal", "full"] = Field(
        "normal", description="normal survives a process crash; full also survives power loss (slower)"
    )
    quarantine_max_bytes: ByteSize = Field(16 * 2**20, gt=0)
    flush_timeout: Seconds = Field(10.0, ge=0, description="on shutdown, wait this long for sinks to drain")
    linger: Seconds = Field(
        0.5,
        ge=0,
        description="coalesce each device's polls this long into one buffer record and one MQTT message "
        "per asset (and one analytics call); capped at analytics.kpi_interval. Adds at most this much "
        "latency to raw data and to KPIs; a device polled no faster than this does not wait",
    )
    queue_samples: int = Field(
        2_000_000,
        ge=1,
        description="poll queue between the pollers and processing, in samples; when full the oldest "
        "polls are dropped and counted, the pollers never wait",
    )


class TlsConfig(StrictModel):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure_skip_verify: bool = False

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("tls: give both cert_file and key_file for a client certificate, or neither")
        return self


class MqttConfig(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    protocol: Literal["3.1.1", "5"] = "5"
    client_id: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    tls: TlsConfig | None = None
    qos: Literal[0, 1] = 1
    max_inflight: int = Field(100, ge=1, le=65535)
    keepalive: Seconds = Field(30.0, gt=0)
    topic_template: str = "{site}/{area}/{line}/{asset}/{kind}"
    status_topic: str = "{site}/edge-agent/{agent}/status"
    backoff_max: Seconds = Field(30.0, gt=0)
    limits: SinkLimits = Field(default_factory=SinkLimits, description="this sink's own backlog limit")
    # ingest (edge-agent ingest): the subscriber side of the same namespace
    ingest_client_id: str | None = None
    ingest_group: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.-]+$", description="MQTT 5 shared-subscription group"
    )
    ingest_window: int = Field(1000, ge=1, le=65535, description="messages in flight to one ingest worker")
    session_expiry: Seconds = Field(86400.0, ge=0, description="how long the broker keeps ingest's queue")
    max_message_bytes: ByteSize = Field(16 * 2**20, gt=0, description="larger payloads are rejected")
    ingest_max_age: Seconds = Field(
        366 * 86400.0, gt=0, description="ingest quarantines samples older than this before now"
    )
    ingest_max_ahead: Seconds = Field(
        3600.0, gt=0, description="ingest quarantines samples stamped further than this after now"
    )

    @field_validator("topic_template")
    @classmethod
    def _template(cls, v: str) -> str:
        check_topic_template(v)
        if "{asset}" not in v or "{kind}" not in v:
            raise ValueError(f"topic template {v!r} must contain {{asset}} and {{kind}}")
        return v

    @field_validator("status_topic")
    @classmethod
    def _status(cls, v: str) -> str:
        return check_topic_template(v, frozenset({"site", "agent"}))

    @model_validator(mode="after")
    def _shared_needs_v5(self) -> MqttConfig:
        if self.ingest_group is not None and self.protocol != "5":
            raise ValueError("ingest_group (shared subscriptions) needs protocol '5'")
        return self


class InfluxConfig(StrictModel):
    url: str = "http://127.0.0.1:8086"
    api: Literal["v1", "v2"] = "v1"
    database: str | None = Field(None, description="v1 API: database name")
    org: str | None = Field(None, description="v2 API: organisation")
    bucket: str | None = Field(None, description="v2 API: bucket")
    token: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    batch_size: int = Field(5000, ge=1, description="samples per write request")
    linger: Seconds = Field(0.05, ge=0, description="ingest: wait this long to fill a write request")
    timeout: Seconds = Field(10.0, gt=0)
    backoff_max: Seconds = Field(30.0, gt=0)
    limits: SinkLimits = Field(default_factory=SinkLimits, description="this sink's own backlog limit")

    @model_validator(mode="after")
    def _target(self) -> InfluxConfig:
        if self.api == "v1" and not self.database:
            raise ValueError("influxdb: api 'v1' needs 'database'")
        if self.api == "v2" and not (self.org and self.bucket):
            raise ValueError("influxdb: api 'v2' needs 'org' and 'bucket'")
        return self


class SparkplugConfig(MqttConfig):
    """Sparkplug B edge node: the broker connection of :class:`MqttConfig` plus the node's identity.

    The gateway is the edge node ``spBv1.0/{group_id}/.../{edge_node_id}``; each asset is a
    device. The UNS-only fields inherited from MqttConfig (topic templates, ingest) are unused.
    """

    group_id: str = Field(description="Sparkplug group, e.g. the site or the plant")
    edge_node_id: str | None = Field(None, description="default: agent.name")
    primary_host_id: str | None = Field(
        None, description="wait for spBv1.0/STATE/<id> online before births; re-birth when it comes back"
    )
    birth_wait: Seconds = Field(
        5.0, gt=0, description="send() waits this long for a born session before the batch is retried"
    )

    @field_validator("group_id", "edge_node_id", "primary_host_id")
    @classmethod
    def _topic_level(cls, v: str | None, info: ValidationInfo) -> str | None:
        """Each id is one MQTT topic level of the Sparkplug namespace."""
        if v is not None and (not v or any(c in v for c in "/+#")):
            raise ValueError(
                f"sparkplug {info.field_name} {v!r} must be non-empty without '/', '+' or '#' "
                "(it is one topic level); use e.g. 'plant-north'"
            )
        return v

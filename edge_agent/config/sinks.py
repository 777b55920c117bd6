"""Delivery settings: the durable buffer, the MQTT sink and the InfluxDB sink."""

from __future__ import annotations

__all__ = ["BufferConfig", "InfluxConfig", "MqttConfig", "TlsConfig"]

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from edge_agent.config.types import ByteSize, Seconds, StrictModel


class BufferConfig(StrictModel):
    """SQLite WAL buffer between analytics and the sinks, capped in bytes."""

    path: Path = Path("data/buffer.db")
    max_bytes: ByteSize = Field(256 * 2**20, gt=0)
    policy: Literal["drop_oldest", "drop_newest", "block"] = "drop_oldest"


class TlsConfig(StrictModel):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure_skip_verify: bool = False


class MqttConfig(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
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


class InfluxConfig(StrictModel):
    url: str = "http://127.0.0.1:8086"
    api: Literal["v1", "v2"] = "v1"
    database: str | None = Field(None, description="v1 API: database name")
    org: str | None = Field(None, description="v2 API: organisation")
    bucket: str | None = Field(None, description="v2 API: bucket")
    token: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    batch_size: int = Field(5000, ge=1)
    timeout: Seconds = Field(10.0, gt=0)
    backoff_max: Seconds = Field(30.0, gt=0)

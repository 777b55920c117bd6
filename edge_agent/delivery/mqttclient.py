"""One place that turns MqttConfig into a configured paho client (TLS, auth, protocol, backoff)."""

from __future__ import annotations

__all__ = ["connect_async", "make_client"]

import ssl

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent.config import MqttConfig


def make_client(
    cfg: MqttConfig, client_id: str, *, persistent: bool = False, manual_ack: bool = False
) -> mqtt.Client:
    """A paho 2.x client; reconnects itself with capped exponential backoff (1 s .. backoff_max)."""
    v5 = cfg.protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else not persistent,
        manual_ack=manual_ack,
    )
    if cfg.username is not None:
        client.username_pw_set(cfg.username, cfg.password.get_secret_value() if cfg.password else None)
    if cfg.tls is not None:
        tls = cfg.tls
        client.tls_set(
            ca_certs=str(tls.ca_file) if tls.ca_file else None,
            certfile=str(tls.cert_file) if tls.cert_file else None,
            keyfile=str(tls.key_file) if tls.key_file else None,
            cert_reqs=ssl.CERT_NONE if tls.insecure_skip_verify else ssl.CERT_REQUIRED,
        )
        if tls.insecure_skip_verify:
            client.tls_insecure_set(True)
    client.reconnect_delay_set(min_delay=1, max_delay=max(1, round(cfg.backoff_max)))
    return client


def connect_async(
    client: mqtt.Client,
    cfg: MqttConfig,
    *,
    persistent: bool = False,
    session_expiry: float = 0.0,
    receive_maximum: int | None = None,
) -> None:
    """Start connecting in the background; paho's loop thread keeps retrying until it succeeds."""
    if cfg.protocol == "5":
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        if persistent:
            props.SessionExpiryInterval = int(session_expiry)
        if receive_maximum is not None:
            props.ReceiveMaximum = receive_maximum
        client.connect_async(
            cfg.host, cfg.port, keepalive=round(cfg.keepalive), clean_start=not persistent, properties=props
        )
    else:
        client.connect_async(cfg.host, cfg.port, keepalive=round(cfg.keepalive))
    client.loop_start()

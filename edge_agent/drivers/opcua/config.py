"""Config models of the OPC UA driver: endpoint, security, authentication, acquisition per tag.

Everything a typo can break is checked here, at load time, with the tag named in the
message: NodeId syntax, browse paths, group references, auth fields per auth type. What
can only be known from the live server (namespace indexes, operation limits) is resolved
at connect time instead.
"""

from __future__ import annotations

__all__ = [
    "AcquisitionMode",
    "Deadband",
    "OpcUaAuth",
    "OpcUaDeviceConfig",
    "OpcUaGroup",
    "OpcUaSecurity",
    "OpcUaTagConfig",
    "SecurityMode",
    "SecurityPolicyName",
    "TagAcquisition",
]

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from edge_agent.config.model import DeviceConfig, TagConfig
from edge_agent.config.types import Seconds, StrictModel
from edge_agent.drivers.opcua.addressing import (
    BrowsePathAddress,
    NodeAddress,
    parse_browse_path,
    parse_node_id,
)

AcquisitionMode = Literal["poll", "subscribe"]
SecurityMode = Literal["None", "Sign", "SignAndEncrypt"]
SecurityPolicyName = Literal["Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"]


class Deadband(StrictModel):
    """Data-change filter: report only changes larger than ``value`` (absolute or % of EURange)."""

    type: Literal["absolute", "percent"] = "absolute"
    value: float = Field(gt=0)

    @model_validator(mode="after")
    def _percent_range(self) -> Deadband:
        if self.type == "percent" and self.value > 100:
            raise ValueError(f"a percent deadband must be at most 100, got {self.value}")
        return self


class OpcUaGroup(StrictModel):
    """Acquisition settings shared by the tags that name this group."""

    mode: AcquisitionMode = "subscribe"
    publishing_interval: Seconds | None = Field(
        None, gt=0, description="subscription publishing interval; default: the device poll_interval"
    )
    sampling_interval: Seconds | None = Field(
        None, ge=0, description="server sampling interval; default: the publishing interval, 0 = fastest"
    )
    queue_size: int = Field(1, ge=1, le=10_000)
    deadband: Deadband | None = None


class OpcUaTagConfig(TagConfig):
    """A tag addressed by NodeId (namespace by URI) or by browse path below Objects."""

    node_id: str | None = Field(None, description="e.g. 'nsu=urn:plant;s=cnc1.power_kw'")
    browse_path: str | None = Field(None, description="e.g. 'Plant/cnc1/power_kw' or '{urn:plant}cnc1/...'")
    group: str | None = None
    mode: AcquisitionMode | None = None
    sampling_interval: Seconds | None = Field(None, ge=0)
    queue_size: int | None = Field(None, ge=1, le=10_000)
    deadband: Deadband | None = None

    @model_validator(mode="after")
    def _one_address(self) -> OpcUaTagConfig:
        if (self.node_id is None) == (self.browse_path is None):
            raise ValueError(
                f"tag {self.name!r}: give exactly one of 'node_id' (e.g. 'nsu=urn:plant;s=cnc1.power_kw') "
                "or 'browse_path' (e.g. 'Plant/cnc1/power_kw')"
            )
        if self.node_id is not None:
            try:
                parse_node_id(self.node_id)
            except ValueError as exc:
                raise ValueError(f"tag {self.name!r}: node_id {exc}") from None
        return self


@dataclass(frozen=True, slots=True)
class TagAcquisition:
    """How one tag is acquired once tag, group and device defaults are merged."""

    mode: AcquisitionMode
    publishing_interval: float
    sampling_interval: float
    queue_size: int
    deadband: Deadband | None


_ACQUISITIONS: dict[TagAcquisition, TagAcquisition] = {}


class OpcUaSecurity(StrictModel):
    """Message security and the application instance certificate that goes with it."""

    mode: SecurityMode = "None"
    policy: SecurityPolicyName = "Basic256Sha256"
    cert_dir: Path = Field(Path("pki"), description="client certificate + key; created once, then reused")
    trust_dir: Path = Field(Path("pki/trusted"), description="server certificates (or their CAs) trusted")
    application_uri: str = Field("urn:edge-agent:client", min_length=1)


class OpcUaAuth(StrictModel):
    """User identity: anonymous, username/password (password from ${ENV}) or an X.509 user cert."""

    type: Literal["anonymous", "username", "certificate"] = "anonymous"
    username: str | None = None
    password: SecretStr | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    key_password: SecretStr | None = None

    @model_validator(mode="after")
    def _fields_for_type(self) -> OpcUaAuth:
        need = {
            "anonymous": (),
            "username": ("username", "password"),
            "certificate": ("cert_file", "key_file"),
        }
        allowed = {
            "anonymous": set(),
            "username": {"username", "password"},
            "certificate": {"cert_file", "key_file", "key_password"},
        }
        missing = [f for f in need[self.type] if getattr(self, f) is None]
        if missing:
            raise ValueError(f"auth type {self.type!r} needs {', '.join(missing)}")
        stray = [
            f
            for f in ("username", "password", "cert_file", "key_file", "key_password")
            if getattr(self, f) is not None and f not in allowed[self.type]
        ]
        if stray:
            raise ValueError(f"auth type {self.type!r} does not use {', '.join(stray)}; remove them")
        return self


class OpcUaDeviceConfig(DeviceConfig):
    """One OPC UA server (endpoint) and the tags read from it."""

    driver: Literal["opcua"]
    endpoint: str = Field(pattern=r"^opc\.tcp://[^/:]+(:\d+)?(/.*)?$", description="opc.tcp://host:port/path")
    security: OpcUaSecurity = OpcUaSecurity()
    auth: OpcUaAuth = OpcUaAuth()
    namespace: str | None = Field(None, description="namespace URI for browse-path segments without {uri}")
    mode: AcquisitionMode = Field("poll", description="acquisition of tags that set neither mode nor group")
    groups: dict[str, OpcUaGroup] = Field(default_factory=dict)
    keepalive: Seconds = Field(5.0, gt=0, description="liveness probe / subscription keep-alive period")
    session_timeout: Seconds = Field(60.0, gt=0)
    max_nodes_per_read: int | None = Field(None, ge=1, description="cap below the server's own limit")
    max_monitored_items_per_call: int | None = Field(None, ge=1)
    tags: list[OpcUaTagConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> OpcUaDeviceConfig:
        for tag in self.tags:
            if tag.group is not None and tag.group not in self.groups:
                known = ", ".join(sorted(self.groups)) or "none defined"
                raise ValueError(
                    f"device {self.name!r} tag {tag.name!r}: group {tag.group!r} is not under 'groups' "
                    f"(known: {known})"
                )
            if tag.browse_path is not None:
                try:
                    parse_browse_path(tag.browse_path, self.namespace)
                except ValueError as exc:
                    raise ValueError(f"device {self.name!r} tag {tag.name!r}: {exc}") from None
            if tag.deadband is not None and self.acquisition(tag).mode == "poll":
                raise ValueError(
                    f"device {self.name!r} tag {tag.name!r}: a deadband only applies to subscribed tags; "
                    "set mode: subscribe (or a subscribe group) or remove the deadband"
                )
        if self.security.mode == "None" and self.auth.type == "certificate":
            raise ValueError(
                f"device {self.name!r}: X.509 user authentication needs a signed channel; "
                "set security.mode to Sign or SignAndEncrypt"
            )
        return self

    def address(self, tag: OpcUaTagConfig) -> NodeAddress | BrowsePathAddress:
        """The tag's parsed address (validated at load time, so parsing cannot fail here)."""
        if tag.node_id is not None:
            return parse_node_id(tag.node_id)
        assert tag.browse_path is not None
        return parse_browse_path(tag.browse_path, self.namespace)

    def acquisition(self, tag: OpcUaTagConfig) -> TagAcquisition:
        """Merge tag settings over its group over the device defaults."""
        group = self.groups.get(tag.group) if tag.group else None
        mode = tag.mode or (group.mode if group else self.mode)
        publishing = (group.publishing_interval if group else None) or self.poll_interval
        sampling = tag.sampling_interval
        if sampling is None and group is not None:
            sampling = group.sampling_interval
        acq = TagAcquisition(
            mode=mode,
            publishing_interval=publishing,
            sampling_interval=publishing if sampling is None else sampling,
            queue_size=tag.queue_size or (group.queue_size if group else 1),
            deadband=tag.deadband or (group.deadband if group else None),
        )
        # a driver keeps one per tag, and a device's tags mostly share a few: keep one of each
        if len(_ACQUISITIONS) >= 4096:
            _ACQUISITIONS.clear()
        return _ACQUISITIONS.setdefault(acq, acq)

"""The agent's config schema: assets (ISA-95 place), devices (one per driver), delivery, analytics.

Device models come from driver plugins, so :func:`build_config_model` assembles the final
model at load time with a discriminated union on the ``driver`` field.
"""

from __future__ import annotations

__all__ = [
    "AgentConfig",
    "AgentSection",
    "AnalyticsConfig",
    "AssetConfig",
    "DeviceConfig",
    "StateThresholds",
    "StatusPageConfig",
    "TagConfig",
    "build_config_model",
]

import ipaddress
import sys
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    create_model,
    field_validator,
    model_validator,
)

from edge_agent.config.sinks import BufferConfig, InfluxConfig, MqttConfig, SparkplugConfig
from edge_agent.config.types import (
    ROLE_UNITS,
    STATE_NAMES,
    Role,
    Seconds,
    StateName,
    StrictModel,
    Unit,
    checked_before,
    item_model,
)

_ID = r"^[A-Za-z0-9_.-]+$"

#: A name many models repeat (an asset id in each of its tags, a site in each asset): one
#: string object for all, not one per line of the file (~50 bytes each).
Shared = Annotated[str, AfterValidator(sys.intern)]

#: Equal per-asset values, shared: a plant's assets mostly carry the same thresholds and
#: state codes, ~1 kB an asset when each has its own. Config values are never mutated.
_SHARED_VALUES: dict[object, Any] = {}
_MAX_SHARED = 4096


def _share(value: Any, key: object) -> Any:
    if len(_SHARED_VALUES) >= _MAX_SHARED:  # distinct values are few; never grow without bound
        _SHARED_VALUES.clear()
    return _SHARED_VALUES.setdefault(key, value)


class StateThresholds(StrictModel):
    """Power thresholds that classify off / idle / producing when no PLC state tag exists."""

    off_below_kw: float = Field(0.5, ge=0)
    idle_below_kw: float = Field(2.0, ge=0)
    hysteresis_kw: float = Field(0.2, ge=0)
    min_dwell_s: Seconds = Field(2.0, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> StateThresholds:
        if self.idle_below_kw < self.off_below_kw:
            raise ValueError("idle_below_kw must be >= off_below_kw")
        return self


def _state_code_keys(value: object) -> object:
    """YAML gives ``2:`` as an int key and ``"RUN":`` as a str: compare them as text."""
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for k, v in value.items():
            if isinstance(k, bool) or not isinstance(k, int | float | str):
                raise ValueError(f"state code {k!r}: use a number or a string as the PLC value")
            key = str(int(k)) if isinstance(k, float) and k.is_integer() else str(k).strip()
            if key in out:
                raise ValueError(f"PLC state value {k!r} is mapped twice")
            out[key] = v
        return out
    return value


def _shared_codes(codes: dict[str, StateName]) -> dict[str, StateName]:
    return _share(codes, ("state_codes", *codes.items()))  # type: ignore[no-any-return]


def _shared_thresholds(th: StateThresholds) -> StateThresholds:
    return _share(th, th)  # type: ignore[no-any-return]


StateCodes = Annotated[dict[str, StateName], BeforeValidator(_state_code_keys), AfterValidator(_shared_codes)]


class AssetConfig(StrictModel):
    """A machine or meter, placed in the ISA-95 hierarchy (site/area/line/asset)."""

    id: Shared = Field(pattern=_ID)
    site: Shared = Field(pattern=_ID)
    area: Shared = Field(pattern=_ID)
    line: Shared = Field(pattern=_ID)
    kind: Literal["machine", "compressor", "meter"] = "machine"
    description: str = ""
    rated_power_kw: float = Field(gt=0, description="upper bound used to tell counter rollover from reset")
    ideal_cycle_time_s: float | None = Field(None, gt=0)
    states: Annotated[StateThresholds, AfterValidator(_shared_thresholds)] = StateThresholds()
    state_codes: StateCodes = Field(
        default_factory=lambda: _shared_codes({str(i): n for i, n in enumerate(STATE_NAMES)}),
        description="PLC state value (number or string) -> off/idle/setup/producing/fault; "
        "default 0 off, 1 idle, 2 setup, 3 producing, 4 fault",
    )


class TagConfig(StrictModel):
    """What every driver's tag has in common: a name, an asset, a semantic role and a unit."""

    name: str = Field(pattern=_ID)
    asset: Shared = Field(pattern=_ID)
    role: Role = "generic"
    unit: Unit = "1"
    scale: float = 1.0
    offset: float = 0.0
    counter_bits: Literal[16, 32, 64] = 32
    counter_max: int | None = Field(None, gt=0, description="meter maximum if it wraps before 2^bits-1")
    max_rate_per_s: float | None = Field(
        None,
        gt=0,
        description="fastest plausible count rate, engineering units per second (parts, kg); "
        "energy counters default to the asset's rated power",
    )
    resolution: float | None = Field(
        None, gt=0, description="smallest step the counter shows, engineering units (default: one raw count)"
    )
    counter_lag: Seconds | None = Field(
        None,
        ge=0,
        description="how long a reading may lag the count it shows (register update period, gateway "
        "cache); that much more time's worth of counts is plausible in one step (default 2 s)",
    )
    writable: bool = False

    @model_validator(mode="after")
    def _unit_fits_role(self) -> TagConfig:
        allowed = ROLE_UNITS[self.role]
        if self.unit not in allowed:
            raise ValueError(
                f"tag {self.name!r}: role {self.role!r} needs unit {' or '.join(sorted(allowed))}, "
                f"got {self.unit!r}"
            )
        return self

    @model_validator(mode="after")
    def _counter_fields(self) -> TagConfig:
        counter_only = (self.max_rate_per_s, self.resolution, self.counter_lag)
        if not self.is_counter and any(x is not None for x in counter_only):
            raise ValueError(
                f"tag {self.name!r}: max_rate_per_s, resolution and counter_lag apply to counter roles only, "
                f"not {self.role!r}; remove them or give the tag a *_counter role"
            )
        return self

    @property
    def is_counter(self) -> bool:
        return self.role.endswith("_counter")

    @property
    def step_counts(self) -> int:
        """The counter's resolution in raw counts (≥ 1): one step is plausible in any Δt."""
        if self.resolution is None:
            return 1
        return max(1, round(self.resolution / abs(self.scale)))


class DeviceConfig(StrictModel):
    """Fields every device has; drivers subclass it with ``driver: Literal[...]`` and tags."""

    name: str = Field(pattern=_ID)
    driver: str
    enabled: bool = True
    poll_interval: Seconds = Field(1.0, gt=0)
    timeout: Seconds = Field(2.0, gt=0)
    retries: int = Field(1, ge=0, le=10)
    backoff_max: Seconds = Field(30.0, gt=0)
    tags: list[Any] = Field(default_factory=list)

    @field_validator("tags", mode="wrap")
    @classmethod
    def _tags_built_already(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> Any:
        """Tags the loader built and checked in chunks are taken as they are: pydantic would run
        each one's ``mode="after"`` checks again (~0.2 s of CPU for 50,000 tags)."""
        if checked_before(info) and isinstance(value, list):
            built = item_model(cls, "tags")
            if built is not None and set(map(type, value)) <= {built}:
                return value
        return handler(value)

    def tag_configs(self) -> list[TagConfig]:
        return [t for t in self.tags if isinstance(t, TagConfig)]


class AgentSection(StrictModel):
    name: str = Field("edge-agent", pattern=_ID)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    max_concurrent_polls: int = Field(8, ge=1)
    stop_timeout: Seconds = Field(10.0, gt=0)
    stats_log_interval: Seconds = Field(300.0, gt=0, description="log one stats line this often")
    status_interval: Seconds = Field(
        60.0, gt=0, description="re-publish each asset's retained status at least this often"
    )


class AnalyticsConfig(StrictModel):
    kpi_interval: Seconds = Field(60.0, gt=0, description="fixed window published live")
    max_gap: Seconds = Field(10.0, gt=0, description="never integrate power across a longer gap")
    emission_factor_kg_per_kwh: float | None = Field(
        None, ge=0, description="kg CO2e per kWh of your grid mix; without it no CO2e KPI (warned once)"
    )
    shift_start_hours: list[int] = Field(default_factory=lambda: [6, 14, 22])
    timezone: str = Field("UTC", description="IANA zone for shift and day windows, e.g. Europe/Berlin")
    hold_rows: Seconds = Field(
        60.0,
        ge=0,
        description="hold each asset's rows this long and book them in one update (less CPU with "
        "many assets; KPIs up to this much later); at most kpi_interval, 0 books every batch. "
        "Held rows are saved with the analytics state like booked ones, so holding loses nothing "
        "at a restart. The status page and status topic show figures as of the last booking (up "
        "to this much behind)",
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class StatusPageConfig(StrictModel):
    """The local status page with /metrics and /healthz; loopback-only unless protected.

    ``password`` (HTTP Basic, any user name) or ``token`` (``Authorization: Bearer`` or
    ``?token=``) is required on any other address, so a page showing plant data is never
    open on the shop-floor network by accident. Put them in the file as ``${ENV}``.
    """

    enabled: bool = True
    bind: str = "127.0.0.1"
    port: int = Field(8470, ge=1, le=65535)
    password: SecretStr | None = None
    token: SecretStr | None = None

    @model_validator(mode="after")
    def _protected_off_loopback(self) -> StatusPageConfig:
        if self.enabled and not _is_loopback(self.bind) and self.password is None and self.token is None:
            raise ValueError(
                f"status_page.bind {self.bind!r} is not a loopback address: set status_page.password "
                "or status_page.token (e.g. token: ${EDGE_AGENT_STATUS_TOKEN}), or bind 127.0.0.1"
            )
        return self


class AgentConfig(StrictModel):
    """The whole file. ``devices`` is specialised per installed driver by build_config_model."""

    agent: AgentSection = AgentSection()
    assets: list[AssetConfig]
    devices: list[DeviceConfig]
    analytics: AnalyticsConfig = AnalyticsConfig()
    buffer: BufferConfig = BufferConfig()
    mqtt: MqttConfig | None = None
    influxdb: InfluxConfig | None = None
    sparkplug: SparkplugConfig | None = None
    status_page: StatusPageConfig = StatusPageConfig()
    # Where the loader substituted ${VAR}s: dotted path -> the text as written in the file, so a
    # dump can show the reference instead of the value (set by edge_agent.config.loader).
    _env_refs: dict[str, str] = PrivateAttr(default_factory=dict)
    _asset_index: dict[str, AssetConfig] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _references(self) -> AgentConfig:
        asset_ids = [a.id for a in self.assets]
        if len(set(asset_ids)) != len(asset_ids):
            raise ValueError(f"asset ids must be unique, got {asset_ids}")
        names = [d.name for d in self.devices]
        if len(set(names)) != len(names):
            raise ValueError(f"device names must be unique, got {names}")
        known = set(asset_ids)
        for dev in self.devices:
            seen: set[str] = set()
            roles: set[tuple[str, str]] = set()
            tags = dev.tag_configs()
            all_names = {t.name for t in tags}
            for tag in tags:
                if tag.asset not in known:
                    raise ValueError(
                        f"device {dev.name!r} tag {tag.name!r}: asset {tag.asset!r} is not defined "
                        f"under 'assets' (known: {', '.join(sorted(known))})"
                    )
                if tag.name in seen:
                    raise ValueError(f"device {dev.name!r}: tag name {tag.name!r} is used twice")
                seen.add(tag.name)
                if tag.is_counter and f"{tag.name}_raw" in all_names:
                    raise ValueError(
                        f"device {dev.name!r}: tag {tag.name + '_raw'!r} clashes with the raw-count "
                        f"column the agent adds for counter {tag.name!r}; rename it"
                    )
                if tag.role != "generic":
                    key = (tag.asset, tag.role)
                    if key in roles:
                        raise ValueError(
                            f"device {dev.name!r}: asset {tag.asset!r} has two {tag.role!r} tags; "
                            "use role 'generic' for the extra one"
                        )
                    roles.add(key)
        return self

    def asset(self, asset_id: str) -> AssetConfig:
        """The asset by id (KeyError if none); indexed once, as the status topic asks every second."""
        index = self._asset_index
        if index is None or len(index) != len(self.assets):
            index = self._asset_index = {a.id: a for a in self.assets}
        return index[asset_id]


def build_config_model(device_models: list[type[DeviceConfig]]) -> type[AgentConfig]:
    """Specialise ``devices`` to the installed drivers' models, discriminated on ``driver``."""
    if not device_models:
        return AgentConfig
    device_type: Any = (
        device_models[0]
        if len(device_models) == 1
        else Annotated[Union[tuple(device_models)], Field(discriminator="driver")]  # noqa: UP007
    )
    model: type[AgentConfig] = create_model(
        "AgentConfig",
        __base__=AgentConfig,
        devices=(list[device_type], ...),
    )
    return model

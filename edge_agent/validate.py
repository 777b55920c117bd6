"""`edge-agent validate`: every problem with its line, or a summary of what will be polled."""

from __future__ import annotations

__all__ = ["config_summary", "dump_config"]

from collections import Counter
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from edge_agent.config import AgentConfig


def config_summary(config: AgentConfig, console: Console, *, plan: bool = False) -> None:
    """Print devices, tags and poll rates; with ``plan``, each driver's acquisition plan."""
    from edge_agent.plugins import driver_registry

    table = Table(title="devices", show_lines=False)
    for col in ("device", "driver", "poll", "tags", "assets", "roles"):
        table.add_column(col)
    total_tags = 0
    for dev in config.devices:
        tags = dev.tag_configs()
        total_tags += len(tags)
        roles = Counter(t.role for t in tags)
        table.add_row(
            dev.name + ("" if dev.enabled else " (disabled)"),
            dev.driver,
            f"{dev.poll_interval:g} s",
            str(len(tags)),
            _first(sorted({t.asset for t in tags}), "assets"),
            ", ".join(f"{r}×{n}" for r, n in sorted(roles.items())),
        )
    console.print(table)
    console.print(
        f"OK: {len(config.assets)} assets, {len(config.devices)} devices, {total_tags} tags; "
        f"sinks: {', '.join(s for s in ('mqtt', 'influxdb', 'sparkplug') if getattr(config, s)) or 'none'} "
        f"(buffer {config.buffer.path}, cap {config.buffer.max_bytes / 2**20:.0f} MiB)"
    )
    if plan:
        registry = driver_registry()
        for dev in config.devices:
            driver = registry[dev.driver](dev)
            console.print(f"\n[bold]plan for {dev.name}[/bold]")
            console.print(driver.describe_plan(), markup=False, highlight=False)


def _first(names: list[str], what: str, shown: int = 5) -> str:
    """A few names and how many there are: a 10,000-tag device's assets fit in a table cell."""
    if len(names) <= shown:
        return ", ".join(names)
    return f"{', '.join(names[:shown])}, … ({len(names)} {what})"


def dump_config(config: AgentConfig) -> str:
    """The effective config as YAML; SecretStr fields and credentials inside URLs print masked,
    and a value that came from ``${VAR}`` prints as the reference, never as the value."""
    from edge_agent.config.redact import redact

    refs: dict[str, str] = getattr(config, "_env_refs", None) or {}

    def restore(node: Any, path: str) -> Any:
        if path in refs and node != "**********":  # SecretStr fields stay masked
            return refs[path]
        if isinstance(node, dict):
            return {k: restore(v, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [restore(v, f"{path}[{i}]") for i, v in enumerate(node)]
        return node

    return yaml.safe_dump(redact(restore(config.model_dump(mode="json"), "")), sort_keys=False)

"""Unified Namespace topics: render the configured template, and turn it into ingest filters."""

from __future__ import annotations

__all__ = ["data_topic", "status_topic", "subscription_filters"]

import re

from edge_agent.delivery.record import Placement

_FIELD = re.compile(r"\{(\w+)\}")


def data_topic(template: str, kind: str, place: Placement) -> str:
    """Topic of one raw/kpi/status message of one asset."""
    return template.format(site=place.site, area=place.area, line=place.line, asset=place.asset, kind=kind)


def status_topic(template: str, *, site: str, agent: str) -> str:
    """Agent-level birth/will topic."""
    return template.format(site=site, agent=agent)


def subscription_filters(
    template: str, kinds: tuple[str, ...] = ("raw", "kpi"), group: str | None = None
) -> list[str]:
    """One filter per kind, every other placeholder a ``+`` wildcard (config checks they fill a level).

    With ``group`` the filters become MQTT 5 shared subscriptions so workers split the load.
    """
    out = []
    for kind in kinds:
        flt = _FIELD.sub(lambda m: kind if m.group(1) == "kind" else "+", template)  # noqa: B023
        out.append(f"$share/{group}/{flt}" if group else flt)
    return out

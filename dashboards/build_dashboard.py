"""Generate the Grafana dashboard JSON from a short panel list (InfluxQL on InfluxDB 1.x/compat).

Run ``python dashboards/build_dashboard.py`` after editing PANELS; tests fail while the
committed JSON and this generator disagree, and run every query against a real InfluxDB.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

OUT = Path(__file__).with_name("edge-agent-plant.json")
# Matches the provisioned datasource in provisioning/datasources/edge-agent.yaml.
DATASOURCE = {"type": "influxdb", "uid": "edge-agent-influxdb"}


@dataclass(frozen=True)
class Panel:
    title: str
    query: str
    kind: str = "timeseries"  # timeseries | barchart | stat | table
    unit: str = "none"
    width: int = 12
    description: str = ""


def kpi(select: str, window: str, group: str = 'time($__interval), "asset"') -> str:
    return (
        f'SELECT {select} FROM "kpi" WHERE "window" = \'{window}\' AND "asset" =~ /^$asset$/ '
        f"AND $timeFilter GROUP BY {group} fill(null)"
    )


PANELS: list[Panel] = [
    Panel(
        "Active power per asset",
        'SELECT mean("power_kw") FROM "raw" WHERE "asset" =~ /^$asset$/ AND $timeFilter '
        'GROUP BY time($__interval), "asset" fill(null)',
        unit="kwatt",
        description="Instantaneous power as polled (Good and Uncertain samples only).",
    ),
    Panel(
        "Energy meter reading per asset",
        'SELECT last("energy_kwh") FROM "raw" WHERE "asset" =~ /^$asset$/ AND $timeFilter '
        'GROUP BY time($__interval), "asset" fill(null)',
        unit="kwatth",
        description="The energy counter as the meter shows it, in kWh (scale applied by the agent; "
        "the exact raw count is in energy_kwh_raw). Steps down at a meter swap or rollover.",
    ),
    Panel(
        "Energy by machine state (15 min)",
        kpi(
            'sum("energy_producing_kwh") AS "producing", sum("energy_idle_kwh") AS "idle", '
            'sum("energy_setup_kwh") AS "setup", sum("energy_fault_kwh") AS "fault", '
            'sum("energy_off_kwh") AS "off", sum("energy_unknown_kwh") AS "unattributed"',
            "15min",
            'time(15m), "asset"',
        ),
        kind="barchart",
        unit="kwatth",
        description="Where the energy goes: idle and off energy are the first savings levers.",
    ),
    Panel(
        "kWh per good part (1 h)",
        kpi('last("sec_kwh_per_good_part")', "1h", 'time(1h), "asset"'),
        unit="kwatth",
        description="Specific energy consumption per good unit (ISO 22400). Falls with volume "
        "alone when base load is high: use 'edge-agent evaluate' for savings.",
    ),
    Panel(
        "Idle share (1 h)",
        kpi('last("idle_share")', "1h", 'time(1h), "asset"'),
        unit="percentunit",
    ),
    Panel(
        "OEE per shift",
        kpi(
            'last("oee") AS "OEE", last("availability") AS "availability", '
            'last("effectiveness") AS "effectiveness", last("quality_ratio") AS "quality"',
            "shift",
            'time(8h), "asset"',
        ),
        kind="barchart",
        unit="percentunit",
        description="ISO 22400-2: availability × effectiveness × quality ratio.",
    ),
    Panel(
        "Scrap ratio and material yield (1 h)",
        kpi(
            'last("scrap_ratio") AS "scrap ratio", last("material_yield") AS "material yield"',
            "1h",
            'time(1h), "asset"',
        ),
        unit="none",
    ),
    Panel(
        "Peak 15-min demand (per day)",
        kpi(
            'max("peak_demand_kw") AS "fixed block", max("peak_demand_rolling_kw") AS "rolling"',
            "day",
            'time(1d), "asset"',
        ),
        kind="barchart",
        unit="kwatt",
        description="Largest mean power over a 15-minute block: what the grid tariff bills.",
    ),
    Panel(
        "Compressed air: specific power and load share (15 min)",
        kpi(
            'last("specific_power_kw_per_m3min") AS "kW per m³/min", last("load_share") AS "load share"',
            "15min",
            'time(15m), "asset"',
        ),
        unit="none",
    ),
    Panel(
        "CO2e per day",
        kpi('sum("co2e_kg")', "day", 'time(1d), "asset"'),
        kind="barchart",
        unit="masskg",
    ),
    Panel(
        "Power factor (1 h)",
        kpi('last("power_factor")', "1h", 'time(1h), "asset"'),
        unit="none",
    ),
    Panel(
        "Data coverage (share of each window with Good data)",
        kpi('min("coverage")', "15min", 'time(15m), "asset"'),
        unit="percentunit",
        width=24,
        description="Below 1 means polls failed or samples were Bad: KPIs of that window are partial.",
    ),
]


def _panel(i: int, p: Panel, y: int, x: int) -> dict[str, object]:
    return {
        "id": i + 1,
        "type": p.kind,
        "title": p.title,
        "description": p.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": p.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom"}},
        "targets": [
            {
                "refId": "A",
                "datasource": DATASOURCE,
                "rawQuery": True,
                "resultFormat": "time_series",
                "query": p.query,
                "alias": "$tag_asset $col",
            }
        ],
    }


def dashboard() -> dict[str, object]:
    panels, x, y = [], 0, 0
    for i, p in enumerate(PANELS):
        if x + p.width > 24:
            x, y = 0, y + 8
        panels.append(_panel(i, p, y, x))
        x += p.width
    return {
        "title": "edge-agent: plant efficiency",
        "uid": "edge-agent-plant",
        "tags": ["edge-agent", "energy", "efficiency"],
        "timezone": "browser",
        "schemaVersion": 39,
        "refresh": "30s",
        "time": {"from": "now-24h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "asset",
                    "label": "asset",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": 'SHOW TAG VALUES FROM "kpi" WITH KEY = "asset"',
                    "includeAll": True,
                    "multi": True,
                    "current": {"text": "All", "value": "$__all"},
                    "refresh": 2,
                }
            ]
        },
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT}")

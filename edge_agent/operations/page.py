"""The status page's HTML, rendered on the server: the whole page once, then its sections live.

The page's script only swaps in the sections the server re-renders (sent over SSE), so
there is one renderer, no front-end build and no client-side templating to keep in step.
"""

from __future__ import annotations

__all__ = ["SECTIONS", "render_page", "render_sections", "sections_event", "sparkline"]

import datetime as dt
import json
import math
from collections.abc import Callable, Sequence
from html import escape

from edge_agent.operations.health import Health, assess
from edge_agent.operations.snapshot import AssetStatus, DeviceHealth, Snapshot

SECTIONS = ("summary", "assets", "devices", "delivery")

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.2em;color:#222;background:#fafafa}
h1{font-size:1.3em;margin:0 0 .2em} h2{font-size:1.05em;margin:1.2em 0 .3em}
table{border-collapse:collapse;background:#fff;min-width:40em}
th,td{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}
th:first-child,td:first-child,td.text{text-align:left}
td.err{color:#a00;white-space:normal;max-width:32em;text-align:left}
.badge{display:inline-block;padding:0 .5em;border-radius:.6em;color:#fff;font-size:.9em}
.ok,.producing{background:#2a7d2a}.bad,.fault{background:#b22}.idle,.setup{background:#c80}
.off,.unknown{background:#777} .meta{color:#555} svg{vertical-align:middle}
#live{font-size:.85em;color:#777}
"""

_JS = """
(function(){
  var live=document.getElementById('live');
  var es=new EventSource('events'+location.search);
  es.onmessage=function(e){
    var s=JSON.parse(e.data);
    for(var k in s){var el=document.getElementById(k); if(el){el.innerHTML=s[k];}}
    live.textContent='live, updated '+new Date().toLocaleTimeString();
  };
  es.onerror=function(){live.textContent='connection lost, retrying...';};
})();
"""


def _num(v: float, fmt: str = "{:.1f}") -> str:
    return fmt.format(v) if math.isfinite(v) else "–"


def _pct(v: float) -> str:
    return f"{100 * v:.1f} %" if math.isfinite(v) else "–"


def _ago(ns: int | None, now_ns: int) -> str:
    if ns is None:
        return "never"
    s = max(0.0, (now_ns - ns) / 1e9)
    when = dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).strftime("%H:%M:%S UTC")
    return f"{when} ({s:.0f} s ago)" if s < 3600 else f"{when} ({s / 3600:.1f} h ago)"


def _duration(s: float) -> str:
    d, rem = divmod(int(s), 86400)
    h, rem = divmod(rem, 3600)
    m, sec = divmod(rem, 60)
    return f"{d}d {h:02d}:{m:02d}:{sec:02d}" if d else f"{h:02d}:{m:02d}:{sec:02d}"


def sparkline(points: Sequence[float], width: int = 120, height: int = 24) -> str:
    """An inline SVG polyline of the finite points; no axes (the number beside it gives the value)."""
    vals = [p for p in points if math.isfinite(p)]
    if len(vals) < 2:
        return f'<svg width="{width}" height="{height}"></svg>'
    lo, hi = min(vals), max(vals)
    span = hi - lo or 1.0
    step = width / (len(vals) - 1)
    pts = " ".join(
        f"{i * step:.1f},{height - 1 - (v - lo) / span * (height - 2):.1f}" for i, v in enumerate(vals)
    )
    return (
        f'<svg width="{width}" height="{height}" role="img" aria-label="kW trend">'
        f'<polyline fill="none" stroke="#2a5db0" stroke-width="1.5" points="{pts}"/></svg>'
    )


def _badge(text: str, cls: str) -> str:
    return f'<span class="badge {escape(cls)}">{escape(text)}</span>'


def _table(head: Sequence[str], rows: Sequence[str]) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _summary(snap: Snapshot, health: Health) -> str:
    badge = _badge("healthy", "ok") if health.ok else _badge("unhealthy", "bad")
    reasons = "".join(f"<li>{escape(r)}</li>" for r in health.reasons)
    return (
        f'<p class="meta">version {escape(snap.version)} · up {_duration(snap.uptime_s)} · '
        f"config <code>{escape(snap.config_file)}</code> · reloads {snap.reloads}"
        f"{' (' + escape(snap.last_reload) + ')' if snap.last_reload else ''}</p>"
        f"<p>{badge}</p>{'<ul>' + reasons + '</ul>' if reasons else ''}"
    )


def _state(a: AssetStatus) -> str:
    """Meters have no operating state: say so rather than 'unknown'."""
    return _badge("meter", "unknown") if a.kind == "meter" else _badge(a.state, a.state)


def _asset_row(a: AssetStatus) -> str:
    return (
        f'<tr data-asset="{escape(a.id)}"><td>{escape(a.id)}</td>'
        f'<td class="text" data-field="state">{_state(a)}</td>'
        f"<td>{_num(a.kw)}</td><td>{sparkline(a.kw_history)}</td><td>{_num(a.kwh_today, '{:.2f}')}</td>"
        f"<td>{_pct(a.idle_share)}</td><td>{_num(a.kwh_per_good_part, '{:.3f}')}</td>"
        f"<td>{_pct(a.scrap_ratio)}</td></tr>"
    )


def _quality_mix(q: dict[str, int]) -> str:
    total = sum(q.values())
    if not total:
        return "–"
    return " / ".join(f"{k} {100 * v / total:.1f} %" for k, v in q.items() if v)


def _device_row(d: DeviceHealth, now_ns: int) -> str:
    status = (
        _badge("good", "ok")
        if d.up
        else _badge("bad" if d.error else "starting", "bad" if d.error else "unknown")
    )
    return (
        f'<tr data-device="{escape(d.name)}"><td>{escape(d.name)}</td>'
        f'<td class="text">{escape(d.driver)}</td><td class="text" data-field="status">{status}</td>'
        f'<td class="text">{_ago(d.last_good_ns, now_ns)}</td>'
        f'<td data-field="polls">{d.polls}</td><td>{d.skipped}</td><td>{d.failures}</td>'
        f'<td class="text">{_quality_mix(d.quality)}</td>'
        f'<td class="err" data-field="error">{escape(d.error or "")}</td></tr>'
    )


def _delivery(snap: Snapshot) -> str:
    b = snap.buffer
    buf = _table(
        ["buffer", "rows", "bytes", "on disk", "dropped samples"],
        [
            f"<tr><td>durable buffer</td><td>{b.rows}</td><td>{b.bytes}</td>"
            f"<td>{b.file_bytes}</td><td>{b.dropped}</td></tr>"
        ],
    )
    rows = [
        f'<tr data-sink="{escape(s.name)}"><td>{escape(s.name)}</td>'
        f'<td class="text">{_badge("connected", "ok") if s.connected else _badge("disconnected", "bad")}</td>'
        f'<td data-field="backlog">{s.backlog}</td><td data-field="delivered">{s.delivered}</td>'
        f"<td>{s.retried}</td><td>{s.dropped}</td><td>{s.quarantined}</td>"
        f'<td class="err">{escape(s.error or "")}</td></tr>'
        for s in snap.sinks
    ]
    head = ["sink", "link", "backlog", "delivered", "retried", "dropped", "quarantined", "error"]
    sinks = _table(head, rows or ['<tr><td class="text" colspan="8">no sinks configured</td></tr>'])
    return buf + "<p></p>" + sinks


def render_sections(snap: Snapshot) -> dict[str, str]:
    health = assess(snap)
    renderers: dict[str, Callable[[], str]] = {
        "summary": lambda: _summary(snap, health),
        "assets": lambda: _table(
            ["asset", "state", "kW", "trend", "kWh today", "idle share", "kWh / good part", "scrap"],
            [_asset_row(a) for a in snap.assets],
        ),
        "devices": lambda: _table(
            [
                "device",
                "driver",
                "health",
                "last good poll",
                "polls",
                "skipped",
                "failures",
                "quality mix",
                "error",
            ],
            [_device_row(d, snap.taken_ns) for d in snap.devices],
        ),
        "delivery": lambda: _delivery(snap),
    }
    return {k: renderers[k]() for k in SECTIONS}


def render_page(snap: Snapshot) -> str:
    s = render_sections(snap)
    title = escape(f"edge-agent {snap.agent}")
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{_CSS}</style></head>'
        f'<body><h1>{title}</h1><div id="summary">{s["summary"]}</div><span id="live">connecting…</span>'
        f'<h2>Assets</h2><div id="assets">{s["assets"]}</div>'
        f'<h2>Devices</h2><div id="devices">{s["devices"]}</div>'
        f'<h2>Delivery</h2><div id="delivery">{s["delivery"]}</div>'
        f"<script>{_JS}</script></body></html>"
    )


def sections_event(snap: Snapshot) -> str:
    """One SSE ``data:`` line (JSON has no raw newlines)."""
    return "data: " + json.dumps(render_sections(snap), separators=(",", ":")) + "\n\n"

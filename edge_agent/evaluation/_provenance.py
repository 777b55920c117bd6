"""What a signer needs beside the numbers: who and what, which files exactly (SHA-256), which
software version, the weather source, the units, the non-routine adjustments, the model as an
equation, and a sign-off block.
"""

from __future__ import annotations

__all__ = [
    "InputFile",
    "Provenance",
    "model_equation",
    "provenance_html",
    "provenance_to_dict",
    "sha256_file",
    "signoff_html",
]

import hashlib
from dataclasses import dataclass, field
from html import escape
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from edge_agent.evaluation._model import FittedModel


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _edge_agent_version() -> str:
    try:
        return version("edge-agent")
    except PackageNotFoundError:
        return "unknown (not installed as a package)"


@dataclass(frozen=True, slots=True)
class InputFile:
    role: str  # "data", "plan", "weather" …
    path: str
    sha256: str

    @classmethod
    def of(cls, role: str, path: Path) -> InputFile:
        return cls(role, str(path), sha256_file(path))


@dataclass(frozen=True)
class Provenance:
    """Identity and traceability of one evaluation; filled by the CLI from flags or the plan."""

    identity: dict[str, str] = field(default_factory=dict)  # project, site, measure, boundary, evaluator …
    inputs: tuple[InputFile, ...] = ()
    weather_source: str = ""
    units: str = "Energy data in kWh."
    temperature_unit: str = "C"
    co2e_kg_per_kwh: float | None = None
    version: str = field(default_factory=_edge_agent_version)
    command: str = ""


_LABELS = {
    "name": "Project",
    "id": "Project ID",
    "site": "Site",
    "measure": "Measure (ECM)",
    "boundary": "Measurement boundary (IPMVP option)",
    "evaluator": "Evaluator",
    "organisation": "Organisation",
}


def _fmt(x: float) -> str:
    return f"{x:,.4g}" if abs(x) < 1000 else f"{x:,.1f}"


def model_equation(model: FittedModel, temperature_unit: str = "C") -> str:
    """The fitted model as one line, e.g. ``E = 6.94 + 0.042·production + 150·[production > 0]``."""
    spec = model.spec
    head = "E[kWh per bucket] = "
    if spec.time_of_week:
        head += "c[hour of week]"
    else:
        head += _fmt(float(model.constants[0]))
    parts = [head]
    bps = [b.value for b in model.balance_points]
    for c in model.slopes:
        name = c.name
        if name.endswith(" slope") and "temperature" not in name and "change point" not in name:
            var = name[: -len(" slope")]
            if var in ("heating", "cooling"):
                var = f"HDD(T, {bps[0]:.1f} °C)" if var == "heating" else f"CDD(T, {bps[-1]:.1f} °C)"
        elif name.startswith("extra constant while"):
            var = "[" + name[len("extra constant while ") :] + "]"
        elif name.startswith("weekend change"):
            var = f"[{spec.on_off.label if spec.on_off else 'operating'} > 0 on a weekend]"
        elif name == "temperature slope":
            var = "T"
        elif name == "slope below change point":
            var = f"HDD(T, {bps[0]:.1f} °C)"
        elif name == "slope above change point":
            var = f"CDD(T, {bps[0]:.1f} °C)"
        else:
            var = name
        sign = "−" if c.value < 0 else "+"
        parts.append(f" {sign} {_fmt(abs(c.value))}·{var}")
    eq = "".join(parts)
    if temperature_unit == "F" and bps:
        eq += " (balance points " + ", ".join(f"{b:.1f} °C = {b * 9 / 5 + 32:.1f} °F" for b in bps) + ")"
    return eq


def provenance_to_dict(p: Provenance) -> dict[str, Any]:
    return {
        "identity": dict(p.identity),
        "edge_agent_version": p.version,
        "inputs": [{"role": f.role, "path": f.path, "sha256": f.sha256} for f in p.inputs],
        "weather_source": p.weather_source,
        "units": p.units,
        "temperature_unit": p.temperature_unit,
        "co2e_kg_per_kwh": p.co2e_kg_per_kwh,
        "command": p.command,
    }


def provenance_html(p: Provenance) -> str:
    rows = "".join(
        f"<tr><th>{escape(_LABELS.get(k, k))}</th><td>{escape(v) or '—'}</td></tr>"
        for k, v in p.identity.items()
    )
    ident = (
        f'<table id="identity">{rows}</table>'
        if rows
        else '<p class="note">No M&amp;V plan identity given.</p>'
    )
    files = "".join(
        f"<tr><td>{escape(f.role)}</td><td><code>{escape(f.path)}</code></td>"
        f'<td class="hash"><code>{f.sha256}</code></td></tr>'
        for f in p.inputs
    )
    co2 = f"{p.co2e_kg_per_kwh:g} kg CO2e/kWh" if p.co2e_kg_per_kwh is not None else "not given"
    return f"""{ident}
<table id="provenance"><tr><th>edge-agent version</th><td>{escape(p.version)}</td></tr>
<tr><th>Weather source</th><td>{escape(p.weather_source) or "not stated"}</td></tr>
<tr><th>Units</th><td>{escape(p.units)} Temperatures in °{escape(p.temperature_unit)} on input.</td></tr>
<tr><th>Emission factor</th><td>{escape(co2)}</td></tr>
<tr><th>Command</th><td><code>{escape(p.command)}</code></td></tr></table>
<table id="checksums"><tr><th>Input</th><th>File</th><th>SHA-256</th></tr>{files}</table>"""


def signoff_html(p: Provenance) -> str:
    evaluator = escape(p.identity.get("evaluator", ""))
    cell = '<td class="sign"></td>'
    return f"""<table id="signoff"><tr><th>Role</th><th>Name</th><th>Signature</th><th>Date</th></tr>
<tr><td>Evaluator</td><td>{evaluator}</td>{cell}{cell}</tr>
<tr><td>Reviewer</td><td></td>{cell}{cell}</tr>
<tr><td>Programme / funder</td><td></td>{cell}{cell}</tr></table>
<p class="note">By signing, the evaluator confirms the plan above was fixed before the result was known
and the inputs match the checksums listed.</p>"""

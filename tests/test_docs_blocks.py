"""Every YAML, Python, JSON and TOML block in the READMEs is validated or executed.

- YAML that is an agent config (it has ``assets`` and ``devices``) must pass ``edge-agent
  validate``. A fragment (only ``devices``, or only delivery settings) is completed with the
  assets its tags name and must pass too. Other YAML must parse.
- Python blocks of one file run in order in one namespace, in a temporary directory, as a
  reader would paste them into one session.
- JSON data messages must decode with the ingest decoder; other JSON and TOML must parse.

A block that cannot run on its own is marked ``<!-- doc-test: skip reason="..." -->`` just
before its fence (see tests/docblocks.py); the reason shows in the test report. Tutorials
under docs/tutorials/ are run, commands included, by tests/test_tutorials.py.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from docblocks import Block, read_blocks

from edge_agent.config.loader import parse_config
from edge_agent.delivery.payload import decode_payload

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted(
    {
        ROOT / "README.md",
        *ROOT.glob("edge_agent/**/README.md"),
        *ROOT.glob("simulators/**/*.md"),
        ROOT / "docs" / "kpi-definitions.md",
    }
)
CHECKED = {"yaml", "yml", "python", "py", "json", "toml"}


def _blocks(langs: set[str]) -> list[Block]:
    return [b for doc in DOCS for b in read_blocks(doc) if b.lang in langs]


def _id(block: Block) -> str:
    return f"{block.source.relative_to(ROOT)}:{block.line}"


def _skip_if_marked(block: Block) -> None:
    if block.has("skip"):
        reason = block.directives["skip"] or block.directives.get("reason", "")
        assert reason, f'{_id(block)}: a skipped block must say why (skip reason="...")'
        pytest.skip(f"{_id(block)} marked not runnable: {reason}")


def _secrets(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in set(re.findall(r"\$\{(\w+)\}", text)):
        monkeypatch.setenv(var, "doc-test-secret")


def _complete(data: dict[str, Any]) -> dict[str, Any]:
    """A fragment plus the assets its tags name, so the whole config model can check it."""
    out = dict(data)
    out.setdefault("devices", [])
    named = {t.get("asset") for d in out["devices"] for t in d.get("tags", []) if isinstance(t, dict)}
    out.setdefault(
        "assets",
        [
            {"id": a, "site": "s1", "area": "a1", "line": "l1", "kind": "machine", "rated_power_kw": 100}
            for a in sorted(x for x in named if x)
        ],
    )
    return out


@pytest.mark.parametrize("block", _blocks({"yaml", "yml"}), ids=_id)
def test_yaml_block_validates(block: Block, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _skip_if_marked(block)
    _secrets(block.text, monkeypatch)
    monkeypatch.chdir(tmp_path)
    data = yaml.safe_load(block.text)
    config_keys = {"assets", "devices", "buffer", "mqtt", "influxdb", "analytics", "agent"}
    if not (isinstance(data, dict) and config_keys & data.keys()):
        return  # YAML, but not an agent config: parsing it was the check
    text = block.text if {"assets", "devices"} <= data.keys() else yaml.safe_dump(_complete(data))
    # Raises ConfigError with every problem and its line (lines of the block) on failure.
    parse_config(text, file=_id(block))


def _runnable_python(doc: Path) -> bool:
    return any(b.lang in {"python", "py"} and not b.has("skip") for b in read_blocks(doc))


def test_python_blocks_marked_not_runnable_say_why() -> None:
    for doc in DOCS:
        for block in read_blocks(doc):
            if block.lang in {"python", "py"} and block.has("skip"):
                reason = block.directives["skip"] or block.directives.get("reason", "")
                assert reason, f'{_id(block)}: a skipped block must say why (skip reason="...")'


@pytest.mark.parametrize(
    "doc",
    [d for d in DOCS if _runnable_python(d)],  # a README of sketches only has nothing to run
    ids=lambda d: str(d.relative_to(ROOT)),
)
def test_python_blocks_run(doc: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": f"doc_{doc.stem}"}
    skipped: list[str] = []
    ran = 0
    for block in read_blocks(doc):
        if block.lang not in {"python", "py"}:
            continue
        if block.has("skip"):
            reason = block.directives["skip"] or block.directives.get("reason", "")
            assert reason, f'{_id(block)}: a skipped block must say why (skip reason="...")'
            skipped.append(f"{_id(block)} ({reason})")
            continue
        code = compile(block.text, _id(block), "exec")
        exec(code, namespace)
        ran += 1
    assert ran, f"{doc}: no Python block ran; skipped: {'; '.join(skipped)}"


@pytest.mark.parametrize("block", _blocks({"json"}), ids=_id)
def test_json_block_parses(block: Block) -> None:
    _skip_if_marked(block)
    data = json.loads(block.text)
    if isinstance(data, dict) and {"v", "kind", "ts", "values"} <= data.keys():
        decoded = decode_payload(block.text.encode())  # the ingest decoder: schema and lengths
        assert decoded is not None


@pytest.mark.parametrize("block", _blocks({"toml"}), ids=_id)
def test_toml_block_parses(block: Block) -> None:
    _skip_if_marked(block)
    tomllib.loads(block.text)


def test_directives_are_recognised() -> None:
    """A typo in a directive would silently run (or not run) a block: refuse unknown keys."""
    known = {
        "skip",
        "reason",
        "file",
        "background",
        "ready",
        "stop",
        "retry",
        "expect",
        "fixture",
        "pending",
        "root",
        "timeout",
    }
    for doc in [*DOCS, *ROOT.glob("docs/tutorials/*.md")]:
        for block in read_blocks(doc):
            unknown = set(block.directives) - known
            assert not unknown, f"{_id(block)}: unknown doc-test directive(s) {sorted(unknown)}"


def test_every_checked_language_is_covered() -> None:
    """The READMEs have blocks of each checked kind, so the tests above are not vacuous."""
    langs = {b.lang for doc in DOCS for b in read_blocks(doc)}
    assert {"yaml", "python", "json", "toml"} <= langs & CHECKED


def test_readme_driver_is_the_tutorials_driver() -> None:
    """The README's driver and the tutorial's acme_meter/driver.py are one text, so they cannot drift."""
    readme = [b.text for b in read_blocks(ROOT / "README.md") if "class AcmeDriver" in b.text]
    tutorial = ROOT / "docs" / "tutorials" / "write-a-driver-plugin.md"
    packaged = [
        b.text for b in read_blocks(tutorial) if b.directives.get("file") == "acme-meter/acme_meter/driver.py"
    ]
    assert len(readme) == 1 and len(packaged) == 1
    assert readme[0] == packaged[0], "update the README's driver and the tutorial's driver.py together"

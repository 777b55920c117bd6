"""Shared test setup. Real-server fixtures live in tests/servers.py and tests/plant.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# tests/ is on sys.path (rootdir conftest), so the fixture modules import by name.
from plant import plant_server  # noqa: F401
from servers import *  # noqa: F403

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, what: str) -> None:
    """Skip locally, but fail in CI: a missing server must never pass silently there."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but missing")
    pytest.skip(f"{what} not available")


@pytest.fixture
def write_config(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Write YAML text to a temp file and return its path."""

    def _write(text: str, name: str = "config.yaml") -> Path:
        p = tmp_path / name
        p.write_text(text, encoding="utf-8")
        return p

    return _write

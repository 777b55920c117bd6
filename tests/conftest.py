"""Shared test setup. Real-server fixtures live in tests/servers.py and are re-exported here."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

if importlib.util.find_spec("servers") is not None:  # tests/ is on sys.path (rootdir conftest)
    from servers import *  # noqa: F403


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

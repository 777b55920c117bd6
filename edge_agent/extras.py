"""Optional extras: which command needs which, and a plain error when one is missing.

A gateway installs only the base package (``run``, ``ingest``, ``validate``). The report
stack, the demo's embedded broker and the conformance kit are extras, so a command that
needs one checks for it first and names the ``pip install`` that fixes it, instead of
failing later with a bare ImportError from deep inside.
"""

from __future__ import annotations

__all__ = ["EXTRAS", "require_extra"]

from importlib.util import find_spec

from edge_agent.errors import MissingExtraError

#: extra name -> the import names it provides (kept in step with pyproject.toml)
EXTRAS: dict[str, tuple[str, ...]] = {
    "evaluate": ("matplotlib", "scipy"),
    "demo": ("amqtt",),
    "testing": ("pytest", "pytest_asyncio"),
}


def require_extra(extra: str, what: str) -> None:
    """Raise MissingExtraError naming the extra if any of its packages is not importable."""
    missing = [name for name in EXTRAS[extra] if find_spec(name) is None]
    if missing:
        raise MissingExtraError(
            f"{what} needs the '{extra}' extra ({', '.join(missing)} not installed). "
            f"Install it with: pip install 'edge-agent[{extra}]'"
        )

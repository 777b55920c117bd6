"""The PUBACK bridge the Sparkplug sink uses; it lives in edge_agent.delivery.puback, shared
with the UNS sink (import it from there: this name stays for sink.py's import)."""

from __future__ import annotations

__all__ = ["PubackBridge"]

from edge_agent.delivery.puback import PubackBridge

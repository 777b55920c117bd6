"""What the analytics needs to continue after the agent restarts, kept beside the buffer.

A kill -9, an upgrade or a power cut must not cost the KPIs: the last counter readings let
the first delta after the restart recover the energy and parts made while the agent was
down (booked in the ``unknown`` state — unattributed — with the gap counted), and the open
windows continue, so a window reported twice is always the fuller one.

The file ``<buffer>.analytics-state`` holds one pickle of every asset's
:class:`StreamingAnalytics`, behind a header with a format version and a fingerprint of
the config parts that shape the analytics. It is written atomically (temporary file,
fsync, rename) and cheaply: when a KPI window has closed (saved with the windows it closed,
replayed after a crash before their hand-over, so a window is never lost and an emitted one
is never open again in the saved state), every ``interval`` seconds (spaced further when the
pickle is big, so saving costs at most 2 % of the time), and at shutdown — never per poll.
A missing, corrupt or foreign file (another config, another format) means a clean start
with one warning, never a crash. Loading only accepts edge_agent and numpy types.
"""

from __future__ import annotations

__all__ = ["AnalyticsStateStore"]

import hashlib
import io
import json
import logging
import os
import pickle
import time
from pathlib import Path
from typing import Any

from edge_agent.config import AgentConfig

log = logging.getLogger("edge_agent.agent")

_MAGIC = b"edge-agent analytics state v2\n"  # v2: window sums count unattributed parts
_ALLOWED = ("edge_agent.", "numpy", "builtins", "collections", "datetime", "zoneinfo", "copyreg")


class _Unpickler(pickle.Unpickler):
    """Only the types the analytics state is made of: a tampered file cannot run code."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in ("eval", "exec", "compile", "open", "__import__", "getattr"):
            raise pickle.UnpicklingError(f"refusing builtins.{name}")
        if not module.startswith(_ALLOWED):
            raise pickle.UnpicklingError(f"refusing type {module}.{name}")
        return super().find_class(module, name)


def config_fingerprint(config: AgentConfig) -> bytes:
    """Digest of what shapes the analytics: assets, tags and the analytics section."""
    doc = {
        "assets": [a.model_dump(mode="json") for a in config.assets],
        "tags": [t.model_dump(mode="json") for d in config.devices for t in d.tag_configs()],
        "analytics": config.analytics.model_dump(mode="json"),
    }
    # sorted keys: the same config written in another key order is the same config
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).digest()


#: Periodic saves are spaced so that pickling takes at most 1/50 (2 %) of the time.
_COST_SHARE = 50


class AnalyticsStateStore:
    """Saves and restores the analytics state of one agent (see the module docstring)."""

    def __init__(self, path: Path, config: AgentConfig, *, interval: float = 5.0) -> None:
        self.path = path
        self.interval = interval
        self._fingerprint = config_fingerprint(config)
        self._last_save = 0.0
        self._spacing = interval
        self._failing = False
        self.saves = 0

    @classmethod
    def beside_buffer(cls, config: AgentConfig) -> AnalyticsStateStore:
        buf = config.buffer.path
        return cls(buf.with_name(buf.name + ".analytics-state"), config)

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None (clean start; warned once unless the file is simply new)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            log.warning("no analytics state at %s: KPIs start clean (normal on the first start)", self.path)
            return None
        except OSError as exc:
            log.warning("analytics state %s unreadable (%s): KPIs start clean", self.path, exc)
            return None
        head = len(_MAGIC)
        if data[:head] != _MAGIC or data[head : head + 32] != self._fingerprint:
            log.warning(
                "analytics state %s is from another config or agent version: KPIs start clean "
                "(energy made while the agent was down is not recovered this once)",
                self.path,
            )
            return None
        try:
            state = _Unpickler(io.BytesIO(data[head + 32 :])).load()
        except Exception as exc:  # any damage: truncated, bit rot, tampering
            log.warning("analytics state %s is damaged (%s): KPIs start clean", self.path, exc)
            return None
        if not isinstance(state, dict):
            log.warning("analytics state %s has an unexpected shape: KPIs start clean", self.path)
            return None
        return state

    def save(self, state: dict[str, Any]) -> None:
        """Write atomically: a crash mid-write leaves the previous file intact."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        started = time.monotonic()
        self._last_save = started  # also after a failure: retry at the next interval
        payload = _MAGIC + self._fingerprint + pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        # Periodic saves may cost at most 1/_COST_SHARE of the time: thousands of assets make
        # the pickle big, and continuity must never eat the gateway's CPU.
        self._spacing = max(self.interval, _COST_SHARE * (time.monotonic() - started))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            if not self._failing:
                log.warning(
                    "cannot save the analytics state to %s (%s); measuring goes on, but a restart "
                    "now would start the KPIs clean. Free space or fix permissions there.",
                    self.path,
                    exc,
                )
            self._failing = True
            return
        if self._failing:
            log.info("analytics state saved again to %s", self.path)
        self._failing = False
        self.saves += 1

    def due(self) -> bool:
        """True when the periodic save is due."""
        return time.monotonic() - self._last_save >= self._spacing

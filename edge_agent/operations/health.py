"""Is the agent doing its job? Polling (some device answered recently) and delivering (sinks up).

/healthz, the systemd watchdog and the stats line all ask this one function, so they can
never disagree about what "healthy" means.
"""

from __future__ import annotations

__all__ = ["STALE_AFTER_MIN_S", "Health", "assess"]

from dataclasses import dataclass

from edge_agent.operations.snapshot import Snapshot

#: A device's last good poll older than max(this, 3 poll intervals) no longer counts as polling.
STALE_AFTER_MIN_S = 10.0


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    reasons: tuple[str, ...]

    def as_json(self) -> dict[str, object]:
        return {"status": "ok" if self.ok else "unhealthy", "reasons": list(self.reasons)}


def _polling(snap: Snapshot) -> list[str]:
    if not snap.devices:
        return ["no enabled device is configured"]
    fresh = []
    for d in snap.devices:
        stale_ns = max(STALE_AFTER_MIN_S, 3 * d.poll_interval) * 1e9
        if d.last_good_ns is not None and snap.taken_ns - d.last_good_ns <= stale_ns:
            fresh.append(d.name)
    if fresh:
        return []
    errors = "; ".join(f"{d.name}: {d.error}" for d in snap.devices if d.error)
    return [
        f"not polling: no device answered in the last {STALE_AFTER_MIN_S:g} s"
        + (f" ({errors})" if errors else "")
    ]


def _delivering(snap: Snapshot) -> list[str]:
    out = []
    for s in snap.sinks:
        if not s.connected:
            out.append(
                f"not delivering: sink {s.name} is not connected"
                + (f" ({s.error})" if s.error else "")
                + f"; {s.backlog} samples wait in the buffer"
            )
        elif s.error:
            out.append(f"not delivering: sink {s.name} fails: {s.error}; {s.backlog} samples wait")
    return out


def assess(snap: Snapshot) -> Health:
    """Healthy = every loop alive, at least one device polled recently, every sink delivering."""
    reasons = [f"loop {name} is not running" for name in snap.dead_loops]
    reasons += _polling(snap) + _delivering(snap)
    return Health(not reasons, tuple(reasons))

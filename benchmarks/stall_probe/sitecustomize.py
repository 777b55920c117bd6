"""Event-loop stall probe for ``bench_gateway.py --stalls`` (loaded by the agent via PYTHONPATH).

Counts the asyncio callbacks that hold the loop over 20 ms, and samples the main thread's
stack from a watchdog thread at 15 ms into such a callback and every 10 ms after: a stall
delays every poller's Modbus request/answer turn, and enough of them skip polls. Writes
cumulative counts as JSON to ``EDGE_AGENT_STALL_FILE`` every second. Not part of the product.
"""

from __future__ import annotations

import os

if os.environ.get("EDGE_AGENT_STALL_FILE"):
    import asyncio.events
    import collections
    import json
    import sys
    import threading
    import time

    _path = os.environ["EDGE_AGENT_STALL_FILE"]
    _main = threading.get_ident()
    _run = asyncio.events.Handle._run
    _buckets: collections.Counter[str] = collections.Counter()
    _stacks: collections.Counter[str] = collections.Counter()
    _now: list[float | None] = [None]

    def _timed(self: asyncio.events.Handle) -> None:
        _now[0] = time.perf_counter()
        try:
            _run(self)
        finally:
            held = time.perf_counter() - (_now[0] or 0.0)
            _now[0] = None
            if held > 0.02:
                _buckets["20-50 ms" if held < 0.05 else "50-100 ms" if held < 0.1 else "> 100 ms"] += 1

    def _where(frame: object) -> str:
        """The innermost three frames of the agent's own code."""
        out = []
        f = frame
        while f is not None and len(out) < 3:
            code = f.f_code  # type: ignore[attr-defined]
            if "edge_agent" in code.co_filename:
                out.append(f"{code.co_name} ({os.path.basename(code.co_filename)}:{f.f_lineno})")  # type: ignore[attr-defined]
            f = f.f_back  # type: ignore[attr-defined]
        return " <- ".join(out) or "(outside edge_agent)"

    def _watch() -> None:
        sampled, started, last_write = 0, None, 0.0
        while True:
            time.sleep(0.004)
            t0 = _now[0]
            if t0 is not started:
                started, sampled = t0, 0
            if t0 is not None and time.perf_counter() - t0 > 0.015 + 0.01 * sampled:
                sampled += 1
                frame = sys._current_frames().get(_main)
                if frame is not None:
                    _stacks[_where(frame)] += 1
            if time.monotonic() - last_write > 1.0:
                last_write = time.monotonic()
                tmp = _path + ".tmp"
                with open(tmp, "w") as f:
                    json.dump({"buckets": dict(_buckets), "stacks": dict(_stacks)}, f)
                os.replace(tmp, _path)

    asyncio.events.Handle._run = _timed  # type: ignore[method-assign]
    threading.Thread(target=_watch, name="stall-probe", daemon=True).start()

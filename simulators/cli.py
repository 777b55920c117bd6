"""``python -m edge_agent_simulators serve|history``: a thin argparse front end for the two entry points.

The agent's own CLI (``edge-agent simulate``) calls :func:`serve` and
:func:`generate_history` directly; this exists so the simulator also runs on its own.
"""

from __future__ import annotations

__all__ = ["main"]

import argparse
import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from datetime import datetime

from .history import generate_history
from .host import Simulator, serve


def _port(text: str) -> int | None:
    if text.lower() in ("none", "off", "-"):
        return None
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0 … 65535 or 'off', got {text}")
    return value


def _parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the live plant over Modbus TCP and OPC UA")
    s.add_argument("--modbus-port", type=_port, default=5020, help="0 = free port, off = none")
    s.add_argument("--opcua-port", type=_port, default=4840, help="0 = free port, off = none")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--seed", type=int, default=42)
    s.add_argument(
        "--time-scale", type=float, default=1.0, help="schedule speed-up, e.g. 240 runs an 8 h shift in 2 min"
    )
    s.add_argument("--tick", type=float, default=0.1, help="model tick in seconds")
    s.add_argument(
        "--retrofit-in",
        type=float,
        default=None,
        metavar="SECONDS",
        help="switch the retrofit on this many seconds after start",
    )
    s.add_argument("--tz", default="UTC")
    h = sub.add_parser("history", help="write history.csv + truth.json")
    h.add_argument("--days", type=int, default=56)
    h.add_argument("--retrofit-day", type=int, default=28)
    h.add_argument("--interval", type=int, default=60, help="seconds per CSV row")
    h.add_argument("--seed", type=int, default=42)
    h.add_argument("--out", default="out/history")
    h.add_argument(
        "--start",
        type=datetime.fromisoformat,
        default=None,
        help="ISO date/time of the first interval start (default 2024-01-01)",
    )
    h.add_argument("--tz", default="UTC")
    h.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m edge_agent_simulators") -> int:
    """Entry point; returns a process exit code."""
    args = _parser(prog).parse_args(argv)
    if args.command == "history":
        try:
            res = generate_history(
                args.days,
                args.retrofit_day,
                args.interval,
                args.seed,
                args.out,
                start=args.start,
                tz=args.tz,
                progress=not args.no_progress,
            )
        except ValueError as exc:
            print(f"error: {exc}")
            return 2
        print(f"wrote {res.rows} rows to {res.csv_path} and the truth to {res.truth_path}")
        return 0

    def ready(sim: Simulator) -> None:
        print(
            f"modbus tcp {args.host}:{sim.modbus_port}  opcua {sim.opcua_endpoint}  "
            f"(seed {args.seed}, time_scale {args.time_scale:g}); Ctrl-C stops"
        )

    logging.basicConfig(level=logging.WARNING)
    retrofit_at = None
    if args.retrofit_in is not None:
        retrofit_at = time.time() + args.retrofit_in
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve(
                modbus_port=args.modbus_port,
                opcua_port=args.opcua_port,
                seed=args.seed,
                time_scale=args.time_scale,
                host=args.host,
                tick_s=args.tick,
                retrofit_at=retrofit_at,
                tz=args.tz,
                ready=ready,
            )
        )
    return 0

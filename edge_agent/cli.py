"""The `edge-agent` command line. Each subcommand imports its module lazily to keep start-up fast."""

from __future__ import annotations

__all__ = ["main"]

import argparse
import asyncio
import gc
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from edge_agent.errors import ConfigError, EdgeAgentError

EXIT_OK, EXIT_FAIL, EXIT_CONFIG = 0, 1, 2
err_console = Console(stderr=True, emoji=False)


def _cmd_validate(args: argparse.Namespace) -> int:
    from edge_agent.config import load_config
    from edge_agent.validate import config_summary, dump_config

    config = load_config(args.file, command="ingest" if args.ingest else "run")
    out = Console()
    if args.dump:
        out.print(dump_config(config), markup=False, highlight=False)
    else:
        config_summary(config, out, plan=args.plan)
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from edge_agent.config import load_config
    from edge_agent.logs import setup_logging
    from edge_agent.operations.run import run_operated

    # Start-up builds millions of objects that live as long as the agent: the cyclic collector
    # would walk them again and again (a second at 50,000 tags). run_operated freezes them
    # once started and turns it back on.
    gc.disable()
    try:
        config = load_config(args.config)
        setup_logging(args.log_level or config.agent.log_level, fmt=args.log_format)
        asyncio.run(run_operated(config, args.config))
    finally:
        gc.enable()  # also when the config is refused (main() may run inside another program)
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from edge_agent.extras import require_extra

    require_extra("demo", "edge-agent demo")
    from edge_agent.demo import run_demo

    return asyncio.run(
        run_demo(duration=args.duration, seed=args.seed, data_dir=args.data_dir, live=not args.no_table)
    )


def _cmd_simulate(args: argparse.Namespace) -> int:
    import edge_agent_simulators as simulators

    return int(simulators.main(list(args.rest), prog="edge-agent simulate"))


def _cmd_ingest(args: argparse.Namespace) -> int:
    from edge_agent.config import load_config
    from edge_agent.delivery.ingest import serve_ingest
    from edge_agent.logs import setup_logging

    config = load_config(args.config, command="ingest")
    setup_logging(args.log_level or config.agent.log_level, fmt=args.log_format)
    asyncio.run(serve_ingest(config, group=args.group, client_id=args.client_id))
    return EXIT_OK


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from edge_agent.extras import require_extra

    require_extra("evaluate", "edge-agent evaluate")
    from edge_agent.evaluation import cli_main

    return cli_main(list(args.rest))


def _cmd_drivers(args: argparse.Namespace) -> int:
    from edge_agent.plugins import driver_registry

    for name, cls in sorted(driver_registry().items()):
        print(f"{name}\t{cls.__module__}.{cls.__qualname__}")
    return EXIT_OK


def _cmd_opcua_browse(args: argparse.Namespace) -> int:
    from edge_agent.opcua_tools import browse_command

    return browse_command(args.endpoint, depth=args.depth, write_config=args.write_config)


def _cmd_certs_create(args: argparse.Namespace) -> int:
    from edge_agent.opcua_tools import certs_create_command

    return certs_create_command(args.dir, application_uri=args.application_uri, force=args.force)


def _add_log_format(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--log-format",
        choices=["auto", "rich", "plain", "json"],
        default="auto",
        help="auto (default): rich on a terminal, else plain one-line ISO 8601 UTC; json: one object a line",
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-agent", description="Shop-floor resource-efficiency monitoring agent."
    )
    p.add_argument("--version", action="version", version="edge-agent 0.1.0")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(func=fn)
        return sp

    sp = add("validate", _cmd_validate, "check a config file and summarise it")
    sp.add_argument("file")
    sp.add_argument("--plan", action="store_true", help="print each device's request plan")
    sp.add_argument("--dump", action="store_true", help="print the effective config (secrets masked)")
    sp.add_argument("--ingest", action="store_true", help="check it as an 'edge-agent ingest' config")

    sp = add("run", _cmd_run, "run the agent until SIGINT/SIGTERM (SIGHUP re-reads the config)")
    sp.add_argument("config")
    sp.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    _add_log_format(sp)

    sp = add("demo", _cmd_demo, "simulated plant + embedded broker + agent, with a live table")
    sp.add_argument("--duration", type=float, default=60.0, help="seconds to run (default 60)")
    sp.add_argument("--seed", type=int, default=7)
    sp.add_argument("--data-dir", type=Path, default=None, help="keep buffer and store here")
    sp.add_argument("--no-table", action="store_true", help="print only the final summary")

    sp = add("simulate", _cmd_simulate, "the bundled plant simulator: 'simulate serve' or 'simulate history'")
    sp.add_argument("rest", nargs=argparse.REMAINDER, help="serve|history and their options (see --help)")

    sp = add("ingest", _cmd_ingest, "subscribe to the UNS topics and write to InfluxDB")
    sp.add_argument("config")
    sp.add_argument("--client-id", help="MQTT client id of this worker (default: derived, unique in a group)")
    sp.add_argument("--group", help="shared-subscription group (overrides mqtt.ingest_group)")
    sp.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    _add_log_format(sp)

    sp = add("evaluate", _cmd_evaluate, "before/after savings evaluation (see 'evaluate --help')")
    sp.add_argument("rest", nargs=argparse.REMAINDER)

    add("drivers", _cmd_drivers, "list installed driver plugins")

    ua = add("opcua", lambda a: EXIT_CONFIG, "OPC UA tools")
    uasub = ua.add_subparsers(dest="ua_command", required=True, metavar="SUBCOMMAND")
    sp = uasub.add_parser("browse", help="print an OPC UA server's address space as a tree")
    sp.set_defaults(func=_cmd_opcua_browse)
    sp.add_argument("endpoint")
    sp.add_argument("--depth", type=int, default=6)
    sp.add_argument("--write-config", type=Path, default=None, help="write a starting config here")

    certs = add("certs", lambda a: EXIT_CONFIG, "OPC UA client certificates")
    csub = certs.add_subparsers(dest="certs_command", required=True, metavar="SUBCOMMAND")
    sp = csub.add_parser("create", help="create the client certificate once (reused on restart)")
    sp.set_defaults(func=_cmd_certs_create)
    sp.add_argument("--dir", type=Path, default=Path("pki"))
    sp.add_argument("--application-uri", default="urn:edge-agent:client")
    sp.add_argument("--force", action="store_true", help="replace an existing certificate")
    return p


def _delegate(argv: list[str]) -> argparse.Namespace | None:
    """`simulate` and `evaluate` own their options; hand them everything after the name."""
    if argv and argv[0] in ("simulate", "evaluate"):
        func = _cmd_simulate if argv[0] == "simulate" else _cmd_evaluate
        return argparse.Namespace(func=func, rest=argv[1:])
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = _delegate(args_list) or _parser().parse_args(args_list)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        err_console.print(f"[red]config error[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return EXIT_CONFIG
    except EdgeAgentError as exc:
        err_console.print(f"[red]error[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())

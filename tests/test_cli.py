"""The command line routes each subcommand, including those that own their options."""

from __future__ import annotations

import pytest

from edge_agent.cli import main


@pytest.mark.parametrize("command", ["evaluate", "simulate"])
def test_delegated_commands_accept_their_own_options(command: str, capsys) -> None:
    try:
        code = main([command, "--help"])
    except SystemExit as exc:  # argparse exits after printing help
        code = int(exc.code or 0)
    assert code == 0
    assert f"edge-agent {command}" in capsys.readouterr().out


def test_evaluate_passes_options_through(tmp_path, capsys) -> None:
    code = main(["evaluate", "--csv", str(tmp_path / "missing.csv"), "--baseline",
                 "2024-01-01/2024-01-31", "--reporting", "2024-02-01/2024-02-28",
                 "--out", str(tmp_path / "out"), "--energy", "main_kwh"])  # fmt: skip
    assert code == 2  # bad input, named: not "unrecognized arguments"
    assert "missing.csv" in capsys.readouterr().err


def test_drivers_lists_builtins(capsys) -> None:
    assert main(["drivers"]) == 0
    out = capsys.readouterr().out
    assert "modbus\tedge_agent.drivers.modbus" in out and "opcua\tedge_agent.drivers.opcua" in out

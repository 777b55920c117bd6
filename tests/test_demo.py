"""The README's first command: `edge-agent demo` runs with no external server and checks itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_demo_command_exits_zero_and_agrees_with_truth(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_agent.cli",
            "demo",
            "--duration",
            "30",
            "--no-table",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "demo OK" in proc.stdout
    assert "MISMATCH" not in proc.stdout
    assert (tmp_path / "store.db").stat().st_size > 0
    # it starts in production: parts are made and compared, idle energy too
    produced = [ln for ln in proc.stdout.splitlines() if "imm1" in ln and "produced parts" in ln]
    assert produced and float(produced[0].split("│")[3]) > 0, proc.stdout[-3000:]
    assert sum("idle kWh" in ln for ln in proc.stdout.splitlines()) >= 3

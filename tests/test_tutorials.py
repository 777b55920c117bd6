"""Every block of every tutorial in docs/tutorials/ runs, in order, against real servers.

The reader's machine is a scratch directory with its own venv (this checkout's edge-agent,
plus whatever the tutorial installs into it, e.g. its driver plugin), Mosquitto and
InfluxDB 1.x from the fixtures, and ports swapped for free ones (tests/tutorial_harness.py).
A block marked ``pending`` needs a feature that is not merged yet: while it fails the test
is reported as XFAIL with the pending blocks listed; once it passes the test fails until the
marker is removed. A deliberately broken block shows the harness fails.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import InfluxServer, MosquittoServer
from tutorial_harness import TutorialError, run_tutorial

from edge_agent.broker import free_port

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = sorted(p for p in (ROOT / "docs" / "tutorials").glob("*.md") if p.name != "README.md")


@pytest.fixture(scope="module")
def reader_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv that sees this checkout's environment but installs into itself.

    A .pth file adds the test environment's site-packages (edge-agent editable, pytest, ...),
    so a ``pip install`` in a tutorial lands in this venv only and the environment running
    the tests is left alone. Console scripts point at this venv's Python so installed
    plugins are seen.
    """
    venv = tmp_path_factory.mktemp("reader") / "venv"
    import venv as venv_module

    venv_module.create(venv, with_pip=False)
    site = next(venv.glob("lib/python*/site-packages"))
    (site / "_edge_agent_tests.pth").write_text(
        f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n", encoding="utf-8"
    )
    scripts = {"edge-agent": "-m edge_agent.cli", "pip": "-m pip", "pytest": "-m pytest"}
    for name, module in scripts.items():
        script = venv / "bin" / name
        script.write_text(f'#!/bin/sh\nexec "{venv}/bin/python" {module} "$@"\n', encoding="utf-8")
        script.chmod(0o755)
    return venv


def _env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin"
    env["VIRTUAL_ENV"] = str(venv)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PYTHONUNBUFFERED"] = "1"  # output reaches the log as on a reader's terminal
    return env


@pytest.fixture
def ports(mosquitto_server: MosquittoServer, influxdb_server: InfluxServer) -> Iterator[dict[int, int]]:
    yield {
        1883: mosquitto_server.port,
        8086: influxdb_server.port,
        5020: free_port(),
        4840: free_port(),
        7000: free_port(),
    }


@pytest.mark.slow
@pytest.mark.servers
@pytest.mark.parametrize("tutorial", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs(tutorial: Path, reader_venv: Path, ports: dict[int, int], tmp_path: Path) -> None:
    outcome = run_tutorial(
        tutorial, tmp_path, env=_env(reader_venv), ports=ports, python=str(reader_venv / "bin" / "python")
    )
    print(f"\n{tutorial.name}: {outcome.summary()}")
    assert not outcome.pending_passed, (
        f"{tutorial.name}: blocks marked pending now pass; remove their 'pending' markers: "
        + "; ".join(outcome.pending_passed)
    )
    if outcome.pending_failed:
        pytest.xfail(
            f"{tutorial.name} pending: "
            + "; ".join(outcome.pending_failed)
            + (f"; not reached: {', '.join(outcome.not_reached)}" if outcome.not_reached else "")
        )


def test_every_tutorial_states_time_and_what_you_learn() -> None:
    assert len(TUTORIALS) >= 4, [p.name for p in TUTORIALS]
    for path in TUTORIALS:
        head = path.read_text(encoding="utf-8")[:1500]
        assert "Time to complete" in head and "You will learn" in head, f"{path.name}: state both up front"


def _mini(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "mini.md"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def test_a_broken_block_fails_the_harness(reader_venv: Path, ports: dict[int, int], tmp_path: Path) -> None:
    """'Monitor your first machine' with a typo a reader could make: the harness fails at that block."""
    tutorial = (ROOT / "docs" / "tutorials" / "monitor-your-first-machine.md").read_text(encoding="utf-8")
    broken = tutorial.replace("  kpi_interval: 10s", "  kpi_intervall: 10s")
    assert broken != tutorial, "the line this test breaks is gone from the tutorial"
    path = tmp_path / "broken.md"
    path.write_text(broken, encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(TutorialError) as info:
        run_tutorial(
            path, work, env=_env(reader_venv), ports=ports, python=str(reader_venv / "bin" / "python")
        )
    message = str(info.value)
    assert "block failed" in message and "edge-agent validate first-machine.yaml" in message, message
    assert "kpi_intervall" in message, message  # the validator's own words reach the report


def test_pending_blocks_are_reported_not_skipped(tmp_path: Path) -> None:
    path = _mini(
        tmp_path,
        """\
        ```bash
        echo one > one.txt
        ```

        <!-- doc-test: pending="#99 a feature" -->
        ```bash
        false
        ```

        ```bash
        echo never
        ```

        <!-- doc-test: pending="#98 already there" -->
        ```bash
        true
        ```
        """,
    )
    work = tmp_path / "w"
    work.mkdir()
    out = run_tutorial(path, work, env=dict(os.environ), ports={}, python=sys.executable)
    assert (work / "one.txt").read_text() == "one\n"
    assert len(out.pending_failed) == 1 and "#99 a feature" in out.pending_failed[0]
    assert out.not_reached == ["line 10", "line 15 (#98 already there)"]
    assert out.ran == ["line 1"]


def test_a_pending_block_that_passes_is_flagged(tmp_path: Path) -> None:
    path = _mini(
        tmp_path,
        """\
        <!-- doc-test: pending="#98 already there" -->
        ```bash
        true
        ```
        """,
    )
    out = run_tutorial(path, tmp_path, env=dict(os.environ), ports={}, python=sys.executable)
    assert out.pending_passed == ["line 2 (#98 already there)"]


def test_background_ready_and_stop(tmp_path: Path) -> None:
    path = _mini(
        tmp_path,
        """\
        <!-- doc-test: background=srv ready="listening on 7000" -->
        ```bash
        python3 -c "import signal,sys,time; print('listening on 7000', flush=True); \\
          signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); time.sleep(60)"
        ```

        <!-- doc-test: stop=srv -->
        Press Ctrl+C.
        """,
    )
    out = run_tutorial(path, tmp_path, env=dict(os.environ), ports={7000: 17000}, python=sys.executable)
    assert out.ran == ["line 2", "line 7"]  # started, then stopped with exit 0
    assert "17000" in (tmp_path / ".bg-srv.log").read_text()

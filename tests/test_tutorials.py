"""Every block of every tutorial in docs/tutorials/ runs, in order, against real servers.

The reader's machine is a scratch directory with its own venv (this checkout's edge-agent,
plus whatever the tutorial installs into it, e.g. its driver plugin), Mosquitto and
InfluxDB 1.x from the fixtures, and ports swapped for free ones (tests/tutorial_harness.py).
Blocks marked ``root`` (the gateway install: a user, /opt, /etc, a systemd unit, journald)
run for real when the test runs as root, as CI does: systemd runs as PID 1 of private PID and
mount namespaces (tests/private_systemd.py), ``pip install "edge-agent==$V"`` resolves to
wheels of this checkout, and everything the tutorial installed is removed afterwards.
A block marked ``pending`` needs a feature that is not merged yet: while it fails the test
is reported as XFAIL with the pending blocks listed; once it passes the test fails until the
marker is removed. A deliberately broken block shows the harness fails.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from docblocks import read_blocks
from private_systemd import PrivateSystemd, systemd_unavailable
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


# What the deploy tutorial installs on the host; removed after the test, refused before it.
GATEWAY_USER = "edge-agent"
# (/etc/systemd/system is a scratch directory inside the private systemd's namespace.)
GATEWAY_PATHS = [Path("/opt/edge-agent"), Path("/etc/edge-agent"), Path("/var/lib/edge-agent")]


ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _needs_root(tutorial: Path) -> bool:
    return any("root" in b.directives for b in read_blocks(tutorial))


@pytest.fixture(scope="module")
def release_wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout as releases 0.1.0 and 0.2.0, with every dependency, for the tutorial's
    ``pip install "edge-agent==$V"`` with PIP_NO_INDEX: on PyPI the name edge-agent belongs to
    an unrelated project, and the test must install what it tests."""
    wheels = tmp_path_factory.mktemp("wheelhouse")
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "-w", str(wheels)]
    subprocess.run([*pip, str(ROOT)], check=True, timeout=600)
    newer = tmp_path_factory.mktemp("release-0.2.0") / "src"
    shutil.copytree(
        ROOT,
        newer,
        ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", "build", "dist"),
    )
    for name in ("pyproject.toml", "edge_agent/__init__.py", "edge_agent/cli.py"):
        text = (newer / name).read_text(encoding="utf-8")
        assert "0.1.0" in text, f"{name}: the version to bump is gone"
        (newer / name).write_text(text.replace("0.1.0", "0.2.0"), encoding="utf-8")
    subprocess.run([*pip, "--no-deps", str(newer)], check=True, timeout=600)
    return wheels


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _remove_gateway_install() -> None:
    subprocess.run(["userdel", GATEWAY_USER], capture_output=True, check=False)
    subprocess.run(["groupdel", GATEWAY_USER], capture_output=True, check=False)
    for path in GATEWAY_PATHS:
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)


@contextlib.contextmanager
def gateway_host(workdir: Path) -> Iterator[PrivateSystemd]:
    """This machine as the tutorial's gateway, with a private systemd; the tutorial's
    installation is removed afterwards."""
    present = [str(p) for p in GATEWAY_PATHS if p.exists() or p.is_symlink()]
    if _user_exists(GATEWAY_USER):
        present.append(f"user {GATEWAY_USER}")
    if present:
        pytest.fail(
            f"an edge-agent installation is already on this host ({', '.join(present)}); remove it first"
        )
    systemd = PrivateSystemd(workdir)
    try:
        systemd.start()
        yield systemd
    finally:
        systemd.stop()
        _remove_gateway_install()


@pytest.mark.slow
@pytest.mark.servers
@pytest.mark.parametrize("tutorial", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs(
    tutorial: Path, reader_venv: Path, ports: dict[int, int], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    env = _env(reader_venv)
    as_root: list[str] | None = None
    systemd: PrivateSystemd | None = None
    with contextlib.ExitStack() as stack:
        if _needs_root(tutorial):
            why = systemd_unavailable()
            if why is not None and os.environ.get("CI") == "true":
                pytest.fail(f"{tutorial.name}: its root blocks must run in CI, but {why}")
            if why is None:
                wheels = request.getfixturevalue("release_wheelhouse")
                systemd = stack.enter_context(gateway_host(tmp_path / "host"))
                # root's login PATH (sudo -i): the gateway's python3 and tools, not the reader's venv
                as_root = [*systemd.nsenter(wd=tmp_path / "work"), "env", f"PATH={ROOT_PATH}"]
                env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheels))
                shutil.copytree(ROOT / "deploy", tmp_path / "work" / "deploy")  # the reader's checkout
        workdir = tmp_path / "work"
        workdir.mkdir(exist_ok=True)
        try:
            outcome = run_tutorial(
                tutorial,
                workdir,
                env=env,
                ports=ports,
                python=str(reader_venv / "bin" / "python"),
                root=as_root,
            )
        except TutorialError as exc:
            if systemd is None:
                raise
            journal = systemd.run("journalctl", "--no-pager", "-n", "40", "-o", "cat").stdout
            raise TutorialError(f"{exc}\n--- the private systemd's journal ---\n{journal}") from None
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

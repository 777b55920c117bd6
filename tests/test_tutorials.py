"""Every block of every tutorial in docs/tutorials/ runs, in order, against real servers.

The reader's machine is a scratch directory. Each tutorial installs edge-agent itself
(``python3 -m venv ~/edge-agent`` and ``pip install 'edge-agent[...]'``); that runs for real
with HOME in a scratch directory and PIP_NO_INDEX/PIP_FIND_LINKS on a wheelhouse of this
checkout and its dependencies (on PyPI the name edge-agent belongs to an unrelated project),
and all later blocks use that venv, plus whatever the tutorial installs into it (its driver
plugin). After the tutorial the venv must hold this checkout's edge-agent, not an editable
one, and every requirement of the extras it installed. One venv is shared by the tutorials,
in reading order, as a reader's would be; each also runs alone, creating it.
Mosquitto and InfluxDB 1.x come from the fixtures, with ports swapped for free ones
(tests/tutorial_harness.py).
Blocks marked ``root`` run for real when the test runs as root, as CI does, with systemd as
PID 1 of private PID and mount namespaces (tests/private_systemd.py):
- the gateway install (a user, /opt, /etc, a systemd unit, journald), where
  ``pip install "edge-agent==$V"`` resolves to wheels of this checkout, and everything the
  tutorial installed is removed afterwards;
- ``sudo apt-get install mosquitto ... influxdb`` (already installed here, so apt-get only
  confirms it) and ``sudo systemctl enable --now mosquitto influxdb``: the host's Debian units,
  run by the private systemd on a private network with empty state directories. Every other
  block of that tutorial then runs in that network (``nsenter -n``), so the agent, ingest and
  the queries use these servers on their default ports, as on the reader's computer; without
  root, the fixtures' servers stand in for them.
A block marked ``pending`` needs a feature that is not merged yet: while it fails the test
is reported as XFAIL with the pending blocks listed; once it passes the test fails until the
marker is removed. A deliberately broken block shows the harness fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from docblocks import read_blocks
from private_systemd import PrivateSystemd, systemd_unavailable
from servers import InfluxServer, MosquittoServer
from tutorial_harness import TutorialError, run_tutorial

from edge_agent.broker import free_port

ROOT = Path(__file__).resolve().parent.parent
# Reading order: the first tutorial creates the reader's venv, later ones add to it.
READING_ORDER = [
    "monitor-your-first-machine",
    "write-a-driver-plugin",
    "evaluate-a-project-and-a-programme",
    "deploy-on-a-gateway",
]
TUTORIALS = sorted(
    (p for p in (ROOT / "docs" / "tutorials").glob("*.md") if p.name != "README.md"),
    key=lambda p: (READING_ORDER.index(p.stem) if p.stem in READING_ORDER else len(READING_ORDER), p.name),
)
# `pip install edge-agent` or `pip install 'edge-agent[x,y]'` run by the reader (not as root)
_PIP_INSTALL = re.compile(r"""^\s*pip install ['"]?edge-agent(?:\[(?P<extras>[\w,\s-]+)\])?['"]?\s*$""", re.M)


def _installed_extras(tutorial: Path) -> set[str] | None:
    """The extras a tutorial's own ``pip install edge-agent[...]`` installs, or None if the
    reader never installs edge-agent (as root, the deploy tutorial's releases do not count)."""
    found: set[str] | None = None
    for block in read_blocks(tutorial):
        if block.lang not in {"bash", "sh", "shell"} or "root" in block.directives:
            continue
        for m in _PIP_INSTALL.finditer(block.text):
            if found is None:
                found = set()
            found.update(e.strip() for e in (m.group("extras") or "").split(",") if e.strip())
    return found


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout's wheel and every dependency's (those of the extras the tutorials install
    included), and setuptools for the plugin tutorial's editable install: the reader's package
    index. Built, or taken from pip's cache, once."""
    extras = sorted(set().union(*(_installed_extras(t) or set() for t in TUTORIALS)))
    wheels = tmp_path_factory.mktemp("wheelhouse")
    spec = f"{ROOT}[{','.join(extras)}]" if extras else str(ROOT)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "-w", str(wheels),
         spec, "setuptools"],
        check=True, timeout=600,
    )  # fmt: skip
    assert list(wheels.glob("edge_agent-*.whl")), "pip wheel built no edge-agent wheel"
    return wheels


@pytest.fixture(scope="module")
def reader_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reader's HOME, shared by the tutorials that install edge-agent: the first creates
    ``~/edge-agent`` and installs into it, the later ones find it there, as a reader would."""
    return tmp_path_factory.mktemp("reader-home")


_PROBE = """
import edge_agent, importlib.metadata as md, json
d = md.distribution("edge-agent")
names = sorted(x.metadata["Name"].lower() for x in md.distributions())
out = {"file": edge_agent.__file__, "version": d.version, "requires": d.requires or [], "installed": names}
print(json.dumps(out))
"""


def _dist(req: str) -> str:
    """The normalised distribution name a requirement string starts with."""
    m = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", req)
    assert m, req
    return re.sub(r"[-_.]+", "-", m.group(0)).lower()


def _check_install(venv: Path, extras: set[str]) -> None:
    """The venv the tutorial made holds this checkout's edge-agent as a wheel install (not the
    unrelated PyPI project, not an editable checkout) and every requirement of its extras."""
    run = subprocess.run(  # in the venv's directory: `python -c` puts the working directory on sys.path
        [str(venv / "bin" / "python"), "-c", _PROBE],
        cwd=venv, env=_env(venv), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, f"the tutorial's venv {venv} has no working edge-agent:\n{run.stderr[-2000:]}"
    got = json.loads(run.stdout)
    assert Path(got["file"]).is_relative_to(venv), f"edge_agent imported from {got['file']}, not from {venv}"
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(encoding="utf-8"), re.M)
    assert version and got["version"] == version.group(1), (got["version"], "this checkout's version")
    installed = {_dist(n) for n in got["installed"]}
    for extra in sorted(extras):
        wanted = [r for r in got["requires"] if re.search(rf"""extra\s*==\s*['"]{extra}['"]""", r)]
        assert wanted, f"edge-agent declares no requirement for the extra [{extra}]"
        for req in wanted:
            name = _dist(req)
            assert name in installed, f"[{extra}] requires {req!r}, but {name} is not in {venv}"


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
def release_wheelhouse(wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """PIP_FIND_LINKS for the deploy tutorial's ``pip install "edge-agent==$V"``: the wheelhouse
    (this checkout as 0.1.0, with every dependency) and this checkout again as release 0.2.0,
    with PIP_NO_INDEX: on PyPI the name edge-agent belongs to an unrelated project, and the
    test must install what it tests."""
    release = tmp_path_factory.mktemp("release-0.2.0")
    newer = release / "src"
    shutil.copytree(
        ROOT,
        newer,
        ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", "build", "dist"),
    )
    for name in ("pyproject.toml", "edge_agent/__init__.py", "edge_agent/cli.py"):
        text = (newer / name).read_text(encoding="utf-8")
        assert "0.1.0" in text, f"{name}: the version to bump is gone"
        (newer / name).write_text(text.replace("0.1.0", "0.2.0"), encoding="utf-8")
    wheels = release / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--no-deps",
         "-w", str(wheels), str(newer)],
        check=True, timeout=600,
    )  # fmt: skip
    return f"{wheelhouse} {wheels}"


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
def services_host(workdir: Path) -> Iterator[PrivateSystemd]:
    """This machine as the reader's computer for ``apt-get install`` and ``systemctl enable
    --now mosquitto influxdb``: the Debian packages' own units, run by a private systemd on a
    private network (their default ports meet nothing else here) over empty state dirs."""
    systemd = PrivateSystemd(
        workdir,
        host_units=("mosquitto.service", "influxdb.service"),
        scratch_dirs={
            "/var/lib/mosquitto": "mosquitto:mosquitto",
            "/var/log/mosquitto": "mosquitto:mosquitto",
            "/var/lib/influxdb": "influxdb:influxdb",
        },
        private_network=True,
    )
    try:
        systemd.start()
        yield systemd
    finally:
        systemd.stop()


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


def _host(tutorial: Path) -> Callable[[Path], contextlib.AbstractContextManager[PrivateSystemd]]:
    """What a tutorial's root blocks need the host to be."""
    hosts = {"deploy-on-a-gateway": gateway_host, "monitor-your-first-machine": services_host}
    if tutorial.stem not in hosts:
        pytest.fail(f"{tutorial.name} has root blocks: say in test_tutorials._host what host they need")
    return hosts[tutorial.stem]


def _reader(tutorial: Path, wheelhouse: Path, reader_home: Path) -> tuple[Path, dict[str, str]]:
    """The reader's venv ~/edge-agent, which the tutorial creates and installs into itself from
    the wheelhouse (the reader's package index), and the environment of its blocks: that
    venv active, as in the reader's terminals."""
    if _installed_extras(tutorial) is None:
        pytest.fail(f"{tutorial.name} never installs edge-agent: a reader starting there could not follow it")
    venv = reader_home / "edge-agent"
    env = _env(venv)
    env.update(HOME=str(reader_home), PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheelhouse))
    return venv, env


@pytest.mark.slow
@pytest.mark.servers
@pytest.mark.parametrize("tutorial", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs(
    tutorial: Path,
    wheelhouse: Path,
    reader_home: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    venv, env = _reader(tutorial, wheelhouse, reader_home)
    as_root: list[str] | None = None
    systemd: PrivateSystemd | None = None
    in_network: list[str] | None = None  # where the reader's own servers run, if root blocks started them
    ports: dict[int, int] = {}
    with contextlib.ExitStack() as stack:
        if _needs_root(tutorial):
            why = systemd_unavailable()
            if why is not None and os.environ.get("CI") == "true":
                pytest.fail(f"{tutorial.name}: its root blocks must run in CI, but {why}")
            if why is None:
                host = _host(tutorial)
                # root's login PATH (sudo -i): the host's python3 and tools, not the reader's venv
                root_env = [f"PATH={ROOT_PATH}"]
                if host is gateway_host:  # the releases 0.1.0 and 0.2.0, for the gateway only
                    root_env.append(f"PIP_FIND_LINKS={request.getfixturevalue('release_wheelhouse')}")
                    shutil.copytree(ROOT / "deploy", tmp_path / "work" / "deploy")  # the reader's checkout
                systemd = stack.enter_context(host(tmp_path / "host"))
                as_root = [*systemd.nsenter(wd=tmp_path / "work"), "env", *root_env]
                if systemd.private_network:  # every block talks to the servers the tutorial started
                    in_network = systemd.network()
        if in_network is None:  # the fixtures' servers, on free ports, stand in for the reader's
            ports = request.getfixturevalue("ports")
        workdir = tmp_path / "work"
        workdir.mkdir(exist_ok=True)
        try:
            outcome = run_tutorial(
                tutorial,
                workdir,
                env=env,
                ports=ports,
                python=str(venv / "bin" / "python"),
                root=as_root,
                prefix=in_network,
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
    _check_install(venv, _installed_extras(tutorial) or set())


def test_every_block_is_run() -> None:
    """No block is left to a fixture or skipped: every command a reader types is run
    (``root`` blocks are run by test_tutorial_runs where the host allows, always in CI)."""
    left = [
        f"{b.where} ({k}={b.directives[k]})"
        for t in TUTORIALS
        for b in read_blocks(t)
        for k in ("fixture", "skip")
        if k in b.directives
    ]
    assert not left, "tutorial blocks that no test runs:\n" + "\n".join(left)


def test_installs_are_recognised() -> None:
    """The tutorials that install edge-agent themselves are the ones the test gives a fresh
    reader's venv: a changed install line must not silently fall back to the test's venv."""
    assert _installed_extras(ROOT / "docs/tutorials/monitor-your-first-machine.md") == set()
    assert _installed_extras(ROOT / "docs/tutorials/write-a-driver-plugin.md") == {"testing"}
    assert _installed_extras(ROOT / "docs/tutorials/evaluate-a-project-and-a-programme.md") == {"evaluate"}
    # the rehearsal's venv; the root blocks' release venvs are the gateway's, not the reader's
    assert _installed_extras(ROOT / "docs/tutorials/deploy-on-a-gateway.md") == set()


def test_every_tutorial_states_time_and_what_you_learn() -> None:
    assert len(TUTORIALS) >= 4, [p.name for p in TUTORIALS]
    for path in TUTORIALS:
        head = path.read_text(encoding="utf-8")[:1500]
        assert "Time to complete" in head and "You will learn" in head, f"{path.name}: state both up front"


def _mini(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "mini.md"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


@pytest.mark.slow  # installs edge-agent as the tutorial does, unless test_tutorial_runs did
def test_a_broken_block_fails_the_harness(
    wheelhouse: Path, reader_home: Path, ports: dict[int, int], tmp_path: Path
) -> None:
    """'Monitor your first machine' with a typo a reader could make: the harness fails at that block."""
    source = ROOT / "docs" / "tutorials" / "monitor-your-first-machine.md"
    venv, env = _reader(source, wheelhouse, reader_home)
    tutorial = source.read_text(encoding="utf-8")
    broken = tutorial.replace("  kpi_interval: 10s", "  kpi_intervall: 10s")
    assert broken != tutorial, "the line this test breaks is gone from the tutorial"
    path = tmp_path / "broken.md"
    path.write_text(broken, encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(TutorialError) as info:
        run_tutorial(path, work, env=env, ports=ports, python=str(venv / "bin" / "python"))
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

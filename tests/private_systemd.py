"""A real systemd for tests that install a service: PID 1 of its own PID and mount namespaces.

CI runs as root on a machine (or container) where systemd is not PID 1, so ``systemctl`` has
no manager to talk to. ``unshare`` starts /lib/systemd/systemd as PID 1 of a fresh PID
namespace, with a private mount namespace, its own tmpfs on /run and a scratch
/etc/systemd/system; users, /opt, /etc and /var/lib are the host's, as on a gateway. It knows
only empty standard targets and journald (volatile journal, no /dev/log socket), so nothing of
the host's starts. Commands reach it with ``nsenter`` (:meth:`nsenter`, :meth:`run`).

For a tutorial that installs system services (``systemctl enable --now mosquitto influxdb``),
``host_units`` makes the host's own unit files of those services known to it, ``scratch_dirs``
lays an empty tmpfs over their state directories (so the host's data is neither read nor
changed), and ``private_network`` gives the namespace its own loopback, so the services
listen on their default ports without meeting anything else on this machine.
"""

from __future__ import annotations

__all__ = ["PrivateSystemd", "systemd_unavailable"]

import contextlib
import os
import shutil
import signal
import subprocess
import textwrap
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

SYSTEMD = Path("/lib/systemd/systemd")
HOST_UNITS = Path("/lib/systemd/system")
TOOLS = ("systemctl", "journalctl")

# Only the units below exist for this systemd (SYSTEMD_UNIT_PATH is exclusive, no generators):
# the host's own units (and sysinit.target's tmpfiles, which empty /tmp at boot) never start.
# /etc/systemd/system is a scratch directory bind-mounted in the private mount namespace, so
# what a test installs there (and `systemctl enable`) never reaches the host's.
_BOOT = textwrap.dedent(
    """\
    set -eu
    mount -t tmpfs -o mode=0755 tmpfs /run
    units=/run/edge-agent-test/units
    mkdir -p "$units" /run/edge-agent-test/etc-systemd /run/edge-agent-test/none /run/systemd/journald.conf.d
    mount --bind /run/edge-agent-test/etc-systemd /etc/systemd/system
    for name in sysinit basic sockets shutdown multi-user network network-online time-sync; do
      printf '[Unit]\\nDescription=%s (empty: edge-agent test)\\n' "$name" > "$units/$name.target"
    done
    printf '[Unit]\\nDescription=edge-agent test\\nRequires=systemd-journald.service\\n' \\
      > "$units/edge-agent-test.target"
    cp /lib/systemd/system/systemd-journald.service /lib/systemd/system/systemd-journald.socket "$units/"
    printf '[Journal]\\nStorage=volatile\\n' > /run/systemd/journald.conf.d/edge-agent-test.conf
    {extra}
    export container=other SYSTEMD_UNIT_PATH="/etc/systemd/system:$units"
    export SYSTEMD_GENERATOR_PATH=/run/edge-agent-test/none
    export SYSTEMD_ENVIRONMENT_GENERATOR_PATH=/run/edge-agent-test/none
    exec {systemd} --system --unit=edge-agent-test.target --log-target=journal
    """
)


def systemd_unavailable() -> str | None:
    """Why a private systemd cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (CI runs as root)"
    for tool in ("unshare", "nsenter", *TOOLS):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian packages 'util-linux' and 'systemd')"
    if not SYSTEMD.exists():
        return f"{SYSTEMD} is missing (Debian package 'systemd')"
    return None


class PrivateSystemd:
    """Start with :meth:`start`, run commands with :meth:`run` or :meth:`nsenter`, end with :meth:`stop`."""

    def __init__(
        self,
        workdir: Path,
        *,
        host_units: Sequence[str] = (),
        scratch_dirs: Mapping[str, str] | None = None,
        private_network: bool = False,
    ) -> None:
        """``host_units``: unit file names under /lib/systemd/system to make available (not
        enabled); ``scratch_dirs``: existing directory → owner (``user:group``) to hide under
        an empty tmpfs; ``private_network``: a network namespace with only loopback."""
        self.workdir = workdir
        self.host_units = tuple(host_units)
        self.scratch_dirs = dict(scratch_dirs or {})
        self.private_network = private_network
        self.pid = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "systemd.log"

    def start(self, timeout: float = 30.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        script = self.workdir / "boot-systemd.sh"
        script.write_text(_BOOT.format(systemd=SYSTEMD, extra=self._extra_boot()), encoding="utf-8")
        net = ["--net"] if self.private_network else []
        with self.log.open("wb") as log:
            self._proc = subprocess.Popen(
                ["unshare", "--pid", "--fork", "--mount", "--mount-proc", "--propagation", "private", *net,
                 "--kill-child", "bash", str(script)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"systemd exited {self._proc.returncode}: {self.log.read_text()[-2000:]}")
            children = Path(f"/proc/{self._proc.pid}/task/{self._proc.pid}/children")
            pids = children.read_text().split() if children.exists() else []
            if pids and not self.pid:
                self.pid = int(pids[0])
            if self.pid:
                state = self.run("systemctl", "is-system-running").stdout.strip()
                if state in ("running", "degraded"):
                    return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"systemd did not come up in {timeout:.0f} s: {self.log.read_text()[-2000:]}")

    def _extra_boot(self) -> str:
        """Boot lines for the options: loopback up, tmpfs over state dirs, host unit files."""
        lines: list[str] = []
        if self.private_network:
            lines.append(f"{shutil.which('ip') or '/usr/sbin/ip'} link set lo up")
        for path, owner in self.scratch_dirs.items():
            if not Path(path).is_dir():
                raise RuntimeError(f"{path} does not exist: install the package that owns it first")
            lines.append(f"mount -t tmpfs -o mode=0755 tmpfs {path} && chown {owner} {path}")
        for name in self.host_units:
            unit = HOST_UNITS / name
            if not unit.is_file():
                raise RuntimeError(f"{unit} does not exist: install the package that ships it first")
            lines.append(f'cp {unit} "$units/"')
        return "\n    ".join(lines)

    def nsenter(self, wd: Path | None = None) -> list[str]:
        """The prefix that runs a command in the namespaces (entering one resets the working
        directory to /: ``wd`` sets it)."""
        net = ["-n"] if self.private_network else []
        return ["nsenter", "-t", str(self.pid), "-m", "-p", *net, *([f"--wd={wd}"] if wd else []), "--"]

    def network(self) -> list[str]:
        """The prefix that runs a command, as the invoking user otherwise would, in the private
        network only (no PID namespace, so nsenter execs the command and signals reach it)."""
        assert self.private_network, "this systemd shares the host's network"
        return ["nsenter", "-t", str(self.pid), "-n", "--"]

    def run(self, *command: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """A command inside the namespaces (``systemctl``, ``journalctl``, ...)."""
        return subprocess.run([*self.nsenter(), *command], capture_output=True, text=True, timeout=timeout)

    def stop(self) -> None:
        """Kill the manager and everything it started (a PID namespace ends with its PID 1)."""
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        if self._proc is not None:
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
        self.pid = 0

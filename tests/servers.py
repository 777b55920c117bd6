"""Real servers for tests: Mosquitto (plain + TLS with password), InfluxDB 1.x, VictoriaMetrics.

Each is session-scoped, bound to 127.0.0.1 on a free port, with config and data in a
temp dir, and can be stopped and started again on the same port mid-test (outages).
A missing binary skips locally and FAILS under CI=true, naming the Debian package.
"""

from __future__ import annotations

__all__ = [
    "InfluxServer",
    "MosquittoServer",
    "ServerProcess",
    "VictoriaServer",
    "delivery_config",
    "free_port",
    "influxdb_server",
    "mosquitto_server",
    "synthetic_batch",
    "victoria_server",
]

import contextlib
import datetime as dt
import getpass
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edge_agent.batch import SampleBatch
from edge_agent.broker import free_port
from edge_agent.config import AgentConfig

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _need(binary: str, package: str) -> str:
    path = shutil.which(binary) or next(
        (p for p in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}") if Path(p).exists()), None
    )
    if path is None:
        msg = f"{binary} not found: install the Debian package '{package}' (apt-get install -y {package})"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def _http(url: str, data: bytes | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return int(r.status), r.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


class ServerProcess:
    """A server binary run by PID; ``stop()``/``start()`` keep the port and data dir."""

    name = "server"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout: float = 15.0) -> None:
        assert self.proc is None, f"{self.name} already running"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.command(), stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}"
                )
            if self.ready():
                return
            time.sleep(0.03)
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {timeout}s: {self.log.read_text()[-2000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """Outage for the duration of the block; the server is back afterwards even if the test fails."""
        self.stop()
        try:
            yield
        finally:
            if self.proc is None:
                self.start()

    def _port_open(self, port: int) -> bool:
        with socket.socket() as s:
            s.settimeout(0.2)
            return s.connect_ex(("127.0.0.1", port)) == 0


# -- Mosquitto ------------------------------------------------------------------------------------
def _make_certs(d: Path) -> dict[str, Path]:
    """CA, server cert (127.0.0.1/localhost) and client cert, written as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def write_key(k: ec.EllipticCurvePrivateKey, p: Path) -> None:
        p.write_bytes(
            k.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )

    ca_key = key()
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("edge-agent test CA"))
        .issuer_name(name("edge-agent test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(
        cn: str, usage: x509.ObjectIdentifier, san: bool
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        k = key()
        b = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(ca.subject)
            .public_key(k.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if san:
            b = b.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        return b.sign(ca_key, hashes.SHA256()), k

    files = {n: d / f"{n}.pem" for n in ("ca", "server", "server-key", "client", "client-key")}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    srv, srv_key = leaf("127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH, True)
    cli, cli_key = leaf("edge-agent-client", ExtendedKeyUsageOID.CLIENT_AUTH, False)
    files["server"].write_bytes(srv.public_bytes(serialization.Encoding.PEM))
    files["client"].write_bytes(cli.public_bytes(serialization.Encoding.PEM))
    write_key(srv_key, files["server-key"])
    write_key(cli_key, files["client-key"])
    return files


class MosquittoServer(ServerProcess):
    """Plain listener (anonymous) + TLS listener (client cert and username/password required).

    Persistence is on so a graceful stop keeps queued messages of persistent sessions,
    as a production broker must for at-least-once delivery across its restarts.
    """

    name = "mosquitto"
    username = "edge"
    password = "s3cret-pass"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.binary = _need("mosquitto", "mosquitto")
        passwd = _need("mosquitto_passwd", "mosquitto")
        self.host = "127.0.0.1"
        self.port = free_port()
        self.tls_port = free_port()
        self.certs = _make_certs(workdir)
        self.password_file = workdir / "passwd"
        self.password_file.touch(mode=0o600)
        subprocess.run([passwd, "-b", str(self.password_file), self.username, self.password], check=True)
        (workdir / "data").mkdir(exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"""per_listener_settings true
user {getpass.getuser()}
persistence true
persistence_location {workdir / "data"}/
autosave_interval 1
max_queued_messages 1000000
max_inflight_messages 1000
log_dest stdout
log_type error
log_type warning
listener {self.port} 127.0.0.1
allow_anonymous true
listener {self.tls_port} 127.0.0.1
allow_anonymous false
password_file {self.password_file}
cafile {self.certs["ca"]}
certfile {self.certs["server"]}
keyfile {self.certs["server-key"]}
require_certificate true
"""
        )

    def command(self) -> list[str]:
        return [self.binary, "-c", str(self.conf)]

    def ready(self) -> bool:
        return self._port_open(self.port) and self._port_open(self.tls_port)


# -- InfluxDB 1.x ---------------------------------------------------------------------------------
class InfluxServer(ServerProcess):
    """InfluxDB 1.x with only the v1 API (``/write``, ``/query``)."""

    name = "influxd"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.binary = _need("influxd", "influxdb")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.conf = workdir / "influxdb.conf"
        self.conf.write_text(
            f"""reporting-disabled = true
bind-address = "127.0.0.1:{free_port()}"
[meta]
  dir = "{workdir / "meta"}"
[data]
  dir = "{workdir / "data"}"
  wal-dir = "{workdir / "wal"}"
  query-log-enabled = false
  trace-logging-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
  max-body-size = 0
[logging]
  level = "warn"
"""
        )

    def command(self) -> list[str]:
        return [self.binary, "-config", str(self.conf)]

    def ready(self) -> bool:
        try:
            return _http(self.url + "/ping", timeout=0.5)[0] == 204
        except OSError:
            return False

    def query(self, q: str, db: str | None = None) -> list[dict[str, object]]:
        """Run InfluxQL; returns the first statement's series (name, tags, columns, values)."""
        params = {"q": q, "epoch": "ns"} | ({"db": db} if db else {})
        status, body = _http(self.url + "/query", urllib.parse.urlencode(params).encode())
        doc = json.loads(body)
        if status != 200 or "error" in doc["results"][0]:
            raise RuntimeError(f"influx query {q!r} failed: {status} {body[:300]!r}")
        return list(doc["results"][0].get("series", []))

    def create_database(self, db: str) -> None:
        self.query(f'CREATE DATABASE "{db}"')

    def count(self, db: str, measurement: str = "raw") -> int:
        """Stored field values (samples) in a measurement: re-delivered duplicates count once."""
        series = self.query(f'SELECT COUNT(*) FROM "{measurement}"', db)
        if not series:
            return 0
        row = series[0]["values"][0]  # type: ignore[index]
        return int(sum(v for v in row[1:] if v is not None))


# -- VictoriaMetrics -----------------------------------------------------------------------------
class VictoriaServer(ServerProcess):
    """Accepts ``/write`` and ``/api/v2/write``; tests must use current timestamps (retention 1d)."""

    name = "victoria-metrics"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.binary = _need("victoria-metrics", "victoria-metrics")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            self.binary,
            f"-storageDataPath={self.workdir / 'data'}",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            "-retentionPeriod=1d",
            "-search.latencyOffset=0s",
            "-loggerLevel=ERROR",
        ]

    def ready(self) -> bool:
        try:
            return _http(self.url + "/health", timeout=0.5)[0] == 200
        except OSError:
            return False

    def export(self, match: str) -> list[dict[str, object]]:
        """Every series matching a selector, with its values and ns timestamps."""
        _http(self.url + "/internal/force_flush")
        status, body = _http(self.url + "/api/v1/export?" + urllib.parse.urlencode({"match[]": match}))
        if status != 200:
            raise RuntimeError(f"victoria export failed: {status} {body[:300]!r}")
        return [json.loads(line) for line in body.splitlines() if line.strip()]


def _serve(cls: type[ServerProcess], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = cls(tmp_path_factory.mktemp(cls.name))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mosquitto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoServer]:
    yield from _serve(MosquittoServer, tmp_path_factory)  # type: ignore[misc]


@pytest.fixture(scope="session")
def influxdb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    yield from _serve(InfluxServer, tmp_path_factory)  # type: ignore[misc]


@pytest.fixture(scope="session")
def victoria_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaServer]:
    yield from _serve(VictoriaServer, tmp_path_factory)  # type: ignore[misc]


# -- helpers for delivery tests -------------------------------------------------------------------
def synthetic_batch(
    device: str, start_ns: int, n: int, tags: int = 4, step_ns: int = 1_000_000
) -> SampleBatch:
    """n rows x ``tags`` Good float columns with unique timestamps (so InfluxDB counts are exact)."""
    ts = start_ns + np.arange(n, dtype=np.int64) * step_ns
    base = np.arange(n, dtype=np.float64)
    values = {f"t{j}": base * (j + 1) + 0.25 for j in range(tags)}
    return SampleBatch(
        device=device, ts=ts, values=values, quality={t: np.zeros(n, np.uint8) for t in values}
    )


def delivery_config(
    tmp: Path,
    *,
    mqtt: MosquittoServer | None = None,
    influx: InfluxServer | None = None,
    database: str | None = None,
    prefix: str | None = None,
    buffer: dict[str, object] | None = None,
    mqtt_extra: dict[str, object] | None = None,
    influx_extra: dict[str, object] | None = None,
    site: str = "s1",
) -> AgentConfig:
    """An AgentConfig with one asset and sinks pointing at the test servers.

    ``prefix`` becomes a literal first topic level so tests sharing the broker never see
    each other's messages.
    """
    doc: dict[str, object] = {
        "agent": {"name": "test-agent"},
        "assets": [{"id": "press1", "site": site, "area": "a1", "line": "l1", "rated_power_kw": 50}],
        "devices": [],
        "buffer": {"path": str(tmp / "buffer.db"), **(buffer or {})},
    }
    if mqtt is not None:
        doc["mqtt"] = {
            "host": mqtt.host,
            "port": mqtt.port,
            "backoff_max": 1,
            "topic_template": f"{prefix or 'uns'}/{{site}}/{{area}}/{{line}}/{{asset}}/{{kind}}",
            "status_topic": f"{prefix or 'uns'}/{{site}}/edge-agent/{{agent}}/status",
            "session_expiry": 300,
            **(mqtt_extra or {}),
        }
    if influx is not None:
        doc["influxdb"] = {"url": influx.url, "database": database, "backoff_max": 1, **(influx_extra or {})}
    return AgentConfig.model_validate(doc)

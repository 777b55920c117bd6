"""Make sure ingest's InfluxDB target exists before the first write: create (v1) or check (v2) it.

``CREATE DATABASE`` is idempotent in InfluxDB 1.x, so every start may send it. A bucket is
not created (that needs an all-access token a writer should not hold): a missing one is a
configuration error that names it.
"""

from __future__ import annotations

__all__ = ["TargetUnchecked", "ensure_target"]

from urllib.parse import urlencode

import urllib3

from edge_agent.config import InfluxConfig
from edge_agent.config.redact import redact_urls
from edge_agent.errors import ConfigError, ConfigProblem, EdgeAgentError, TransientSinkError


class TargetUnchecked(EdgeAgentError):
    """The target could not be created or checked, but may well accept writes: carry on, writes will tell."""


def _v1_create(cfg: InfluxConfig) -> None:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if cfg.username:
        pw = cfg.password.get_secret_value() if cfg.password else ""
        headers.update(urllib3.make_headers(basic_auth=f"{cfg.username}:{pw}"))
    if cfg.token:
        headers["Authorization"] = f"Token {cfg.token.get_secret_value()}"
    name = (cfg.database or "").replace("\\", "\\\\").replace('"', '\\"')
    http = urllib3.PoolManager(retries=False)
    try:
        resp = http.request(
            "POST",
            f"{cfg.url.rstrip('/')}/query",
            body=urlencode({"q": f'CREATE DATABASE "{name}"'}),
            headers=headers,
            timeout=cfg.timeout,
        )
    except urllib3.exceptions.HTTPError as exc:
        raise TransientSinkError(
            f"influxdb: cannot reach it to create database {cfg.database!r}: {exc}"
        ) from exc
    finally:
        http.clear()
    if resp.status in (401, 403):
        # A write-only user may not create databases: say so, and let the writes tell.
        raise TargetUnchecked(
            f"influxdb: not allowed to create database {cfg.database!r} (HTTP {resp.status}); "
            "create it once as an admin"
        )
    if resp.status >= 300 or b'"error"' in resp.data:
        raise TransientSinkError(
            f"influxdb: creating database {cfg.database!r} answered HTTP {resp.status}: "
            f"{resp.data.decode(errors='replace')[:200]}"
        )


def _v2_check(cfg: InfluxConfig) -> None:
    from influxdb_client.client.influxdb_client import InfluxDBClient
    from influxdb_client.rest import ApiException

    client = InfluxDBClient(
        url=cfg.url,
        token=cfg.token.get_secret_value() if cfg.token else "",
        org=cfg.org or "",
        timeout=int(cfg.timeout * 1000),
        retries=False,
    )
    try:
        bucket = client.buckets_api().find_bucket_by_name(cfg.bucket or "")  # type: ignore[no-untyped-call]
    except ApiException as exc:
        if exc.status in (401, 403):
            raise TargetUnchecked(f"influxdb: the token may not read bucket {cfg.bucket!r}") from exc
        if exc.status in (400, 404, 405, 501):  # e.g. VictoriaMetrics: writes, but no bucket API
            raise TargetUnchecked(
                f"influxdb: {redact_urls(cfg.url)} has no bucket API (HTTP {exc.status}); bucket "
                f"{cfg.bucket!r} not checked"
            ) from exc
        raise TransientSinkError(f"influxdb: checking bucket {cfg.bucket!r}: HTTP {exc.status}") from exc
    except urllib3.exceptions.HTTPError as exc:
        raise TransientSinkError(f"influxdb: cannot reach it to check bucket {cfg.bucket!r}: {exc}") from exc
    finally:
        client.close()  # type: ignore[no-untyped-call]
    if bucket is None:
        raise ConfigError(
            "<config>",
            [
                ConfigProblem(
                    "influxdb.bucket",
                    None,
                    f"bucket {cfg.bucket!r} does not exist in org {cfg.org!r}; create it "
                    "(influx bucket create) or fix the name",
                )
            ],
        )


def ensure_target(cfg: InfluxConfig) -> None:
    """Blocking. TransientSinkError: retry later; TargetUnchecked: carry on and let writes tell."""
    if cfg.api == "v1":
        _v1_create(cfg)
    else:
        _v2_check(cfg)

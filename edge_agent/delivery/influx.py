"""InfluxDB writers (v1 ``/write`` over plain HTTP, v2 through influxdb-client) and the sink.

Both take prebuilt line protocol and map every outcome onto the sink error tree:
timeouts, connection errors, 5xx and 429 are transient; 400/413/422 (the batch itself is
bad) are permanent. 401/403/404 are configuration problems that the operator can fix
without losing data, so they are transient too (retried, logged as errors).
"""

from __future__ import annotations

__all__ = ["InfluxSink", "InfluxWriter", "V1Writer", "V2Writer", "lines_for", "make_writer"]

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from urllib.parse import urlencode

import urllib3

from edge_agent.config import InfluxConfig
from edge_agent.config.redact import redact_urls
from edge_agent.delivery.lineprotocol import record_lines
from edge_agent.delivery.record import Record
from edge_agent.delivery.sink import Sink
from edge_agent.errors import PermanentSinkError, TransientSinkError

_PERMANENT = {400, 413, 422}


def _classify(status: int, body: str, target: str) -> None:
    if 200 <= status < 300:
        return
    msg = f"{target} answered HTTP {status}: {body.strip()[:300]}"
    if status in _PERMANENT:
        raise PermanentSinkError(msg)
    if status in (401, 403):
        msg += " (check influxdb username/password/token)"
    elif status == 404:
        msg += " (check influxdb url, api and database/bucket)"
    raise TransientSinkError(msg)


class InfluxWriter(ABC):
    """Blocking writer; call from a worker thread (the sink and ingest do)."""

    def __init__(self, config: InfluxConfig) -> None:
        self.config = config
        self.target = f"influxdb {redact_urls(config.url)}"  # for messages: no credentials from the URL

    @abstractmethod
    def write(self, body: bytes) -> None: ...

    def close(self) -> None:  # noqa: B027  (optional hook)
        """Release connections."""


class V1Writer(InfluxWriter):
    """``POST /write?db=…&precision=ns``: InfluxDB 1.x, 2.x/3.x compat API, VictoriaMetrics."""

    def __init__(self, config: InfluxConfig) -> None:
        super().__init__(config)
        self._http = urllib3.PoolManager(num_pools=2, maxsize=4, retries=False)
        query: dict[str, str] = {"db": config.database or "", "precision": "ns"}
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if config.username:
            pw = config.password.get_secret_value() if config.password else ""
            self._headers.update(urllib3.make_headers(basic_auth=f"{config.username}:{pw}"))
        if config.token:
            self._headers["Authorization"] = f"Token {config.token.get_secret_value()}"
        self.url = f"{config.url.rstrip('/')}/write?{urlencode(query)}"

    def write(self, body: bytes) -> None:
        try:
            resp = self._http.request(
                "POST", self.url, body=body, headers=self._headers, timeout=self.config.timeout
            )
        except urllib3.exceptions.HTTPError as exc:
            raise TransientSinkError(f"{self.target}: {exc}") from exc
        _classify(resp.status, resp.data.decode(errors="replace"), self.target)

    def close(self) -> None:
        self._http.clear()


class V2Writer(InfluxWriter):
    """``/api/v2/write`` with org/bucket/token through influxdb-client's synchronous write API."""

    def __init__(self, config: InfluxConfig) -> None:
        super().__init__(config)
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self._client = InfluxDBClient(
            url=config.url,
            token=config.token.get_secret_value() if config.token else "",
            org=config.org or "",
            timeout=int(config.timeout * 1000),
            retries=False,
        )
        self._api = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, body: bytes) -> None:
        from influxdb_client.domain.write_precision import WritePrecision
        from influxdb_client.rest import ApiException

        try:
            self._api.write(
                bucket=self.config.bucket or "",
                org=self.config.org or "",
                record=body,
                write_precision=WritePrecision.NS,  # type: ignore[arg-type]  # a str constant
            )
        except ApiException as exc:
            _classify(int(exc.status or 0), str(exc.body or exc.reason), self.target)
        except urllib3.exceptions.HTTPError as exc:
            raise TransientSinkError(f"{self.target}: {exc}") from exc

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]


def make_writer(config: InfluxConfig) -> InfluxWriter:
    return V1Writer(config) if config.api == "v1" else V2Writer(config)


def lines_for(records: Sequence[Record]) -> tuple[bytes, int]:
    """One request body for several batches, and how many field values it holds."""
    parts, fields = [], 0
    for rec in records:
        text, n = record_lines(rec)
        parts.append(text)
        fields += n
    return "".join(parts).encode(), fields


class InfluxSink(Sink):
    """Writes buffered batches directly (measurements ``raw`` and ``kpi``), batch_size samples a request."""

    max_inflight = 1
    max_records = 10_000

    def __init__(self, config: InfluxConfig, *, name: str = "influxdb") -> None:
        self.name = name
        self.config = config
        self.max_samples = config.batch_size
        self.backoff_max = config.backoff_max
        self.limits = config.limits
        self._writer: InfluxWriter | None = None

    async def start(self) -> None:
        self._writer = make_writer(self.config)

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def _write(self, records: Sequence[Record]) -> None:
        assert self._writer is not None, "InfluxSink used before start()"
        try:
            body, fields = lines_for(records)
        except ValueError as exc:
            raise PermanentSinkError(str(exc)) from exc
        if fields:
            self._writer.write(body)

    async def send(self, records: Sequence[Record]) -> None:
        await asyncio.to_thread(self._write, records)

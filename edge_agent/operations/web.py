"""The agent's small web server (aiohttp): status page, live updates, /metrics, /healthz.

aiohttp because the agent already runs one asyncio loop: the server is a few coroutines on
it, with no second thread, worker process or ASGI layer, and it does streaming responses
(server-sent events) natively. One ticker renders the live sections once per second and
every open page gets the same string, so ten open browsers cost what one does.
"""

from __future__ import annotations

__all__ = ["MAX_LIVE_CLIENTS", "StatusServer"]

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

from aiohttp import web

from edge_agent.config import StatusPageConfig
from edge_agent.operations.health import assess
from edge_agent.operations.metrics import AgentMetrics
from edge_agent.operations.page import render_page, sections_event
from edge_agent.operations.snapshot import RuntimeView

log = logging.getLogger("edge_agent.status_page")
#: Open status pages at once; more get 503 (the page must not eat the gateway).
MAX_LIVE_CLIENTS = 16
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _authorized(request: web.Request, password: str | None, token: str | None) -> bool:
    if password is None and token is None:
        return True
    header = request.headers.get("Authorization", "")
    scheme, _, cred = header.partition(" ")
    if token is not None:
        given = cred if scheme.lower() == "bearer" else request.query.get("token", "")
        if given and hmac.compare_digest(given.encode(), token.encode()):
            return True
    if password is not None and scheme.lower() == "basic":
        try:
            _, _, given = base64.b64decode(cred, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(given.encode(), password.encode())
    return False


class StatusServer:
    """``async with StatusServer(cfg, view):`` serves until the block ends."""

    def __init__(self, config: StatusPageConfig, view: RuntimeView, *, tick: float = 1.0) -> None:
        self.config = config
        self.view = view
        self.metrics = AgentMetrics(view)
        self.tick = tick
        self._password = config.password.get_secret_value() if config.password else None
        self._token = config.token.get_secret_value() if config.token else None
        self._event = sections_event(view.snapshot())
        self._changed = asyncio.Condition()
        self._clients = 0
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/", self._page)
        app.router.add_get("/events", self._events)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/api/status", self._status)
        return app

    async def __aenter__(self) -> Self:
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.bind, self.config.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise OSError(
                exc.errno,
                f"status page: cannot listen on {self.config.bind}:{self.config.port}: {exc.strerror}; "
                "change status_page.port or set status_page.enabled: false",
            ) from exc
        self._ticker = asyncio.create_task(self._tick_loop(), name="status-page-ticker")
        log.info("status page on http://%s:%d/", self.config.bind, self.config.port)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._runner is not None:
            await self._runner.cleanup()

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            self.view.sample_kw()
            if self._clients:
                self._event = sections_event(self.view.snapshot())
                async with self._changed:
                    self._changed.notify_all()

    # -- handlers ------------------------------------------------------------------------------
    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if _authorized(request, self._password, self._token):
            return await handler(request)
        headers = {"WWW-Authenticate": 'Basic realm="edge-agent"'} if self._password else {}
        return web.json_response(
            {"error": "authentication required: HTTP Basic with the status_page password, or the token"},
            status=401,
            headers=headers,
        )

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(text=render_page(self.view.snapshot()), content_type="text/html")

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if self._clients >= MAX_LIVE_CLIENTS:
            return web.json_response({"error": f"at most {MAX_LIVE_CLIENTS} live pages at once"}, status=503)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        self._clients += 1
        try:
            self._event = sections_event(self.view.snapshot())
            await resp.write(self._event.encode())
            while True:
                async with self._changed:
                    await self._changed.wait()
                await resp.write(self._event.encode())
        except ConnectionResetError:  # the page was closed
            pass
        finally:
            self._clients -= 1
        return resp

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), content_type="text/plain", charset="utf-8")

    async def _healthz(self, request: web.Request) -> web.Response:
        health = assess(self.view.snapshot())
        return web.json_response(health.as_json(), status=200 if health.ok else 503)

    async def _status(self, request: web.Request) -> web.Response:
        doc = dataclasses.asdict(self.view.snapshot())
        return web.Response(text=_dumps(doc), content_type="application/json")


def _dumps(doc: object) -> str:
    """JSON with NaN as null (browsers and jq refuse NaN)."""

    def clean(o: object) -> object:
        if isinstance(o, float):
            return o if o == o and o not in (float("inf"), float("-inf")) else None
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, list | tuple):
            return [clean(v) for v in o]
        return o

    return json.dumps(clean(doc))

"""Serve a function app over HTTP like ``func start``: every HTTP function at ``/api/<route>``.

Any HTTP load tool (hey, wrk, a browser) can then measure the same workers the notebooks
use. Function keys are not demanded locally, as with Core Tools.

Only loopback is served, and only to requests that name a loopback host (a web page cannot
reach it by DNS rebinding); a connection must send its first request's headers within
HEADER_TIMEOUT_S; a malformed request is one line on stderr.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from .host import Host, WorkerDiedError
from .invocation import HttpRequestFields

ROUTE_PREFIX = "/api/"
HEADER_TIMEOUT_S = 10.0
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
LINE_LIMIT = 200  # characters of a client's bytes an error line may echo


def aiohttp_route(route: str) -> str:
    """Azure route template -> aiohttp's: ``items/{id:int?}`` becomes ``items/{id}``."""
    return ROUTE_PREFIX + re.sub(r"\{(\w+)(?::[^}?]*)?\??\}", r"{\1}", route.strip("/"))


def is_loopback_name(host_header: str) -> bool:
    """Whether a Host header names this machine (``localhost``, ``*.localhost``, an IP)."""
    name = (urlsplit(f"//{host_header}").hostname or "").lower()
    return name in LOOPBACK_NAMES or name.endswith(".localhost")


@web.middleware
async def loopback_host_only(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if not is_loopback_name(request.host):
        return web.Response(status=403, text="this server answers to loopback names only\n")
    return await handler(request)


class OneLine(logging.Filter):
    """A failed request as one short line: no traceback, no more than a bit of its bytes."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            detail = (str(exc).splitlines() or [""])[0]
            text += f": {type(exc).__name__}: {detail}"
        if len(text) > LINE_LIMIT:
            text = text[:LINE_LIMIT] + "..."
        record.msg, record.args, record.exc_info, record.exc_text = text, (), None, None
        return True


def build_app(host: Host) -> web.Application:
    app = web.Application(middlewares=[loopback_host_only])
    timeout = (host.timeout_s or 230.0) + 5.0

    def endpoint(name: str, route: str, methods: list[str]) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            if request.method not in methods:
                raise web.HTTPMethodNotAllowed(request.method, methods)
            fields = HttpRequestFields(
                method=request.method,
                route=route,
                params=dict(request.query),
                headers=dict(request.headers),
                route_params=dict(request.match_info),
                body=await request.read(),
            )
            try:
                future = host.invoke(name, fields)
                _, response = await asyncio.wait_for(asyncio.wrap_future(future), timeout)
            except (WorkerDiedError, asyncio.TimeoutError) as exc:
                return web.Response(status=500, text=f"{name} failed: {exc or 'no reply'}")
            headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
            return web.Response(status=response.status, body=response.body, headers=headers)

        return handle

    for name, info in host.functions.items():
        if info["is_http"]:
            route = info["route"] or name
            app.router.add_route("*", aiohttp_route(route), endpoint(name, route, info["methods"]))
    return app


async def serve(host: Host, port: int, bind: str = "127.0.0.1") -> None:
    """Serve until cancelled (Ctrl-C)."""
    server_log = logging.getLogger("aiohttp.server")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("throughput_lab serve: %(message)s"))
    handler.addFilter(OneLine())
    server_log.addHandler(handler)
    propagate, server_log.propagate = server_log.propagate, False
    runner = web.AppRunner(build_app(host), access_log=None, handle_signals=False)
    await runner.setup()
    loop = asyncio.get_running_loop()
    assert runner.server is not None
    factory = runner.server

    def connection() -> Any:
        protocol = factory()
        loop.call_later(HEADER_TIMEOUT_S, _drop_if_silent, protocol)
        return protocol

    listener = None
    try:
        listener = await loop.create_server(connection, bind, port)
        port = listener.sockets[0].getsockname()[1]  # the real one, for --port 0
        print(f"Functions ({host.processes} worker process(es), {host.threads} threads each):")
        for name, info in sorted(host.functions.items()):
            if info["is_http"]:
                methods = ",".join(info["methods"])
                print(f"  {name}: [{methods}] http://{bind}:{port}{aiohttp_route(info['route'])}")
        print("Press Ctrl-C to stop.", flush=True)
        await asyncio.Event().wait()
    finally:
        if listener is not None:
            listener.close()
        await runner.cleanup()
        server_log.removeHandler(handler)
        server_log.propagate = propagate


def _drop_if_silent(protocol: Any) -> None:
    """Close a connection that has not sent a whole request head in HEADER_TIMEOUT_S."""
    transport = getattr(protocol, "transport", None)
    if transport is not None and getattr(protocol, "_request_count", 1) == 0:
        transport.close()

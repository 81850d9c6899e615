"""Serve a function app over HTTP like ``func start``: each HTTP function at its route.

Requests are routed as the host routes them (``routing.py``: routePrefix from host.json,
route templates, several functions on one route by method, 404 when none matches), and
the console shows what ``func start`` shows: a line per request, the function's logging,
its output bindings' values and a failed invocation's traceback.
Any HTTP load tool (hey, wrk, a browser) can then measure the same workers the notebooks
use. Function keys are not demanded locally, as with Core Tools.

Only loopback is served, and only to requests that name a loopback host (a web page cannot
reach it by DNS rebinding); a connection must send its first request's headers within
HEADER_TIMEOUT_S; a malformed request is one line on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TextIO
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from .broker_bench import drained_hint
from .host import SIGNAL_SLICE_S, Host, WorkerDiedError
from .http_streaming import client_session, forward
from .invocation import HttpResponseFields, InvocationRecord, clock
from .routing import DEFAULT_ROUTE_PREFIX, Router, host_request, route_prefix

ROUTE_PREFIX = f"/{DEFAULT_ROUTE_PREFIX}/"
HEADER_TIMEOUT_S = 10.0
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
LINE_LIMIT = 200  # characters of a client's bytes an error line may echo
CLIENT = web.AppKey("client", aiohttp.ClientSession)  # to the workers' web servers
# Not relayed from the worker's web server: they describe that one connection.
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")[:-6]


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


def log_request(
    out: TextIO,
    method: str,
    path: str,
    status: int,
    ms: float,
    function: str | None = None,
    record: InvocationRecord | None = None,
) -> None:
    """One line per request, then what the invocation logged, wrote and raised."""
    served_by = f", {function}" if function else ""
    lines = [f"[{_now()}Z] {method} {path} -> {status} ({ms:.0f} ms{served_by})"]
    if record is not None:
        lines += [f"    {line}" for line in record.logs]
        lines += [f"    output {name}: {value!r}" for name, value in record.outputs.items()]
        if record.traceback:
            lines += [f"    {line}" for line in record.traceback.rstrip().splitlines()]
        elif record.error and status >= 500:
            lines.append(f"    {record.error}")
    print("\n".join(lines), file=out, flush=True)


class HttpFunctions:
    """The app's HTTP functions as the host serves them: a request is routed, invoked on
    the next worker (or, with HTTP streaming, forwarded to its web server) and answered,
    and each gets its console lines."""

    def __init__(self, host: Host, out: TextIO) -> None:
        self.host, self.out = host, out
        self.timeout_s = (host.timeout_s or 230.0) + 5.0
        self.router = Router(host.functions.values(), route_prefix(host.app))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        began = clock()
        path = request.raw_path.split("?", 1)[0]
        match = self.router.match(request.method, request.path)
        if match is None:
            log_request(self.out, request.method, path, 404, (clock() - began) * 1e3)
            return web.Response(status=404)
        fields = host_request(
            request.method,
            str(request.url),
            request.headers.items(),
            await request.read(),
            match.route_params,
        )
        if self.host.streams_http and self.host.functions[match.function].get("is_http"):
            return await self.stream(request, match.function, fields, began)
        return await self.invoke(request, path, match.function, fields, began)

    async def invoke(
        self, request: web.Request, path: str, function: str, fields: Any, began: float
    ) -> web.Response:
        """One invocation through the host; its response as the host writes it back."""
        record: InvocationRecord | None = None
        try:
            future = self.host.invoke(function, fields)
            record, response = await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_s)
        except (WorkerDiedError, asyncio.TimeoutError) as exc:
            why = str(exc) or "no reply"
            response = HttpResponseFields(500, f"{function} failed: {why}".encode())
        ms = (clock() - began) * 1e3
        log_request(self.out, request.method, path, response.status, ms, function, record)
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        answer = web.Response(status=response.status, body=response.body, headers=headers)
        for cookie in response.cookies:  # every Set-Cookie, as the host writes the cookies back
            answer.headers.add("Set-Cookie", cookie)
        return answer

    async def stream(
        self, request: web.Request, function: str, fields: Any, began: float
    ) -> web.StreamResponse:
        """HTTP streaming: forward to the worker's web server, relay each chunk as it comes."""
        host, out = self.host, self.out
        record = host.new_record(function)
        future = host.invoke(function, fields, record)
        session = request.app[CLIENT]
        try:
            status, headers, body = await forward(
                session, host.http_uri(record.worker), fields, record.invocation_id
            )
        except aiohttp.ClientError as exc:
            log_request(out, request.method, request.path, 502, (clock() - began) * 1e3, function)
            return web.Response(status=502, text=f"{function}: the worker's web server: {exc}\n")
        kept = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
        answer = web.StreamResponse(status=status, headers=kept)
        await answer.prepare(request)
        async for chunk in body:
            await answer.write(chunk)
        await answer.write_eof()
        with contextlib.suppress(Exception):  # its record, for the console's lines
            done, _ = await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_s)
            record = done
        ms = (clock() - began) * 1e3
        log_request(out, request.method, request.path, status, ms, function, record)
        return answer


async def _client_session(app: web.Application) -> AsyncIterator[None]:
    """The session HTTP streaming forwards through, for as long as the app serves."""
    app[CLIENT] = client_session()
    yield
    await app[CLIENT].close()


def build_app(host: Host, out: TextIO = sys.stdout) -> web.Application:
    """The host's HTTP front end: every path to ``HttpFunctions.handle``, loopback only."""
    app = web.Application(middlewares=[loopback_host_only])
    app.cleanup_ctx.append(_client_session)
    app.router.add_route("*", "/{tail:.*}", HttpFunctions(host, out).handle)
    return app


def function_lines(host: Host, base: str) -> list[str]:
    """The function list ``func start`` prints: HTTP functions with their URLs, then others."""
    router = Router(host.functions.values(), route_prefix(host.app))
    lines = []
    for name, info in host.functions.items():
        if info.get("error"):
            lines.append(f"  {name}: in error, not run ({info['error']})")
            continue
        if info["is_http"]:
            methods = ",".join(info["methods"])
            lines.append(f"  {name}: [{methods}] {base}{router.path_template(info['route'])}")
        else:
            kind = info.get("trigger_type") or "not HTTP"
            hint = drained_hint(kind, name) or "not run here"
            lines.append(f"  {name}: {kind} ({hint})")
        if info.get("load_error") or info.get("unsupported"):
            lines.append(f"    warning: {info.get('load_error') or info['unsupported']}")
    return lines


async def serve(host: Host, port: int, bind: str = "127.0.0.1", out: Any = None) -> None:
    """Serve until cancelled (Ctrl-C)."""
    server_log = logging.getLogger("aiohttp.server")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("throughput_lab serve: %(message)s"))
    handler.addFilter(OneLine())
    server_log.addHandler(handler)
    propagate, server_log.propagate = server_log.propagate, False
    out = out or sys.stdout
    runner = web.AppRunner(build_app(host, out), access_log=None, handle_signals=False)
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
        print("\n".join(function_lines(host, f"http://{bind}:{port}")))
        print("Press Ctrl-C to stop.", flush=True)
        while True:  # until cancelled; a wake each slice runs any signal handler due
            await asyncio.sleep(SIGNAL_SLICE_S)
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

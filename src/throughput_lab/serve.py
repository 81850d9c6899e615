"""Serve a function app over HTTP like ``func start``: every HTTP function at ``/api/<route>``.

Any HTTP load tool (hey, wrk, a browser) can then measure the same workers the notebooks
use. Function keys are not demanded locally, as with Core Tools.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiohttp import web

from .host import Host, WorkerDiedError
from .invocation import HttpRequestFields

ROUTE_PREFIX = "/api/"


def aiohttp_route(route: str) -> str:
    """Azure route template -> aiohttp's: ``items/{id:int?}`` becomes ``items/{id}``."""
    return ROUTE_PREFIX + re.sub(r"\{(\w+)(?::[^}?]*)?\??\}", r"{\1}", route.strip("/"))


def build_app(host: Host) -> web.Application:
    app = web.Application()
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
    runner = web.AppRunner(build_app(host), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, bind, port)
    try:
        await site.start()
        print(f"Functions ({host.processes} worker process(es), {host.threads} threads each):")
        for name, info in sorted(host.functions.items()):
            if info["is_http"]:
                methods = ",".join(info["methods"])
                print(f"  {name}: [{methods}] http://{bind}:{port}{aiohttp_route(info['route'])}")
        print("Press Ctrl-C to stop.", flush=True)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()

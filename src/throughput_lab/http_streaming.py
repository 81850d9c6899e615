"""HTTP streaming, the way the Python worker runs it (``azurefunctions-extensions-http-fastapi``).

When an app imports a web extension (``from azurefunctions.extensions.http.fastapi import
Request, StreamingResponse``), the worker's HTTP functions take the web framework's own
request and may return its own response, streamed. The worker then:
1. starts the extension's web server (``WebServer``, uvicorn, with a ``WebApp`` whose one
   catch-all route waits for the function's answer) on a free port, and tells the host its
   address (the ``HttpUri`` capability);
2. for each invocation gets two things: the host's invocation message (no body), and the
   HTTP request itself, which the host forwards to that address with the header
   ``x-ms-invocation-id``; the two are paired by that id (``HttpCoordinator``);
3. calls the function with the framework's request (route parameters copied in by the
   extension's ``RequestSynchronizer``), and hands what it returns to the waiting route,
   which the web server sends back: a ``StreamingResponse`` goes out chunk by chunk, and
   the host forwards each chunk to the client as it comes.
Every HTTP function of such an app goes this way (``is_http_func and http_v2_enabled``).
Sources: azure-functions-python-worker ``azure_functions_worker/http_v2.py``
(``HttpCoordinator``, ``initialize_http_server``, ``HttpV2Registry``) and ``dispatcher.py``
(``_handle__invocation_request``), read at commit 7e6acf3 (2024-10-17);
azurefunctions-extensions-base ``web.py`` (``HttpV2FeatureChecker``: enabled once a web
extension module is imported) and azurefunctions-extensions-http-fastapi ``web.py``.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

from .invocation import HttpRequestFields

INVOCATION_ID_HEADER = "x-ms-invocation-id"  # the worker's X_MS_INVOCATION_ID
START_TIMEOUT_S = 10.0


def extension_base() -> Any | None:
    """``azurefunctions.extensions.base`` when the app imported a web extension, else None."""
    if "azurefunctions.extensions.base" not in sys.modules:
        return None  # the app imported none: plain func.HttpRequest / HttpResponse
    base = sys.modules["azurefunctions.extensions.base"]
    return base if base.HttpV2FeatureChecker.http_v2_enabled() else None


class HttpCoordinator:
    """Pairs each invocation with its HTTP request, and the function's answer with the route
    waiting to send it, by invocation id (on the worker's loop)."""

    def __init__(self) -> None:
        self._requests: dict[str, asyncio.Future[Any]] = {}
        self._responses: dict[str, asyncio.Future[Any]] = {}

    def _future(self, table: dict[str, asyncio.Future[Any]], key: str) -> asyncio.Future[Any]:
        if key not in table:
            table[key] = asyncio.get_running_loop().create_future()
        return table[key]

    def set_request(self, invocation_id: str, request: Any) -> None:
        self._future(self._requests, invocation_id).set_result(request)

    async def request(self, invocation_id: str) -> Any:
        try:
            return await self._future(self._requests, invocation_id)
        finally:
            self._requests.pop(invocation_id, None)

    def set_response(self, invocation_id: str, response: Any) -> None:
        """The function's return value, or its exception (the route raises it: a 500)."""
        future = self._future(self._responses, invocation_id)
        if not future.done():
            future.set_result(response)

    async def response(self, invocation_id: str) -> Any:
        try:
            return await self._future(self._responses, invocation_id)
        finally:
            self._responses.pop(invocation_id, None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start_web_server(base: Any, coordinator: HttpCoordinator) -> str:
    """The extension's web server on 127.0.0.1, as the worker starts it; its address."""
    extension = importlib.import_module(base.ModuleTrackerMeta.get_module())
    app = extension.WebApp()
    request_type = base.RequestTrackerMeta.get_request_type()

    async def catch_all(request: request_type) -> Any:  # type: ignore[valid-type]
        invocation_id = request.headers.get(INVOCATION_ID_HEADER)
        if invocation_id is None:
            raise ValueError(f"header {INVOCATION_ID_HEADER} not found")
        coordinator.set_request(invocation_id, request)
        answer = await coordinator.response(invocation_id)
        if isinstance(answer, Exception):
            raise answer
        return answer

    # The framework reads the annotation to know what to pass (this module's annotations
    # are strings): the extension's request type itself.
    catch_all.__annotations__["request"] = request_type
    app.route(catch_all)
    port = _free_port()
    server = extension.WebServer("127.0.0.1", port, app)
    task = asyncio.get_running_loop().create_task(server.serve())
    deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
    while asyncio.get_running_loop().time() < deadline and not task.done():
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.02)
            continue
        writer.close()
        # uvicorn logs a line per request at INFO; the host's console shows its own lines.
        for name in ("uvicorn.access", "uvicorn.error"):
            logging.getLogger(name).setLevel(logging.WARNING)
        return f"http://127.0.0.1:{port}"
    raise RuntimeError("the HTTP streaming web server did not start")


def sync_route_params(base: Any, request: Any, route_params: dict[str, str]) -> None:
    """The host's route values into the framework's request, as the extension does."""
    base.RequestTrackerMeta.get_synchronizer().sync_route_params(request, route_params)


def client_session() -> Any:
    """The host's HTTP client to the workers' web servers: a connection per request, as a
    kept-alive one that the server is closing can fail the next request sent on it."""
    import aiohttp

    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))


async def forward(
    session: Any, http_uri: str, fields: HttpRequestFields, invocation_id: int
) -> tuple[int, dict[str, str], AsyncIterator[bytes]]:
    """The host's side: send the request to the worker's web server, tagged with the
    invocation's id; the status, the headers and the body as it arrives."""
    path = fields.url.split("://", 1)[-1]
    path = "/" + path.split("/", 1)[1] if "/" in path else "/"
    headers = {k: v for k, v in fields.headers.items() if k.lower() != "host"}
    headers[INVOCATION_ID_HEADER] = str(invocation_id)
    response = await session.request(
        fields.method, http_uri + path, headers=headers, data=fields.body, allow_redirects=False
    )

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in response.content.iter_any():
                yield chunk
        finally:
            response.release()

    return response.status, dict(response.headers), body()

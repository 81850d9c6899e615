"""Handlers with known timing, for the engine's own tests (not part of the workbook)."""

import asyncio
import os
import time

import aiohttp
import azure.functions as func
import requests

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
_session: aiohttp.ClientSession | None = None


def _seconds(req: func.HttpRequest, default: float) -> float:
    return float(req.params.get("s", default))


@app.route(route="noop")
async def noop(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("ok")


@app.route(route="sync_sleep")
def sync_sleep(req: func.HttpRequest) -> func.HttpResponse:
    time.sleep(_seconds(req, 0.05))
    return func.HttpResponse("slept")


@app.route(route="async_sleep")
async def async_sleep(req: func.HttpRequest) -> func.HttpResponse:
    await asyncio.sleep(_seconds(req, 0.05))
    return func.HttpResponse("slept")


@app.route(route="blocking_async")
async def blocking_async(req: func.HttpRequest) -> func.HttpResponse:
    time.sleep(_seconds(req, 0.05))
    return func.HttpResponse("blocked the loop")


@app.route(route="aiohttp_io")
async def aiohttp_io(req: func.HttpRequest) -> func.HttpResponse:
    global _session
    if _session is None:
        _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    async with _session.get(os.environ["UPSTREAM_URL"]) as response:
        return func.HttpResponse(await response.text())


@app.route(route="executor_io")
async def executor_io(req: func.HttpRequest) -> func.HttpResponse:
    loop = asyncio.get_running_loop()
    response = await loop.run_in_executor(None, requests.get, os.environ["UPSTREAM_URL"])
    return func.HttpResponse(response.text)


@app.route(route="cpu")
def cpu(req: func.HttpRequest) -> func.HttpResponse:
    total = 0
    for i in range(int(req.params.get("n", "400000"))):
        total += i * i
    return func.HttpResponse(str(total))


@app.route(route="boom")
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("kaboom")


@app.route(route="hang")
async def hang(req: func.HttpRequest) -> func.HttpResponse:
    await asyncio.sleep(3600)
    return func.HttpResponse("never")


@app.route(route="echo", methods=["POST"])
def echo(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(req.get_body(), headers={"x-name": req.params.get("name", "")})


@app.route(route="keyed")
def keyed(req: func.HttpRequest) -> func.HttpResponse:
    """Stands in for a deployed app's key check: 401 without the right x-functions-key."""
    if req.headers.get("x-functions-key") != "test-key-123":
        return func.HttpResponse("missing or wrong key", status_code=401)
    return func.HttpResponse("ok")

"""The fidelity oracle's function app: each handler waits a known time in a known way.

Waiting (not computing) keeps the timings about the dispatch model alone: how many
invocations overlap is decided by the event loop and the thread pools, not by the CPU,
so the same burst takes the same time on a laptop, a 2-core CI runner or Binder.
The wait comes from the query (``?ms=``), bounded, so one app serves every case.
"""

from __future__ import annotations

import asyncio
import time

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

MAX_MS = 2_000


def wait_s(req: func.HttpRequest) -> float:
    """``?ms=`` as seconds, 0-2000 ms."""
    return min(max(int(req.params.get("ms", "50")), 0), MAX_MS) / 1e3


@app.route(route="sync_sleep", methods=["GET"])
def sync_sleep(req: func.HttpRequest) -> func.HttpResponse:
    """A plain ``def`` that blocks its thread: runs on the worker's thread pool."""
    time.sleep(wait_s(req))
    return func.HttpResponse("slept on a pool thread")


@app.route(route="async_await_sleep", methods=["GET"])
async def async_await_sleep(req: func.HttpRequest) -> func.HttpResponse:
    """``async def`` that awaits: gives the event loop back while it waits."""
    await asyncio.sleep(wait_s(req))
    return func.HttpResponse("awaited on the event loop")


@app.route(route="async_blocking_sleep", methods=["GET"])
async def async_blocking_sleep(req: func.HttpRequest) -> func.HttpResponse:
    """``async def`` that blocks: holds the event loop, so the whole worker waits."""
    time.sleep(wait_s(req))
    return func.HttpResponse("blocked the event loop")


@app.route(route="async_default_executor", methods=["GET"])
async def async_default_executor(req: func.HttpRequest) -> func.HttpResponse:
    """``async def`` that hands the blocking call to ``run_in_executor(None, ...)``:
    asyncio's default executor, not the pool PYTHON_THREADPOOL_THREAD_COUNT sizes."""
    await asyncio.get_running_loop().run_in_executor(None, time.sleep, wait_s(req))
    return func.HttpResponse("slept on the default executor")


# -- what a handler returns, and what the worker makes of it ------------------------------
# Not timed: these check that the engine turns return values into responses (or failures)
# the way the worker's code does.


@app.route(route="returns_response", methods=["GET"])
def returns_response(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse('{"made": true}', status_code=201, mimetype="application/json")


@app.route(route="returns_text", methods=["GET"])
def returns_text(req: func.HttpRequest) -> func.HttpResponse:
    return "plain text"


@app.route(route="returns_none", methods=["GET"])
def returns_none(req: func.HttpRequest) -> func.HttpResponse:
    return None  # type: ignore[return-value]


@app.route(route="returns_bytes", methods=["GET"])
def returns_bytes(req: func.HttpRequest) -> func.HttpResponse:
    return b"raw bytes"  # type: ignore[return-value]

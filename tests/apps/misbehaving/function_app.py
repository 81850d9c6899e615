"""Handlers that misbehave on purpose, to test that the host supervises its workers.

Every child a handler starts sleeps for minutes and carries the test session's mark in its
environment, so a test can find any that outlive their worker.
"""

import asyncio
import ctypes
import os
import subprocess
import sys
import time

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
_hoard: list[bytes] = []
CHILD = [sys.executable, "-c", "import time; time.sleep(600)"]


@app.route(route="ok")
def ok(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("ok")


@app.route(route="raises")
def raises(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("this handler always fails")


@app.route(route="hangs_sync")
def hangs_sync(req: func.HttpRequest) -> func.HttpResponse:
    time.sleep(3600)
    return func.HttpResponse("never")


@app.route(route="hangs_async")
async def hangs_async(req: func.HttpRequest) -> func.HttpResponse:
    await asyncio.sleep(3600)
    return func.HttpResponse("never")


@app.route(route="blocks_loop")
async def blocks_loop(req: func.HttpRequest) -> func.HttpResponse:
    while True:  # holds the event loop for good: the worker cannot time it out
        time.sleep(0.01)


@app.route(route="exits")
def exits(req: func.HttpRequest) -> func.HttpResponse:
    os._exit(3)


@app.route(route="sys_exit")
def sys_exit(req: func.HttpRequest) -> func.HttpResponse:
    sys.exit(4)


@app.route(route="segfaults")
def segfaults(req: func.HttpRequest) -> func.HttpResponse:
    ctypes.string_at(0)  # reads address 0: SIGSEGV
    return func.HttpResponse("never")


@app.route(route="leaks")
def leaks(req: func.HttpRequest) -> func.HttpResponse:
    _hoard.append(b"x" * (40 * 2**20))  # touched, so it is resident
    return func.HttpResponse(f"{len(_hoard) * 40} MB held")


@app.route(route="prints")
def prints(req: func.HttpRequest) -> func.HttpResponse:
    sys.stdout.write("x" * (2 * 2**20))  # 2 MB on one line, to stdout
    sys.stdout.write("\nline after\n")
    print("y" * 1000, file=sys.stderr)
    return func.HttpResponse("printed")


@app.route(route="child_inherits")
def child_inherits(req: func.HttpRequest) -> func.HttpResponse:
    subprocess.Popen(CHILD)  # keeps the worker's stdout and stderr open
    return func.HttpResponse("started")


@app.route(route="child_devnull")
def child_devnull(req: func.HttpRequest) -> func.HttpResponse:
    subprocess.Popen(
        CHILD, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return func.HttpResponse("started")


@app.route(route="forks")
def forks(req: func.HttpRequest) -> func.HttpResponse:
    if os.fork() == 0:  # the child keeps every descriptor of the worker
        time.sleep(600)
        os._exit(0)
    return func.HttpResponse("forked")

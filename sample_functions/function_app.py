"""The workbook's sample function app (Azure Functions, Python v2 programming model).

Every handler a notebook teaches lives here, and the notebooks run this very file under
the Python worker's concurrency model: what they time is what deploys.

The I/O handlers call the app setting UPSTREAM_URL, read when they run (app settings are
environment variables). Locally the workbook points it at its embedded slow upstream on
127.0.0.1; in Azure it names a real endpoint. A request never chooses the URL: letting it
would turn the app into a proxy for any address (server-side request forgery).

Every parameter is checked and bounded; a bad one gets a 400 that says what is allowed.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import json
import os
import re

import aiohttp
import azure.functions as func
import requests
from PIL import Image

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

UPSTREAM_TIMEOUT_S = 30  # well under host.json's functionTimeout


# -- helpers ------------------------------------------------------------------------------


def upstream_url() -> str:
    """The UPSTREAM_URL app setting, read now (not at import) so a changed setting counts."""
    url = os.environ.get("UPSTREAM_URL", "")
    if not url.startswith(("http://", "https://")):
        # Not echoed: a URL may carry a key (see the README's note on calling yourself).
        raise RuntimeError(
            "the UPSTREAM_URL app setting is missing or not an http(s) URL; "
            "see sample_functions/README.md"
        )
    return url


def int_param(req: func.HttpRequest, name: str, default: int, low: int, high: int) -> int:
    """A whole-number query parameter from ``low`` to ``high``, or ``default`` when absent."""
    raw = req.params.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"-?[0-9]+", raw.strip()):
        raise ValueError(f"{name} must be a whole number from {low:,} to {high:,}; got {raw!r}")
    value = int(raw)
    if not low <= value <= high:
        raise ValueError(f"{name} must be from {low:,} to {high:,}; got {value:,}")
    return value


def json_response(body: dict, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")


def bad_request(error: ValueError) -> func.HttpResponse:
    return json_response({"error": str(error)}, status=400)


def pi_series(iterations: int) -> float:
    """Leibniz's series for pi: pure Python, so it holds the GIL the whole time."""
    total, sign = 0.0, 1.0
    for k in range(iterations):
        total += sign / (2 * k + 1)
        sign = -sign
    return 4 * total


# -- I/O-bound handlers -------------------------------------------------------------------


@app.route(route="sync_io", methods=["GET"])
def sync_io(req: func.HttpRequest) -> func.HttpResponse:
    """A plain ``def`` that waits on the upstream with the blocking ``requests.get``.

    Teaches: sync handlers run on the worker's thread pool, so throughput follows
    PYTHON_THREADPOOL_THREAD_COUNT. Notebook 02_sync_and_the_thread_pool.
    """
    response = requests.get(upstream_url(), timeout=UPSTREAM_TIMEOUT_S)
    return json_response({"upstream_status": response.status_code})


# One ClientSession per worker process, reused by every invocation. A session owns a
# connection pool: reusing it keeps connections alive between calls, where a session per
# call pays a new connection (and TLS handshake) every time and must be closed each time or it
# leaks sockets. It is created lazily, on the first call, because a session belongs to the
# event loop it was made on, and the worker's loop is only running once invocations arrive.
# Its connection cap is raised from aiohttp's default of 100: otherwise the session, not
# the settings the workbook teaches, would quietly hold calls in flight to 100.
_session: aiohttp.ClientSession | None = None
_session_loop: asyncio.AbstractEventLoop | None = None


def client_session() -> aiohttp.ClientSession:
    """This process's shared session.

    A new one only when the running loop is not the session's own: in Azure the worker's
    loop lives as long as the process, but a notebook may run this app on a fresh loop.
    """
    global _session, _session_loop
    loop = asyncio.get_running_loop()
    if _session is None or _session.closed or _session_loop is not loop:
        _session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1000),
            timeout=aiohttp.ClientTimeout(total=UPSTREAM_TIMEOUT_S),
        )
        _session_loop = loop
    return _session


@app.route(route="async_io", methods=["GET"])
async def async_io(req: func.HttpRequest) -> func.HttpResponse:
    """An ``async def`` that awaits the upstream with aiohttp: the right way.

    Teaches: while it awaits, the worker's one event loop runs other invocations, so
    hundreds can be in flight on one thread. Notebook 03_async_handlers.
    """
    async with client_session().get(upstream_url()) as response:
        await response.read()
        return json_response({"upstream_status": response.status})


@app.route(route="misused_async", methods=["GET"])
async def misused_async(req: func.HttpRequest) -> func.HttpResponse:
    """An ``async def`` that calls the blocking ``requests.get``: the article's warning.

    Teaches: nothing here awaits, so the call blocks the worker's event loop and every
    other invocation in that process waits for it. Thread settings cannot help; only more
    processes (or a fix) do. Notebook 04_misused_async.
    """
    response = requests.get(upstream_url(), timeout=UPSTREAM_TIMEOUT_S)
    return json_response({"upstream_status": response.status_code})


@app.route(route="threadpool_io", methods=["GET"])
async def threadpool_io(req: func.HttpRequest) -> func.HttpResponse:
    """The article's "managing the event loop" example: ``calls`` blocking requests at once.

    Teaches: ``run_in_executor(None, ...)`` moves blocking calls off the loop, onto
    asyncio's DEFAULT executor (min(32, cores + 4) threads), which
    PYTHON_THREADPOOL_THREAD_COUNT does not size. Notebook 05_managing_the_event_loop.
    """
    try:
        calls = int_param(req, "calls", default=10, low=1, high=50)
    except ValueError as error:
        return bad_request(error)
    url = upstream_url()
    loop = asyncio.get_running_loop()
    get = functools.partial(requests.get, url, timeout=UPSTREAM_TIMEOUT_S)
    responses = await asyncio.gather(*(loop.run_in_executor(None, get) for _ in range(calls)))
    return json_response({"calls": calls, "statuses": [r.status_code for r in responses]})


@app.route(route="slow_upstream", methods=["GET"])
async def slow_upstream(req: func.HttpRequest) -> func.HttpResponse:
    """Answers after ``ms`` milliseconds: an upstream a deployed app can call without any
    third-party service (see the README for the caveat of an app calling itself).

    Teaches: pure waiting, the shape of any slow dependency. Notebook 08_to_the_cloud.
    """
    try:
        ms = int_param(req, "ms", default=100, low=0, high=10_000)
    except ValueError as error:
        return bad_request(error)
    await asyncio.sleep(ms / 1000)
    return json_response({"slept_ms": ms})


# -- CPU-bound handlers -------------------------------------------------------------------


@app.route(route="cpu_bound", methods=["GET"])
def cpu_bound(req: func.HttpRequest) -> func.HttpResponse:
    """Pure-Python CPU work: the worker team's pi benchmark (1,000,000 iterations).

    Teaches: it holds the GIL, so more threads in one process add nothing; more worker
    processes (FUNCTIONS_WORKER_PROCESS_COUNT), up to the cores, do. Notebooks
    01_workload_types and 06_worker_processes.
    """
    try:
        iterations = int_param(req, "iterations", default=1_000_000, low=1, high=5_000_000)
    except ValueError as error:
        return bad_request(error)
    return json_response({"iterations": iterations, "pi": pi_series(iterations)})


# 1 MiB built once per process. Hashing more than 2 KiB at a time, hashlib releases the
# GIL while its C code runs, so other threads of the process run Python meanwhile.
_CHUNK = bytes(range(256)) * 4096


@app.route(route="cpu_native", methods=["GET"])
def cpu_native(req: func.HttpRequest) -> func.HttpResponse:
    """CPU work in a C extension that releases the GIL: SHA-256 over ``mb`` MiB.

    Teaches: "CPU-bound" alone does not decide the setting. This one scales with threads
    in one process where cpu_bound cannot: measure. Notebooks 01_workload_types and
    06_worker_processes.
    """
    try:
        mb = int_param(req, "mb", default=128, low=1, high=1024)
    except ValueError as error:
        return bad_request(error)
    digest = hashlib.sha256()
    for _ in range(mb):
        digest.update(_CHUNK)
    return json_response({"mb": mb, "sha256": digest.hexdigest()})


# -- Mixed --------------------------------------------------------------------------------


@app.route(route="mixed", methods=["GET"])
def mixed(req: func.HttpRequest) -> func.HttpResponse:
    """CPU then I/O in a plain ``def``: pure-Python work, then one upstream call.

    Like the worker team's "CPU with a sleep in the middle" load test, with a real call.
    Teaches: the CPU part wants processes, the waiting part wants threads; a sweep of
    both finds the setting. Notebook 07_mixed_workloads_and_tuning.
    """
    try:
        iterations = int_param(req, "iterations", default=250_000, low=1, high=5_000_000)
    except ValueError as error:
        return bad_request(error)
    pi = pi_series(iterations)
    response = requests.get(upstream_url(), timeout=UPSTREAM_TIMEOUT_S)
    return json_response(
        {"iterations": iterations, "pi": pi, "upstream_status": response.status_code}
    )


# -- Queue-triggered ----------------------------------------------------------------------
# The host, not the worker, polls the queue: host.json's extensions.queues (batchSize,
# newBatchThreshold) decides how many messages reach the worker at once. Locally the
# connection AzureWebJobsStorage points at Azurite (UseDevelopmentStorage=true).


def work_item(body: bytes) -> int:
    """A message's or event's work item: JSON like {"n": 7}. A body that is not raises."""
    item = json.loads(body)
    if not isinstance(item, dict) or not isinstance(item.get("n"), int):
        raise ValueError('a work item is JSON like {"n": 7}')
    return item["n"]


def queue_work(msg: func.QueueMessage) -> int:
    """The message's work item. One that is not JSON like {"n": 7} raises, so the host
    retries the message and, after maxDequeueCount tries, moves it to the poison queue.
    """
    return work_item(msg.get_body())


@app.queue_trigger(arg_name="msg", queue_name="work-sync", connection="AzureWebJobsStorage")
def queue_sync_io(msg: func.QueueMessage) -> None:
    """``sync_io`` for a queue message: a plain ``def`` that waits with ``requests.get``.

    Teaches: no more of these run at once than batchSize + newBatchThreshold, however many
    threads the pool has. Notebook 11_queue_triggers.
    """
    queue_work(msg)
    requests.get(upstream_url(), timeout=UPSTREAM_TIMEOUT_S).raise_for_status()


@app.queue_trigger(arg_name="msg", queue_name="work-async", connection="AzureWebJobsStorage")
async def queue_async_io(msg: func.QueueMessage) -> None:
    """``async_io`` for a queue message: awaits the upstream with aiohttp.

    Teaches: on the event loop it needs no threads, so only batchSize and
    newBatchThreshold bound it. Notebook 11_queue_triggers.
    """
    queue_work(msg)
    async with client_session().get(upstream_url()) as response:
        await response.read()
        response.raise_for_status()


async def call_upstream() -> None:
    """One upstream call through this process's shared aiohttp session."""
    async with client_session().get(upstream_url()) as response:
        await response.read()
        response.raise_for_status()


# -- Service Bus-triggered ----------------------------------------------------------------
# The host's Service Bus extension, not the worker, receives the messages: host.json's
# extensions.serviceBus (maxConcurrentCalls, maxConcurrentSessions) decides how many reach
# the worker at once. The connection is the app setting named SERVICE_BUS (a connection
# string, or ServiceBusConnection__fullyQualifiedNamespace for a managed identity). An app
# deployed without Service Bus disables these with AzureWebJobs.<name>.Disabled (README).

SERVICE_BUS = "ServiceBusConnection"


@app.service_bus_queue_trigger(arg_name="msg", queue_name="sb-work-sync", connection=SERVICE_BUS)
def sb_sync_io(msg: func.ServiceBusMessage) -> None:
    """``sync_io`` for a Service Bus message: a plain ``def`` that waits with ``requests``.

    Teaches: no more run at once than maxConcurrentCalls on the instance, nor than the
    pool's threads in each worker process. A message that raises is abandoned, delivered
    again, and dead-lettered at the queue's max delivery count. Notebook 13.
    """
    work_item(msg.get_body())
    requests.get(upstream_url(), timeout=UPSTREAM_TIMEOUT_S).raise_for_status()


@app.service_bus_queue_trigger(arg_name="msg", queue_name="sb-work-async", connection=SERVICE_BUS)
async def sb_async_io(msg: func.ServiceBusMessage) -> None:
    """``async_io`` for a Service Bus message: on the event loop, bound by
    maxConcurrentCalls alone. Notebook 13."""
    work_item(msg.get_body())
    await call_upstream()


@app.service_bus_queue_trigger(
    arg_name="msg", queue_name="sb-sessions", connection=SERVICE_BUS, is_sessions_enabled=True
)
async def sb_session_io(msg: func.ServiceBusMessage) -> None:
    """A session-enabled queue's messages: one at a time per session, in order.

    Teaches: a session is a queue of its own; a hot session runs no faster than one
    message at a time, however many calls the host allows. Notebook 13.
    """
    work_item(msg.get_body())
    await call_upstream()


# -- Event Hubs-triggered -----------------------------------------------------------------
# One invocation at a time per partition, with up to maxEventBatchSize events
# (cardinality "many"). A failed invocation is not retried: the host checkpoints past it.
# Each function reads with a consumer group of its own (create both in the event hub).

EVENT_HUB = "EventHubConnection"


@app.event_hub_message_trigger(
    arg_name="events",
    event_hub_name="work-events",
    connection=EVENT_HUB,
    consumer_group="one-at-a-time",
    cardinality=func.Cardinality.MANY,
)
def eh_one_at_a_time(events: list[func.EventHubEvent]) -> None:
    """A batch walked one event at a time, each waiting on the upstream with ``requests``.

    Teaches: the batch takes (events x the upstream's delay), and its partition waits the
    whole time; more threads cannot help, since each partition runs one batch at once.
    Notebook 13.
    """
    for event in events:
        work_item(event.get_body())
        requests.get(upstream_url(), timeout=UPSTREAM_TIMEOUT_S).raise_for_status()


@app.event_hub_message_trigger(
    arg_name="events",
    event_hub_name="work-events",
    connection=EVENT_HUB,
    consumer_group="batch-awaited",
    cardinality=func.Cardinality.MANY,
)
async def eh_batch_awaited(events: list[func.EventHubEvent]) -> None:
    """The same batch, its upstream calls awaited together with ``asyncio.gather``.

    Teaches: the batch takes about one upstream delay, whatever its size. Notebook 13.
    """
    for event in events:
        work_item(event.get_body())
    await asyncio.gather(*(call_upstream() for _ in events))


# -- Blob-triggered -----------------------------------------------------------------------
# The article's own CPU-bound example: resize an uploaded image. source=EventGrid is the
# blob trigger Flex Consumption runs (the host refuses the polling one there); in Azure an
# Event Grid subscription on the storage account delivers a BlobCreated event per upload.
# Locally the lab delivers those events itself (Azurite has no Event Grid).

THUMBNAIL_SIZE = (128, 128)


@app.blob_trigger(
    arg_name="image",
    path="images/{name}",
    connection="AzureWebJobsStorage",
    source=func.BlobSource.EVENT_GRID,
)
@app.blob_output(arg_name="thumbnail", path="thumbnails/{name}", connection="AzureWebJobsStorage")
def thumbnail(image: func.InputStream, thumbnail: func.Out[bytes]) -> None:
    """A 128-pixel PNG thumbnail of each new image in ``images/``, written to ``thumbnails/``.

    Teaches: decoding and resizing an image is CPU work, done in Pillow's C code (which
    releases the GIL while it resizes): a plain ``def`` on the pool, and more worker
    processes once a core is busy. Notebooks 06 and 07.
    """
    with Image.open(image) as picture:
        picture.thumbnail(THUMBNAIL_SIZE)
        out = io.BytesIO()
        picture.save(out, format="PNG")
    thumbnail.set(out.getvalue())

"""The sample function app, run the way the workbook runs it: real worker processes, real
``azure.functions.HttpRequest`` objects, the embedded upstream on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import math
import time
from pathlib import Path
from urllib.parse import urlsplit

import azure.functions as func
import psutil
import pytest
from aiohttp import web

from throughput_lab import Host, HttpRequestFields, Lab, Upstream, load_app

APP = Path(__file__).resolve().parents[1] / "sample_functions"

# name -> is it ``async def``? (which one decides where the worker runs it)
FUNCTIONS = {
    "sync_io": False,
    "async_io": True,
    "misused_async": True,
    "threadpool_io": True,
    "cpu_bound": False,
    "cpu_native": False,
    "slow_upstream": True,
    "mixed": False,
}
# Queue-triggered (notebook 11): name -> (is async, queue name)
QUEUE_FUNCTIONS = {"queue_sync_io": (False, "work-sync"), "queue_async_io": (True, "work-async")}
# Blob-triggered: name -> (is async, the trigger's path, its source)
BLOB_FUNCTIONS = {"thumbnail": (False, "images/{name}", "EventGrid")}
# Service Bus- and Event Hubs-triggered (notebook 13): name -> (is async, trigger type)
BROKER_FUNCTIONS = {
    "sb_sync_io": (False, "serviceBusTrigger"),
    "sb_async_io": (True, "serviceBusTrigger"),
    "sb_session_io": (True, "serviceBusTrigger"),
    "eh_one_at_a_time": (False, "eventHubTrigger"),
    "eh_batch_awaited": (True, "eventHubTrigger"),
}
CHUNK = bytes(range(256)) * 4096  # the 1 MiB cpu_native hashes, once per MiB asked for


class PeerRecordingUpstream(Upstream):
    """The engine's upstream, also noting who connected (address, port) for each request."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.peers: list[tuple[str, int]] = []

    async def _answer(self, request: web.Request) -> web.Response:
        self.peers.append(request.transport.get_extra_info("peername")[:2])
        return await super()._answer(request)


def worker_processes() -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "throughput_lab.worker_process" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


@pytest.fixture(scope="module", autouse=True)
def no_worker_left_behind():
    """Set up first, torn down last: after every host of this module has closed."""
    yield
    deadline = time.monotonic() + 5
    while worker_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert worker_processes() == [], "a worker process outlived its host"


@pytest.fixture(scope="module")
def upstream():
    with PeerRecordingUpstream(delay_ms=20) as up:
        yield up


@pytest.fixture(scope="module")
def host(upstream):
    settings = {"UPSTREAM_URL": upstream.url}
    with Host(APP, processes=1, threads=4, app_settings=settings, timeout_s=30) as running:
        yield running


def invoke(host: Host, name: str, **params: object):
    """One invocation through the host; returns (record, status, parsed JSON body)."""
    route = host.function(name).route
    request = HttpRequestFields(
        method="GET", route=route, params={k: str(v) for k, v in params.items()}
    )
    record, response = host.invoke(name, request).result(timeout=60)
    headers = {name.lower(): value for name, value in response.headers.items()}  # HTTP: any case
    assert headers.get("content-type", "").startswith("application/json"), response
    return record, response.status, json.loads(response.body)


# -- indexing ------------------------------------------------------------------------------


def test_app_indexes_with_azure_functions_get_functions():
    spec = importlib.util.spec_from_file_location("sample_app_under_test", APP / "function_app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    every = {f.get_function_name(): f for f in module.app.get_functions()}
    assert set(every) == (
        set(FUNCTIONS) | set(QUEUE_FUNCTIONS) | set(BROKER_FUNCTIONS) | set(BLOB_FUNCTIONS)
    )
    functions = {n: f for n, f in every.items() if n in FUNCTIONS}
    for name, fn in functions.items():
        assert fn.is_http_function(), name
        trigger = fn.get_trigger()
        assert trigger.auth_level == func.AuthLevel.FUNCTION, f"{name} must need a function key"
        assert [str(m.value) for m in trigger.methods] == ["GET"], name
        assert trigger.route == name
        binding = json.loads(fn.get_function_json())["bindings"][0]
        assert binding["authLevel"] == "FUNCTION", name
        assert inspect.iscoroutinefunction(fn.get_user_function()) is FUNCTIONS[name], name


def test_engine_indexes_the_same_functions():
    functions = load_app(APP)
    http = {n: f for n, f in functions.items() if f.is_http}
    assert {n: f.is_async for n, f in http.items()} == FUNCTIONS
    assert {f.auth_level for f in http.values()} == {"FUNCTION"}
    queued = {n: (f.is_async, f.queue) for n, f in functions.items() if f.queue}
    assert queued == QUEUE_FUNCTIONS
    blobs = {
        n: (f.is_async, f.blob_path, f.blob_source) for n, f in functions.items() if f.blob_path
    }
    assert blobs == BLOB_FUNCTIONS
    brokered = {
        n: (f.is_async, f.trigger_type)
        for n, f in functions.items()
        if not f.is_http and n not in QUEUE_FUNCTIONS and n not in BLOB_FUNCTIONS
    }
    assert brokered == BROKER_FUNCTIONS
    # A Service Bus queue trigger names a queue too, but never drains a storage queue.
    assert functions["sb_sync_io"].queue is None
    assert functions["sb_sync_io"].setting("queueName") == "sb-work-sync"
    assert functions["sb_session_io"].setting("isSessionsEnabled") is True
    assert functions["eh_batch_awaited"].setting("cardinality") == "many"


def test_broker_functions_connect_by_app_setting_name():
    """Deployable as they are: each names the app setting that holds its connection; the
    README's AzureWebJobs.<name>.Disabled settings name exactly these functions."""
    functions = load_app(APP)
    for name, (_, trigger_type) in BROKER_FUNCTIONS.items():
        expected = (
            "ServiceBusConnection"
            if trigger_type == "serviceBusTrigger"
            else ("EventHubConnection")
        )
        assert functions[name].setting("connection") == expected, name
    readme = (APP / "README.md").read_text()
    for name in BROKER_FUNCTIONS:
        assert f"AzureWebJobs.{name}.Disabled" in readme, name
    groups = {
        functions[n].setting("consumerGroup") for n in BROKER_FUNCTIONS if n.startswith("eh_")
    }
    assert len(groups) == 2, "two functions on one event hub need a consumer group each"


def test_queue_functions_bind_to_azure_web_jobs_storage():
    spec = importlib.util.spec_from_file_location("sample_app_queue", APP / "function_app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for fn in module.app.get_functions():
        if fn.get_function_name() in QUEUE_FUNCTIONS:
            binding = json.loads(fn.get_function_json())["bindings"][0]
            assert binding["type"] == "queueTrigger"
            assert binding["connection"] == "AzureWebJobsStorage"


def test_host_json_and_requirements():
    host_json = json.loads((APP / "host.json").read_text())
    assert host_json["version"] == "2.0"
    assert host_json["extensionBundle"] == {
        "id": "Microsoft.Azure.Functions.ExtensionBundle",
        "version": "[4.*, 5.0.0)",
    }
    assert host_json["functionTimeout"]
    requirements = (APP / "requirements.txt").read_text()
    for package in ("azure-functions", "aiohttp", "requests", "pillow"):
        assert f"\n{package}" in f"\n{requirements}", package
    example = json.loads((APP / "local.settings.example.json").read_text())["Values"]
    assert {
        "FUNCTIONS_WORKER_RUNTIME",
        "AzureWebJobsStorage",
        "FUNCTIONS_WORKER_PROCESS_COUNT",
        "PYTHON_THREADPOOL_THREAD_COUNT",
        "UPSTREAM_URL",
    } <= set(example)


# -- correct answers -----------------------------------------------------------------------

# (function, params, upstream calls it makes, expected JSON fields)
GOOD_CASES = [
    ("sync_io", {}, 1, {"upstream_status": 200}),
    ("async_io", {}, 1, {"upstream_status": 200}),
    ("misused_async", {}, 1, {"upstream_status": 200}),
    ("threadpool_io", {}, 10, {"calls": 10, "statuses": [200] * 10}),
    ("threadpool_io", {"calls": 3}, 3, {"calls": 3, "statuses": [200] * 3}),
    ("threadpool_io", {"calls": 50}, 50, {"calls": 50, "statuses": [200] * 50}),
    ("cpu_bound", {"iterations": 1000}, 0, {"iterations": 1000}),
    ("cpu_bound", {}, 0, {"iterations": 1_000_000}),
    ("cpu_native", {"mb": 2}, 0, {"mb": 2, "sha256": hashlib.sha256(CHUNK * 2).hexdigest()}),
    ("cpu_native", {}, 0, {"mb": 128}),
    ("slow_upstream", {"ms": 50}, 0, {"slept_ms": 50}),
    ("slow_upstream", {"ms": 0}, 0, {"slept_ms": 0}),
    ("slow_upstream", {}, 0, {"slept_ms": 100}),
    ("mixed", {"iterations": 1000}, 1, {"iterations": 1000, "upstream_status": 200}),
    ("mixed", {}, 1, {"iterations": 250_000, "upstream_status": 200}),
]


@pytest.mark.parametrize(
    ("name", "params", "upstream_calls", "expected"),
    GOOD_CASES,
    ids=[
        f"{c[0]}-{'-'.join(f'{k}={v}' for k, v in c[1].items()) or 'defaults'}" for c in GOOD_CASES
    ],
)
def test_function_answers(host, upstream, name, params, upstream_calls, expected):
    before = upstream.stats.requests
    record, status, body = invoke(host, name, **params)
    assert (status, record.error) == (200, ""), body
    assert {k: body[k] for k in expected} == expected
    if "pi" in body:  # Leibniz's series: the error after n terms is about 1/n
        assert abs(body["pi"] - math.pi) < 2 / body["iterations"]
    if name == "slow_upstream":
        assert record.run_ms >= params.get("ms", 100) * 0.9
    assert upstream.stats.requests - before == upstream_calls


def test_upstream_traffic_stays_on_loopback(host, upstream):
    assert urlsplit(upstream.url).hostname == "127.0.0.1"
    before = upstream.stats.requests
    invoke(host, "threadpool_io", calls=5)
    invoke(host, "mixed", iterations=10)
    assert upstream.stats.requests - before == 6
    assert upstream.peers, "the upstream saw no request"
    assert {address for address, _ in upstream.peers} == {"127.0.0.1"}


def test_async_io_reuses_one_client_session(host, upstream):
    """Sequential calls share one kept-alive connection; requests.get opens one each time."""

    def source_ports(name: str) -> set[int]:
        start = len(upstream.peers)
        for _ in range(3):
            assert invoke(host, name)[1] == 200
        return {port for _, port in upstream.peers[start:]}

    assert len(source_ports("async_io")) == 1
    assert len(source_ports("sync_io")) == 3


def test_upstream_url_is_read_at_call_time(upstream, monkeypatch):
    """An in-process worker shares this process's environment, so the setting can change."""
    functions = {"sync_io": load_app(APP)["sync_io"]}
    monkeypatch.delenv("UPSTREAM_URL", raising=False)
    with Host(functions=functions, threads=1, timeout_s=30) as in_process:
        request = HttpRequestFields(method="GET", route="sync_io")
        record, response = in_process.invoke("sync_io", request).result(timeout=30)
        assert response.status == 500
        assert "UPSTREAM_URL" in record.error
        monkeypatch.setenv("UPSTREAM_URL", upstream.url)
        record, response = in_process.invoke("sync_io", request).result(timeout=30)
        assert (response.status, record.error) == (200, "")


# -- bad parameters ------------------------------------------------------------------------

BOUNDS = {  # function -> (parameter, low, high)
    "threadpool_io": ("calls", 1, 50),
    "cpu_bound": ("iterations", 1, 5_000_000),
    "cpu_native": ("mb", 1, 1024),
    "slow_upstream": ("ms", 0, 10_000),
    "mixed": ("iterations", 1, 5_000_000),
}
BAD_CASES = [
    (name, value)
    for name, (_, low, high) in BOUNDS.items()
    for value in (str(low - 1), str(high + 1), "ten", "2.5", "1e3", "", "0x10")
]


@pytest.mark.parametrize(("name", "value"), BAD_CASES, ids=[f"{n}={v!r}" for n, v in BAD_CASES])
def test_bad_parameter_is_a_400_that_says_what_is_allowed(host, upstream, name, value):
    param, low, high = BOUNDS[name]
    before = upstream.stats.requests
    record, status, body = invoke(host, name, **{param: value})
    assert status == 400
    # the function's own 400 answer, not an exception (that would read "ValueError: ...")
    assert record.error.startswith("HTTP 400: "), "a bad parameter is answered, not a crash"
    assert param in body["error"] and f"{low:,}" in body["error"] and f"{high:,}" in body["error"]
    assert upstream.stats.requests == before, "validated before any upstream call"


# -- under load, through the lab the notebooks use ----------------------------------------

LOAD_CASES = {  # function -> (params, upstream calls per invocation)
    "sync_io": ({}, 1),
    "async_io": ({}, 1),
    "misused_async": ({}, 1),
    "threadpool_io": ({"calls": "4"}, 4),
    "cpu_bound": ({"iterations": "20000"}, 0),
    "cpu_native": ({"mb": "4"}, 0),
    "slow_upstream": ({"ms": "10"}, 0),
    "mixed": ({"iterations": "20000"}, 1),
}


def test_every_function_runs_under_load_without_errors():
    with Lab(APP, upstream_delay_ms=10) as lab:
        for name, (params, calls) in LOAD_CASES.items():
            result = lab.run(
                name, processes=1, threads=4, concurrency=4, requests=12, params=params
            )
            summary = result.summary
            assert (summary.ok, summary.errors) == (12, 0), (name, summary.error_samples)
            assert {r.status for r in result.records} == {200}
            # The upstream counts only the measured window (the warm-up comes before it).
            assert lab.upstream.stats.requests == 12 * calls, name
        assert urlsplit(lab.upstream.url).hostname == "127.0.0.1"


# -- the GIL, measured ---------------------------------------------------------------------


def thread_speedups(lab: Lab) -> dict[str, float]:
    """Throughput with 2 pool threads / with 1, in one worker process, for both CPU kinds,
    and ``allowed``: what the cores left free by other programs allowed 2 threads (<= 2)."""
    work = {"cpu_native": {"mb": "48"}, "cpu_bound": {"iterations": "300000"}}  # ~30 ms each
    rps: dict[tuple[str, int], float] = {}
    free = []
    for threads in (1, 2):
        for name, params in work.items():
            result = lab.run(
                name, processes=1, threads=threads, concurrency=4, requests=16, params=params
            )
            assert result.summary.errors == 0, result.summary.error_samples
            rps[name, threads] = result.summary.throughput_rps
            if threads == 2:
                free.append(result.summary.free_cores)
    speedups = {name: rps[name, 2] / rps[name, 1] for name in work}
    return {**speedups, "allowed": max(1.0, min(2.0, *free))}


@pytest.mark.timing
@pytest.mark.solo  # 2 threads need 2 cores of their own: not beside another test
def test_native_code_scales_with_threads_where_pure_python_cannot(summary):
    """cpu_native (hashlib releases the GIL) gains >= 0.75 of what the free cores allow with
    2 threads (1.5x on 2 free cores); cpu_bound <= 1.25x.

    Both are measured in this one run, on the same machine. Other load on a small machine
    can slow any single measurement (and so push a ratio either way), so up to 3 attempts
    are made and the best ratio of each counts; the thresholds never move. With fewer than
    1.5 free cores (one core, or one kept busy) the contrast cannot show: skipped, saying so.
    """
    attempts = []
    with Lab(APP, upstream_delay_ms=1) as lab:
        for _ in range(3):
            attempts.append(thread_speedups(lab))
            allowed = max(a["allowed"] for a in attempts)
            native = max(a["cpu_native"] for a in attempts)
            pure = min(a["cpu_bound"] for a in attempts)
            if allowed >= 1.5 and native >= 0.75 * allowed and pure <= 1.25:
                break
    report = "; ".join(
        f"cpu_native {a['cpu_native']:.2f}x, cpu_bound {a['cpu_bound']:.2f}x, free cores "
        f"allowed {a['allowed']:.2f}x"
        for a in attempts
    )
    summary(f"[gil, solo] 2 threads / 1 thread in one worker: {report}")
    if allowed < 1.5:
        pytest.skip(f"2 threads need 2 free cores to show the GIL's effect: {report}")
    assert native >= 0.75 * allowed, f"native code did not scale with threads: {report}"
    assert pure <= 1.25, f"pure Python scaled with threads?: {report}"

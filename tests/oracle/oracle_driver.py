"""The fidelity oracle: the same burst of invocations through Microsoft's dispatch code and
through the engine, timed the same way.

Microsoft publishes the Python worker's dispatch code on PyPI as ``azure-functions-runtime``.
Its ``native_invocation.invocation_request_native`` runs one invocation of an indexed
function exactly as the worker does once gRPC has delivered it: decode the trigger input
on the event loop, then ``await`` an ``async def`` right there, or send a ``def`` to the
worker's ONE ThreadPoolExecutor with ``loop.run_in_executor``. The pool comes from
``start_threadpool_executor()``, which reads PYTHON_THREADPOOL_THREAD_COUNT from the
environment. No host, no gRPC: just the code that decides how invocations overlap.

Both sides get the same treatment: a fresh event loop on a thread of its own (so this also
works inside a notebook, whose kernel loop is already running) of the kind the real worker
runs on this Python (uvloop's from 3.13, see ``worker_event_loop``), the same function app
loaded by each side's own loader, then N invocations created as tasks at once (the worker
makes each message from the host a task) and the time from the first dispatch to the last
completion. A third side, optional, sends the burst through ``throughput_lab.Host`` to a
real worker process, as the workbook's notebooks do.

The runtime is a test-only dependency; install it with ``RUNTIME_INSTALL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from throughput_lab import Host, HttpRequestFields, InvocationRecord, load_app
from throughput_lab.invocation import HttpResponseFields
from throughput_lab.worker import Worker

APP_FOLDER = Path(__file__).resolve().parent / "oracle_app"
SCRIPT = APP_FOLDER / "function_app.py"
THREAD_SETTING = "PYTHON_THREADPOOL_THREAD_COUNT"
TOLERANCE = 0.15  # engine and Microsoft's code agree within 15% in every case
RUNTIME_VERSION = "1.3.0"
RUNTIME_PACKAGES = (
    f"azure-functions-runtime=={RUNTIME_VERSION} azurefunctions-extensions-base==1.2.0"
)
# It declares Python >= 3.13, where it installs as any package does. Its dispatch path also
# imports and runs on 3.10-3.12 and needs nothing beyond azure-functions (already in the
# workbook), so there it goes in with --no-deps --ignore-requires-python.
RUNTIME_INSTALL = (
    f"python -m pip install {RUNTIME_PACKAGES}"
    if sys.version_info >= (3, 13)
    else f"python -m pip install --no-deps --ignore-requires-python {RUNTIME_PACKAGES}"
)

# The protobuf enum values that indexing compares bindings with (the worker's gRPC
# BindingInfo: direction in=0, out=1, inout=2; data type undefined=0). Only these are read.
PROTOS_STAND_IN = SimpleNamespace(BindingInfo=SimpleNamespace(out=1, inout=2, undefined=0))


class OracleError(RuntimeError):
    """An invocation failed, so its timing would mean nothing."""


def runtime_missing_reason() -> str | None:
    """Why Microsoft's runtime cannot be used here, or None when it can."""
    try:
        from azure_functions_runtime import native_invocation  # noqa: F401
        from azure_functions_runtime.version import VERSION
    except Exception as exc:  # ImportError, or a failure inside the package on this Python
        return (
            f"azure-functions-runtime cannot be imported ({type(exc).__name__}: {exc}); "
            f"the oracle needs it. Install it with: {RUNTIME_INSTALL}"
        )
    if VERSION != RUNTIME_VERSION:
        return (
            f"azure-functions-runtime {VERSION} is installed; the oracle is written against "
            f"{RUNTIME_VERSION}. Install it with: {RUNTIME_INSTALL}"
        )
    return None


def python_pool_default() -> int:
    """What ``ThreadPoolExecutor(max_workers=None)`` resolves to here, asked of Python."""
    pool = ThreadPoolExecutor()
    try:
        return pool._max_workers
    finally:
        pool.shutdown()


@dataclass
class Response:
    """What a worker sends the host for one HTTP invocation: a failure, or a response."""

    ok: bool
    status: int | None = None
    body: bytes = b""
    headers: list[tuple[str, str]] | None = None  # (lower-cased name, value), in order
    error: str = ""

    def same_as(self, other: Response) -> bool:
        if self.ok != other.ok:
            return False
        if not self.ok:
            return True  # both fail: the host answers 500 either way
        same_headers = (
            self.headers is None
            or other.headers is None
            or (sorted(self.headers) == sorted(other.headers))
        )
        return (self.status, self.body) == (other.status, other.body) and same_headers


# -- the cases -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    key: str
    title: str
    function: str
    thread_setting: str | None  # PYTHON_THREADPOOL_THREAD_COUNT as the app sets it; None: unset
    invocations: int
    wait_ms: int

    def app_settings(self) -> dict[str, str]:
        return {} if self.thread_setting is None else {THREAD_SETTING: self.thread_setting}

    def ideal_s(self) -> float:
        """The burst's length that the worker's code implies, from first principles."""
        wait = self.wait_ms / 1e3
        if self.function == "async_await_sleep":
            return wait  # all of them wait at once on the loop
        if self.function == "async_blocking_sleep":
            return self.invocations * wait  # one at a time: each holds the loop
        if self.function == "async_default_executor":
            slots = python_pool_default()  # asyncio's default executor, whatever the setting
        else:
            slots = pool_size(self.thread_setting)
        return math.ceil(self.invocations / slots) * wait


def pool_size(setting: str | None) -> int:
    """The worker's pool for a setting: a whole number >= 1, else Python's default."""
    try:
        value = int(setting) if setting is not None else 0
    except ValueError:
        value = 0
    return value if value >= 1 else python_pool_default()


def default_cases() -> list[Case]:
    """The issue's cases, each sized to about 0.2-0.6 s, plus two that pin a trap down."""
    d = python_pool_default()
    return [
        Case("sync-t1", "def + time.sleep, threads=1", "sync_sleep", "1", 6, 100),
        Case("sync-t4", "def + time.sleep, threads=4", "sync_sleep", "4", 16, 100),
        Case(
            "sync-unset", f"def + time.sleep, setting unset ({d})", "sync_sleep", None, 4 * d, 100
        ),
        Case(
            "sync-invalid", "def + time.sleep, threads=0 (invalid)", "sync_sleep", "0", 4 * d, 100
        ),
        Case("async-await", "async def + await asyncio.sleep", "async_await_sleep", None, 100, 250),
        Case("async-blocking", "async def + time.sleep", "async_blocking_sleep", None, 6, 100),
        Case(
            "async-executor",
            "async def + run_in_executor(None)",
            "async_default_executor",
            None,
            4 * d,
            100,
        ),
        Case(
            "async-executor-t1",
            "async def + run_in_executor(None), threads=1",
            "async_default_executor",
            "1",
            4 * d,
            100,
        ),
    ]


# -- shared plumbing -------------------------------------------------------------------------


@contextlib.contextmanager
def app_settings_in_environment(settings: Mapping[str, str]) -> Iterator[None]:
    """App settings are environment variables: set these (and unset an absent thread
    setting) for as long as the block runs, then put the environment back."""
    keys = {THREAD_SETTING, *settings}
    saved = {key: os.environ.get(key) for key in keys}
    try:
        for key in keys:
            if key in settings:
                os.environ[key] = settings[key]
            else:
                os.environ.pop(key, None)
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def app_folder_importable() -> Iterator[None]:
    """Both loaders import ``function_app`` with the app folder on sys.path, as the worker
    does; keep whatever ``function_app`` this process had before (e.g. the sample app)."""
    saved_module = sys.modules.pop("function_app", None)
    saved_path = list(sys.path)
    sys.path.insert(0, str(APP_FOLDER))
    try:
        yield
    finally:
        sys.path[:] = saved_path
        sys.modules.pop("function_app", None)
        if saved_module is not None:
            sys.modules["function_app"] = saved_module


def worker_event_loop() -> asyncio.AbstractEventLoop:
    """A new loop of the kind Microsoft's worker runs on this Python.

    From 3.13 the worker is ``proxy_worker``, whose ``start_worker.py`` sets uvloop's event
    loop policy when uvloop imports (and keeps asyncio's otherwise); older workers run
    asyncio's loop. Decided here from the worker's source, not from the engine's choice.
    """
    if sys.version_info >= (3, 13):
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run_on_fresh_loop(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run ``main()`` on a new worker-kind event loop in a new thread; return its result."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        loop = worker_event_loop()
        try:
            outcome["value"] = loop.run_until_complete(main())
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    thread = threading.Thread(target=target, name="oracle-loop")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


async def timed_burst(invocations: list[Coroutine[Any, Any, Any]]) -> tuple[float, list[Any]]:
    """Make each invocation a task at once, as the worker does for each message from the
    host, and time first dispatch to last completion."""
    loop = asyncio.get_running_loop()
    began = time.perf_counter()
    tasks = [loop.create_task(invocation) for invocation in invocations]
    results = await asyncio.gather(*tasks)
    return time.perf_counter() - began, results


# -- the sides -------------------------------------------------------------------------------


class MicrosoftSide:
    """Microsoft's dispatch code (azure-functions-runtime), without host or gRPC."""

    name = "Microsoft's azure-functions-runtime"

    def __init__(self) -> None:
        from azure_functions_runtime import handle_event, loader
        from azure_functions_runtime.bindings import datumdef, meta
        from azure_functions_runtime.native_invocation import invocation_request_native
        from azure_functions_runtime.utils import threadpool

        self._threadpool = threadpool
        self._invoke = invocation_request_native
        self._datum = datumdef.Datum
        meta.load_binding_registry()
        with app_folder_importable():
            indexed = loader.index_function_app(str(SCRIPT))
        self.functions: dict[str, tuple[str, str]] = {}  # name -> (function id, trigger param)
        for function in indexed:
            info = handle_event._functions.add_indexed_function(function, PROTOS_STAND_IN)
            self.functions[info.name] = (info.function_id, info.trigger_metadata["param_name"])

    def _http_input(self, route: str, params: Mapping[str, str]) -> Any:
        """The HTTP trigger's input as the runtime receives it once off the wire."""
        datum = self._datum
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return datum(
            {
                "method": datum("GET", "string"),
                "url": datum(f"http://127.0.0.1/api/{route}?{query}", "string"),
                "headers": {},
                "body": datum(b"", "bytes"),
                "params": {},
                "query": {k: datum(v, "string") for k, v in params.items()},
            },
            "http",
        )

    def respond_once(self, function: str) -> Response:
        """One invocation, and what the worker would send the host back."""
        function_id, param = self.functions[function]
        self._threadpool.start_threadpool_executor()

        async def main() -> Any:
            return await self._invoke(
                "once", function_id, [(param, self._http_input(function, {}))], {}
            )

        try:
            with contextlib.redirect_stdout(sys.__stdout__ or io.StringIO()):
                ok, value, _, error, _ = run_on_fresh_loop(main)
        finally:
            self._threadpool.stop_threadpool_executor()
        if not ok:
            return Response(ok=False, error=str(error))
        if value.type == "string":  # the host answers 200 with the text
            return Response(ok=True, status=200, body=value.value.encode())
        fields = value.value
        return Response(
            ok=True,
            status=int(fields["status_code"].value),
            body=fields["body"].value,
            headers=[(k.lower(), v.value) for k, v in fields["headers"].items()],
        )

    def burst(self, case: Case) -> float:
        function_id, param = self.functions[case.function]
        request = self._http_input(case.function, {"ms": str(case.wait_ms)})
        with app_settings_in_environment(case.app_settings()):
            self._threadpool.start_threadpool_executor()  # reads the setting, as at worker start

        async def main() -> float:
            elapsed, results = await timed_burst(
                [
                    self._invoke(f"oracle-{i}", function_id, [(param, request)], {})
                    for i in range(case.invocations)
                ]
            )
            failed = [r for r in results if not r[0]]
            if failed:
                raise OracleError(f"{case.function} failed in Microsoft's runtime: {failed[0][3]}")
            return elapsed

        # Each invocation ends with sys.stdout.flush(). In a worker that is the process's
        # stdout, a pipe the host reads: cheap. In a notebook kernel it is a stream that
        # waits for the kernel's I/O thread, which no worker pays, so use the real stdout.
        try:
            with contextlib.redirect_stdout(sys.__stdout__ or io.StringIO()):
                return run_on_fresh_loop(main)
        finally:
            self._threadpool.stop_threadpool_executor()


class EngineSide:
    """The engine's worker model (``throughput_lab.worker.Worker``), on its own loop.

    ``worker_class`` lets a test put a deliberately wrong model in its place, to show the
    oracle would catch it."""

    name = "engine (throughput_lab Worker)"

    def __init__(self, worker_class: type[Worker] = Worker) -> None:
        self.worker_class = worker_class
        with app_folder_importable():
            self.functions = load_app(APP_FOLDER)

    def burst(self, case: Case) -> float:
        request = HttpRequestFields(
            method="GET", route=case.function, params={"ms": str(case.wait_ms)}
        )

        async def main() -> float:
            worker = self.worker_class(self.functions, None, case.app_settings())
            worker.lag.start()  # the worker process always runs its loop-lag probe
            try:
                elapsed, responses = await timed_burst(
                    [
                        worker.invoke(InvocationRecord(i, case.function), request)
                        for i in range(case.invocations)
                    ]
                )
            finally:
                worker.close()
            failed = [r for r in responses if r.status != 200]
            if failed:
                raise OracleError(f"{case.function} failed in the engine: {failed[0].body!r}")
            return elapsed

        return run_on_fresh_loop(main)

    def respond_once(self, function: str) -> Response:
        """One invocation, and the response the engine makes of the return value."""

        async def main() -> HttpResponseFields:
            worker = self.worker_class(self.functions, None, {})
            try:
                record = InvocationRecord(0, function)
                return await worker.invoke(record, HttpRequestFields(route=function))
            finally:
                worker.close()

        response = run_on_fresh_loop(main)
        if response.status >= 500:
            return Response(ok=False, error=response.body.decode(errors="replace"))
        headers = [(k.lower(), v) for k, v in response.headers.items()]
        return Response(ok=True, status=response.status, body=response.body, headers=headers)


class HostSide:
    """The engine end to end: ``throughput_lab.Host`` and one real worker process."""

    name = "engine through Host (1 worker process)"

    def burst(self, case: Case) -> float:
        request = HttpRequestFields(
            method="GET", route=case.function, params={"ms": str(case.wait_ms)}
        )
        settings = app_settings_in_environment(case.app_settings())
        with settings, Host(APP_FOLDER, processes=1) as host:
            warm, _ = host.invoke(
                case.function, HttpRequestFields(route=case.function, params={"ms": "1"})
            ).result(timeout=30)  # warm the worker: first call pays imports
            began = time.perf_counter()
            futures = [host.invoke(case.function, request) for _ in range(case.invocations)]
            wait_futures(futures, timeout=60)
            elapsed = time.perf_counter() - began
            results = [f.result(timeout=0) for f in futures]
        failed = [record for record in [warm, *(r for r, _ in results)] if not record.ok]
        if failed:
            raise OracleError(f"{case.function} failed through the Host: {failed[0].error}")
        return elapsed


def microsoft_pool_size(setting: str | None) -> int:
    """The thread pool Microsoft's runtime builds for a PYTHON_THREADPOOL_THREAD_COUNT."""
    from azure_functions_runtime.utils import threadpool

    settings = {} if setting is None else {THREAD_SETTING: setting}
    with app_settings_in_environment(settings):
        threadpool.start_threadpool_executor()
    try:
        return threadpool.get_threadpool_executor()._max_workers
    finally:
        threadpool.stop_threadpool_executor()


def engine_pool_size(setting: str | None) -> int:
    """The thread pool the engine's Worker builds for the same setting."""
    worker = Worker({}, None, {} if setting is None else {THREAD_SETTING: setting})
    try:
        return worker.threads
    finally:
        worker.close()


# -- the comparison --------------------------------------------------------------------------


@dataclass
class Row:
    case: Case
    engine_s: float
    microsoft_s: float | None = None
    host_s: float | None = None
    attempts: int = 1

    @property
    def ideal_s(self) -> float:
        return self.case.ideal_s()

    @property
    def ratio(self) -> float | None:
        """Engine / Microsoft: 1.0 is perfect agreement."""
        return None if self.microsoft_s is None else self.engine_s / self.microsoft_s

    @property
    def host_ratio(self) -> float | None:
        if self.microsoft_s is None or self.host_s is None:
            return None
        return self.host_s / self.microsoft_s

    @property
    def ideal_ratio(self) -> float:
        """Engine / what the worker's code implies."""
        return self.engine_s / self.ideal_s

    @property
    def worst_ratio(self) -> float:
        """The ratio farthest from 1: against Microsoft's side when measured, else the ideal."""
        ratios = [self.ratio, self.host_ratio] if self.microsoft_s else [self.ideal_ratio]
        return max((r for r in ratios if r is not None), key=lambda r: abs(r - 1))

    def agrees(self, tolerance: float = TOLERANCE) -> bool:
        return abs(self.worst_ratio - 1) <= tolerance

    def as_dict(self) -> dict[str, Any]:
        return {
            "case": self.case.title,
            "burst": f"{self.case.invocations} x {self.case.wait_ms} ms",
            "ideal_s": round(self.ideal_s, 3),
            "engine_s": round(self.engine_s, 3),
            "microsoft_s": None if self.microsoft_s is None else round(self.microsoft_s, 3),
            "engine/microsoft": None if self.ratio is None else round(self.ratio, 3),
            "host_s": None if self.host_s is None else round(self.host_s, 3),
            "host/microsoft": None if self.host_ratio is None else round(self.host_ratio, 3),
        }


def compare(
    cases: list[Case] | None = None,
    *,
    microsoft: bool = True,
    host: bool = False,
    tolerance: float = TOLERANCE,
    attempts: int = 3,
    progress: Callable[[Row], None] | None = None,
    engine: EngineSide | None = None,
) -> list[Row]:
    """Time every case on each side. A case whose sides disagree is measured again, up to
    ``attempts`` times, keeping each side's fastest burst: on a busy machine noise only
    ever adds time, so the fastest is the closest to what the code itself does."""
    sides: dict[str, Any] = {"engine": engine or EngineSide()}
    if microsoft:
        sides["microsoft"] = MicrosoftSide()
    if host:
        sides["host"] = HostSide()
    rows = []
    for index, case in enumerate(cases or default_cases()):
        best: dict[str, float] = {}
        for attempt in range(1, attempts + 1):
            order = list(sides)
            if (index + attempt) % 2:  # alternate who goes first, so drift favours no side
                order.reverse()
            for key in order:
                best[key] = min(best.get(key, math.inf), sides[key].burst(case))
            row = Row(case, best["engine"], best.get("microsoft"), best.get("host"), attempt)
            if row.agrees(tolerance):
                break
        rows.append(row)
        if progress is not None:
            progress(row)
    return rows


def format_table(rows: list[Row]) -> str:
    """The side-by-side table, as Markdown (it reads as plain text too)."""
    dicts = [row.as_dict() for row in rows]
    columns = [c for c in dicts[0] if any(d[c] is not None for d in dicts)]
    text = [[str(d[c]) if d[c] is not None else "" for c in columns] for d in dicts]
    widths = [max(len(c), *(len(t[i]) for t in text)) for i, c in enumerate(columns)]
    line = "| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = [
        "| " + " | ".join(t.ljust(w) for t, w in zip(cells, widths, strict=True)) + " |"
        for cells in text
    ]
    return "\n".join([line, rule, *body])

"""A lab session for HTTP functions: the upstream, a host kept open across runs, and runs.

A run is the shared measured run (``run.MeasuredRun``) with HTTP's part: a closed loop of
requests, C in flight. ``start()`` returns a handle at once, ``run()`` waits for it; both
work from a notebook, whose kernel loop is already running. What is timed is the measured
window only: worker start-up and a short warm-up (which, the first time a request runs,
also times it alone for the ideal) come before it and are reported apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import threading
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import azure.functions as func

from .app_loader import AppLoadError, FunctionInfo, index_app
from .app_settings import UPSTREAM_URL_SETTING
from .channel import WorkerStats
from .front_end import FrontEnd
from .host import Host
from .invocation import HttpRequestFields, InvocationRecord
from .load import StreamingSender, closed_loop, host_sender
from .metrics import Summary
from .routing import DEFAULT_ROUTE_PREFIX, plan_request, route_prefix
from .run import (
    HostCache,
    MeasuredRun,
    RunHandle,
    WorkerSettings,
    code_stamp,
    start_on_thread,
    wait_or_cancel,
)
from .upstream import Upstream

DEFAULT_TIMEOUT_S = 30.0
APP_FOLDER = "sample_functions"


def find_app(start: str | Path | None = None) -> Path:
    """The sample app: ``sample_functions/`` here or in a parent folder (a checkout, whose
    notebooks run from ``notebooks/``), else the copy this package was installed with.

    A wheel carries it inside the package (pyproject.toml maps the repository's folder
    there); a checkout used from elsewhere (an editable install) has it two levels above.
    """
    here = Path(start or Path.cwd()).resolve()
    package = Path(__file__).resolve().parent
    for folder in (*(f / APP_FOLDER for f in (here, *here.parents)), package / APP_FOLDER):
        if (folder / "function_app.py").is_file():
            return folder
    beside_source = package.parent.parent / APP_FOLDER  # src/throughput_lab -> the checkout
    return beside_source if (beside_source / "function_app.py").is_file() else here / APP_FOLDER


def function_timeout_s(app: Path) -> float | None:
    """``functionTimeout`` ("hh:mm:ss") from the app's host.json, if it has one."""
    try:
        value = json.loads((app / "host.json").read_text()).get("functionTimeout")
    except (OSError, ValueError):
        return None
    match = re.fullmatch(r"(?:(\d+)\.)?(\d+):(\d+):(\d+(?:\.\d+)?)", str(value or ""))
    if not match:
        return None
    days, hours, minutes, seconds = match.groups()
    return ((int(days or 0) * 24 + int(hours)) * 60 + int(minutes)) * 60 + float(seconds)


@dataclass
class RunResult:
    summary: Summary
    records: list[InvocationRecord]
    worker_stats: list[WorkerStats] = field(default_factory=list)

    @property
    def df(self) -> Any:
        """The records as a pandas DataFrame, one row per invocation."""
        import pandas as pd

        return pd.DataFrame([r.as_row() for r in self.records])

    def line(self) -> str:
        """The run's line (a queue drain's ``DrainResult.line`` says messages instead)."""
        return self.summary.line()

    def __repr__(self) -> str:
        return self.line()


Handler = Callable[..., Any] | func.FunctionApp

ALONE_SAME, ALONE_NONE = "same", "none"
# RFC 9110 section 9.2.1: only these methods are "safe" (read-only by definition).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def alone_request(alone: str) -> tuple[str, str] | None:
    """``--alone``: None for the same request or none at all, else (method, path)."""
    if alone in (ALONE_SAME, ALONE_NONE):
        return None
    method, _, path = alone.strip().partition(" ")
    if not method.isalpha() or not path.strip().startswith("/"):
        raise ValueError(
            f"alone must be 'same', 'none' or a request such as 'GET /api/users/2', got {alone!r}"
        )
    return method.upper(), path.strip()


def alone_note(method: str | None, alone: str, processes: int) -> str | None:
    """Said before a run whose request changes state and is also sent outside the window."""
    method = (method or "GET").upper()
    if method in SAFE_METHODS or alone != ALONE_SAME:
        return None
    return (
        f"note: {method} is not a safe method, and the run sends it {processes} time(s) to "
        "warm up, then 3-15 times alone (for the ideal) before the measured window: what "
        "it changes (a deleted row, a created one) is changed before the run. "
        "--alone 'GET /api/...' times another request alone; --alone none times none "
        "(the ideal is then unknown)"
    )


@dataclass(frozen=True)
class RunSpec:
    """One HTTP run's settings, validated once, at construction."""

    workers: WorkerSettings
    function: str | None = None
    handler: Handler | None = None  # defined in a notebook cell: runs in process
    concurrency: int = 8
    requests: int | None = None
    duration_s: float | None = None
    upstream_delay_ms: float | None = None
    method: str | None = None
    path: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    alone: str = ALONE_SAME  # what is sent before the run: the same request, "none", or
    # another request "METHOD /path" (see alone_request)

    def __post_init__(self) -> None:
        alone_request(self.alone)  # refuses a malformed one now
        if self.concurrency < 1:
            raise ValueError(
                f"concurrency (requests in flight) must be >= 1, got {self.concurrency}"
            )
        if self.requests is None and self.duration_s is None:
            object.__setattr__(self, "requests", max(self.concurrency * 10, 20))
        if self.requests is not None:
            if self.requests < 1:
                raise ValueError(f"requests must be >= 1, got {self.requests}")
            # no more in flight than there are
            object.__setattr__(self, "concurrency", min(self.concurrency, self.requests))
        if self.handler is not None and self.workers.processes != 1:
            raise ValueError(
                "a handler from this notebook runs in one in-process worker: processes=1; "
                "put it in a function app folder to run it in more worker processes"
            )
        if self.function is None and self.path is None:
            if self.handler is None or isinstance(self.handler, func.FunctionRegister):
                raise ValueError("name the function to run")
            object.__setattr__(self, "function", self.handler.__name__)


@dataclass
class HttpTrigger:
    """HTTP's part of a measured run: requests sent by a closed loop, C in flight."""

    function: str
    is_async: bool
    concurrency: int
    alone_key: Hashable
    send: Callable[[int], Awaitable[InvocationRecord]]
    requests: int | None
    duration_s: float | None
    handle: RunHandle
    queue_batch: int | None = None
    send_alone: Callable[[int], Awaitable[InvocationRecord]] | None = None  # another request
    times_alone: bool = True  # False: no warm-up, no time alone (--alone none)
    bound_name: str = "listener"  # no listener: queue_batch stays None

    async def invoke(self, index: int) -> InvocationRecord:
        # On Python < 3.12 wait_for can swallow a task.cancel() that lands as a result
        # arrives; the flag still stops the run at its next invocation.
        self.handle.check()
        # Negative indices are the warm-up and the times alone (run.MeasuredRun.alone).
        if index < 0 and self.send_alone is not None:
            return await self.send_alone(index)
        return await self.send(index)

    async def before_window(self) -> None:
        pass

    async def drive(
        self, record: Callable[[InvocationRecord], None]
    ) -> tuple[list[InvocationRecord], float]:
        try:
            return await closed_loop(
                self.invoke, self.concurrency, self.requests, self.duration_s, record
            )
        finally:  # a streaming sender's HTTP client closes on this loop
            for send in (self.send, self.send_alone):
                close = getattr(send, "aclose", None)
                if close is not None:
                    await close()

    def other_cpu_s(self) -> float:
        return 0.0

    def explain(self, summary: Summary) -> str:
        return ""


class Lab:
    """Run functions of an app (or handlers from a notebook cell) under load, and measure."""

    def __init__(
        self,
        app: str | Path | None = None,
        *,
        upstream_delay_ms: float = 100.0,
        upstream_jitter_ms: float = 0.0,
        timeout_s: float | None = None,
        max_worker_mb: float | None = None,
    ) -> None:
        self.app = Path(app) if app is not None else find_app()
        self.max_worker_mb = max_worker_mb  # see Host
        self.upstream = Upstream(upstream_delay_ms, upstream_jitter_ms)
        self.timeout_s = timeout_s
        self._hosts = HostCache()
        self._lock = threading.Lock()
        self._running: RunHandle | None = None
        self._front: FrontEnd | None = None  # the host's HTTP front end, for req.url
        # Invocations timed alone, by what decides that time: the same request to the same
        # handler against the same upstream takes the same time alone whatever the thread
        # and process settings, so a sweep times it once (each run still adds its own).
        self._alone: dict[Hashable, list[InvocationRecord]] = {}

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers and the upstream."""
        if self._running is not None and not self._running.done():
            self._running.cancel()
            with contextlib.suppress(BaseException):  # its own error is not news here
                self._running.result(timeout=10)
        self._hosts.close()
        if self._front is not None:
            self._front.stop()
            self._front = None
        self.upstream.stop()

    # -- hosts ---------------------------------------------------------------------------

    def host(
        self,
        processes: int = 1,
        threads: int | None = None,
        handler: Handler | None = None,
        cpu_affinity: set[int] | None = None,
    ) -> Host:
        """A running host with these settings: the open one if it matches, else a new one."""
        workers = WorkerSettings(processes, threads, frozenset(cpu_affinity or ()))
        return self._host_for(workers, handler)

    def _host_for(self, workers: WorkerSettings, handler: Handler | None) -> Host:
        self.upstream.start()
        key = (workers, id(handler) if handler else self.app.resolve())
        return self._hosts.get(key, lambda: self._new_host(workers, handler))

    def _new_host(self, workers: WorkerSettings, handler: Handler | None) -> Host:
        settings = {UPSTREAM_URL_SETTING: self.upstream.url}
        if handler is not None:
            # An in-process worker reads app settings from this process's environment.
            os.environ[UPSTREAM_URL_SETTING] = self.upstream.url
            functions = (
                index_app(handler)
                if isinstance(handler, func.FunctionRegister)
                else {handler.__name__: FunctionInfo.from_callable(handler)}
            )
            timeout = self.timeout_s or DEFAULT_TIMEOUT_S
            return Host(
                functions=functions,
                threads=workers.threads,
                app_settings=settings,
                timeout_s=timeout,
            )
        if not self.app.is_dir():
            raise AppLoadError(f"function app folder not found: {self.app}")
        return Host(
            self.app,
            processes=workers.processes,
            threads=workers.threads,
            app_settings=settings,
            timeout_s=self.timeout_s or function_timeout_s(self.app) or DEFAULT_TIMEOUT_S,
            cpu_affinity=set(workers.cpu_affinity) or None,
            max_worker_mb=self.max_worker_mb,
        )

    # -- runs ----------------------------------------------------------------------------

    def start(
        self,
        function: str | None = None,
        *,
        handler: Handler | None = None,
        processes: int = 1,
        threads: int | None = None,
        cpu_affinity: set[int] | None = None,
        on_record: Callable[[InvocationRecord], None] | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | str = b"",
        **load: Any,
    ) -> RunHandle:
        """Begin a run in the background and return its handle at once.

        The request: ``function`` with its own route, or ``path`` (e.g. ``/api/users/7``),
        routed like the host; ``method``, ``params``, ``headers`` and ``body`` as given.
        The load: ``concurrency``, ``requests`` or ``duration_s``; ``upstream_delay_ms``.
        """
        spec = RunSpec(
            WorkerSettings(processes, threads, frozenset(cpu_affinity or ())),
            function,
            handler,
            params=dict(params or {}),
            headers=dict(headers or {}),
            body=body.encode() if isinstance(body, str) else body,
            **load,
        )
        with self._lock:
            if self._running is not None and not self._running.done():
                raise RuntimeError("a run is already going; wait for it or cancel it first")
            handle = RunHandle(spec.requests)
            handle.on_record = on_record
            self._running = handle
        start_on_thread(handle, lambda: self._run(handle, spec), partial(self._failed, handle))
        return handle

    def run(self, function: str | None = None, **options: Any) -> RunResult:
        """Run and wait. Ctrl-C (or a kernel interrupt) cancels it and stops the workers."""
        handle = self.start(function, **options)
        return wait_or_cancel(handle, self._hosts.close)

    def _failed(self, handle: RunHandle, exc: BaseException) -> None:
        # Say so first (a Stop button waits for this), then stop the workers: a failed or
        # stopped run may leave invocations in flight, so the next run starts clean.
        with self._hosts.lock:
            handle.future.set_exception(exc)
            self._hosts.close()

    async def _run(self, handle: RunHandle, spec: RunSpec) -> RunResult:
        handle.attach()
        host = await asyncio.to_thread(self._host_for, spec.workers, spec.handler)
        trigger = self._trigger(host, handle, spec)
        measured = await MeasuredRun(
            host, trigger, self.upstream, handle, self._alone, spec.workers.cpu_affinity
        ).measure()
        return RunResult(measured.summary, measured.records, measured.worker_stats)

    @staticmethod
    def _sender(
        host: Host, function: str, request: HttpRequestFields, timeout: float
    ) -> Callable[[int], Awaitable[InvocationRecord]]:
        """Through the host; for an app that streams HTTP, its response over HTTP too."""
        if host.streams_http and host.functions.get(function, {}).get("is_http"):
            return StreamingSender(host, function, request, timeout)
        return host_sender(host, function, request, timeout)

    def _front_end(self, host: Host) -> FrontEnd:
        """The HTTP front end of ``host`` (a new one when the host is new)."""
        with self._lock:
            if self._front is None or self._front.host is not host:
                if self._front is not None:
                    self._front.stop()
                self._front = FrontEnd(host).start()
            return self._front

    def _trigger(self, host: Host, handle: RunHandle, spec: RunSpec) -> HttpTrigger:
        prefix = DEFAULT_ROUTE_PREFIX if spec.handler is not None else route_prefix(self.app)
        base = self._front_end(host).base  # req.url answers: a function may call itself
        function, request = plan_request(
            host.functions,
            prefix,
            spec.function,
            spec.method,
            spec.path,
            spec.params,
            spec.headers,
            spec.body,
            base,
        )
        info = host.function(function)
        if spec.upstream_delay_ms is not None:
            self.upstream.delay_ms = spec.upstream_delay_ms
        timeout = (host.timeout_s or DEFAULT_TIMEOUT_S) + 5.0
        other = alone_request(spec.alone)
        send_alone = None
        if other is not None:
            alone_function, alone_fields = plan_request(
                host.functions,
                prefix,
                None,
                other[0],
                other[1],
                spec.params,
                spec.headers,
                base=base,
            )
            send_alone = self._sender(host, alone_function, alone_fields, timeout)
            request_alone = repr((alone_function, replace(alone_fields, url="")))
        else:
            # Not its URL: the front end's port differs from host to host, the time does not.
            request_alone = repr(replace(request, url=""))
        alone_key = (
            function,
            spec.handler,
            request_alone,
            self.upstream.delay_ms,
            self.upstream.jitter_ms,
            spec.workers.cpu_affinity,
            None if spec.handler is not None else code_stamp(self.app),  # an edited app: anew
        )
        return HttpTrigger(
            function,
            info.is_async,
            spec.concurrency,
            alone_key,
            self._sender(host, function, request, timeout),
            spec.requests,
            spec.duration_s,
            handle,
            send_alone=send_alone,
            times_alone=spec.alone != ALONE_NONE,
        )

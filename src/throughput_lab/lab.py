"""A lab session: the upstream, a host kept open across runs, and runs that return results.

Runs happen on a thread of their own with their own event loop, so they work from a
notebook (whose kernel loop is already running) without blocking it: ``start()`` returns
a handle at once, ``run()`` waits for it. What is timed is the measured window only:
worker start-up and a short warm-up (which also measures the service time the ideal
needs) come before it and are reported apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import statistics
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func

from .app_loader import AppLoadError, FunctionInfo, index_app
from .app_settings import UPSTREAM_URL_SETTING, available_cores, check_processes, check_threads_flag
from .host import Host
from .invocation import HttpRequestFields, InvocationRecord
from .load import closed_loop, host_sender
from .metrics import Ideal, Summary, ideal_throughput, summarize
from .upstream import Upstream

DEFAULT_TIMEOUT_S = 30.0
APP_FOLDER = "sample_functions"


def find_app(start: str | Path | None = None) -> Path:
    """``sample_functions/`` here or in a parent folder (notebooks run from ``notebooks/``)."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / APP_FOLDER / "function_app.py").is_file():
            return folder / APP_FOLDER
    return here / APP_FOLDER


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
    worker_stats: list[dict[str, Any]] = field(default_factory=list)

    @property
    def df(self) -> Any:
        """The records as a pandas DataFrame, one row per invocation."""
        import pandas as pd

        return pd.DataFrame([r.as_row() for r in self.records])

    def __repr__(self) -> str:
        return self.summary.line()


class RunHandle:
    """A run going on in the background: poll it, wait for it, await it or cancel it."""

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.records: list[InvocationRecord] = []  # grows while the run goes
        self.ideal: Ideal | None = None  # known once the warm-up has timed the function
        self.future: Future[RunResult] = Future()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._cancelled = False

    @property
    def completed(self) -> int:
        return len(self.records)

    def done(self) -> bool:
        return self.future.done()

    def result(self, timeout: float | None = None) -> RunResult:
        return self.future.result(timeout)

    def __await__(self) -> Any:
        return asyncio.wrap_future(self.future).__await__()

    def cancel(self) -> None:
        """Stop the run; invocations in flight are abandoned, the result is an error."""
        self._cancelled = True
        if self._loop is not None and self._task is not None:
            with contextlib.suppress(RuntimeError):  # the run has just ended: loop closed
                self._loop.call_soon_threadsafe(self._task.cancel)


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
        self._host: Host | None = None
        self._host_key: tuple[Any, ...] | None = None
        self._lock = threading.Lock()
        self._running: RunHandle | None = None

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
        self._close_host()
        self.upstream.stop()

    def _close_host(self) -> None:
        if self._host is not None:
            self._host.close()
        self._host, self._host_key = None, None

    # -- hosts ---------------------------------------------------------------------------

    def host(
        self,
        processes: int = 1,
        threads: int | None = None,
        handler: Callable[..., Any] | func.FunctionApp | None = None,
        cpu_affinity: set[int] | None = None,
    ) -> Host:
        """A running host with these settings: the open one if it matches, else a new one."""
        self.upstream.start()
        settings = {UPSTREAM_URL_SETTING: self.upstream.url}
        key = (
            processes,
            threads,
            id(handler) if handler else self.app.resolve(),
            frozenset(cpu_affinity or ()),
        )
        if self._host is not None and self._host_key == key and not self._host.closed:
            return self._host
        self._close_host()
        if handler is not None:
            # An in-process worker reads app settings from this process's environment.
            os.environ[UPSTREAM_URL_SETTING] = self.upstream.url
            functions = (
                index_app(handler)
                if isinstance(handler, func.FunctionApp)
                else {handler.__name__: FunctionInfo.from_callable(handler)}
            )
            timeout = self.timeout_s or DEFAULT_TIMEOUT_S
            host = Host(
                functions=functions, threads=threads, app_settings=settings, timeout_s=timeout
            )
        else:
            if not self.app.is_dir():
                raise AppLoadError(f"function app folder not found: {self.app}")
            timeout = self.timeout_s or function_timeout_s(self.app) or DEFAULT_TIMEOUT_S
            host = Host(
                self.app,
                processes=processes,
                threads=threads,
                app_settings=settings,
                timeout_s=timeout,
                cpu_affinity=cpu_affinity,
                max_worker_mb=self.max_worker_mb,
            )
        self._host = host.start()
        self._host_key = key
        return host

    # -- runs ----------------------------------------------------------------------------

    def start(
        self,
        function: str | None = None,
        *,
        handler: Callable[..., Any] | func.FunctionApp | None = None,
        processes: int = 1,
        threads: int | None = None,
        concurrency: int = 8,
        requests: int | None = None,
        duration_s: float | None = None,
        upstream_delay_ms: float | None = None,
        params: dict[str, str] | None = None,
        body: bytes | str = b"",
        cpu_affinity: set[int] | None = None,
        on_record: Callable[[InvocationRecord], None] | None = None,
    ) -> RunHandle:
        """Begin a run in the background and return its handle at once."""
        check_processes(processes)
        check_threads_flag(threads)
        if concurrency < 1:
            raise ValueError(f"concurrency (requests in flight) must be >= 1, got {concurrency}")
        if requests is None and duration_s is None:
            requests = max(concurrency * 10, 20)
        if requests is not None:
            concurrency = min(concurrency, requests)  # no more in flight than there are
        if requests is not None and requests < 1:
            raise ValueError(f"requests must be >= 1, got {requests}")
        if handler is not None and processes != 1:
            raise ValueError(
                "a handler from this notebook runs in one in-process worker: processes=1; "
                "put it in a function app folder to run it in more worker processes"
            )
        if function is None:
            if handler is None or isinstance(handler, func.FunctionApp):
                raise ValueError("name the function to run")
            function = handler.__name__
        with self._lock:
            if self._running is not None and not self._running.done():
                raise RuntimeError("a run is already going; wait for it or cancel it first")
            handle = RunHandle(requests)
            self._running = handle
        run = dict(
            function=function,
            handler=handler,
            processes=processes,
            threads=threads,
            concurrency=concurrency,
            requests=requests,
            duration_s=duration_s,
            upstream_delay_ms=upstream_delay_ms,
            params=params or {},
            body=body.encode() if isinstance(body, str) else body,
            cpu_affinity=cpu_affinity,
            on_record=on_record,
        )
        threading.Thread(
            target=self._run_thread, args=(handle, run), name="lab-run", daemon=True
        ).start()
        return handle

    def run(self, function: str | None = None, **options: Any) -> RunResult:
        """Run and wait. Ctrl-C (or a kernel interrupt) cancels it and stops the workers."""
        handle = self.start(function, **options)
        try:
            return handle.result()
        except KeyboardInterrupt:
            handle.cancel()
            with contextlib.suppress(BaseException):  # cancelled: the expected outcome
                handle.result(timeout=10)
            self._close_host()
            raise

    def _run_thread(self, handle: RunHandle, run: dict[str, Any]) -> None:
        try:
            result = asyncio.run(self._run(handle, **run))
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                exc = RuntimeError("the run was stopped")
            # A failed or stopped run may leave invocations in flight: start clean next time.
            self._close_host()
            handle.future.set_exception(exc)
        else:
            handle.future.set_result(result)

    async def _run(
        self,
        handle: RunHandle,
        *,
        function: str,
        handler: Any,
        processes: int,
        threads: int | None,
        concurrency: int,
        requests: int | None,
        duration_s: float | None,
        upstream_delay_ms: float | None,
        params: dict[str, str],
        body: bytes,
        cpu_affinity: set[int] | None,
        on_record: Callable[[InvocationRecord], None] | None,
    ) -> RunResult:
        handle._loop, handle._task = asyncio.get_running_loop(), asyncio.current_task()
        if handle._cancelled:
            raise asyncio.CancelledError
        host = await asyncio.to_thread(self.host, processes, threads, handler, cpu_affinity)
        info = host.function(function)
        if upstream_delay_ms is not None:
            self.upstream.delay_ms = upstream_delay_ms
        method = "GET" if "GET" in info.methods or not info.methods else info.methods[0]
        request = HttpRequestFields(
            method=method, route=info.route or function, params=params, body=body
        )
        timeout = (host.timeout_s or DEFAULT_TIMEOUT_S) + 5.0
        send_now = host_sender(host, function, request, timeout)

        async def send(index: int) -> InvocationRecord:
            # On Python < 3.12 wait_for can swallow a task.cancel() that lands as a result
            # arrives; the flag still stops the run at its next invocation.
            if handle._cancelled:
                raise asyncio.CancelledError
            return await send_now(index)

        # Warm-up: one invocation per worker to warm it, then a few alone to time them.
        for i in range(processes):
            await send(-1 - i)
        alone = [await send(-100 - i) for i in range(max(processes, 3))]
        worked = [r for r in alone if r.ok]
        service_s = statistics.median(r.latency_ms for r in worked) / 1e3 if worked else 0.0
        cpu_s = statistics.median(r.cpu_ms for r in worked) / 1e3 if worked else 0.0

        slots = None if info.is_async else processes * host.threads
        cores = min(available_cores(), len(cpu_affinity)) if cpu_affinity else available_cores()
        handle.ideal = (
            ideal_throughput(concurrency, service_s, slots, cores, cpu_s)
            if worked
            else Ideal(0.0, "unknown: the function failed when run alone")
        )

        await asyncio.to_thread(host.stats)  # resets each worker's loop-lag maximum
        self.upstream.reset_stats()

        def record(rec: InvocationRecord) -> None:
            handle.records.append(rec)
            if on_record is not None:
                on_record(rec)

        records, elapsed = await closed_loop(send, concurrency, requests, duration_s, record)
        worker_stats = await asyncio.to_thread(host.stats)
        summary = summarize(
            records,
            function=function,
            processes=processes,
            threads=host.threads,
            concurrency=concurrency,
            elapsed_s=elapsed,
            startup_s=host.startup_s,
            ideal=handle.ideal,
            service_s=service_s,
            worker_stats=worker_stats,
            upstream_peak=self.upstream.stats.peak_in_flight,
            is_async=info.is_async,
        )
        return RunResult(summary, records, worker_stats)

"""A lab session: the upstream, a host kept open across runs, and runs that return results.

Runs happen on a thread of their own with their own event loop, so they work from a
notebook (whose kernel loop is already running) without blocking it: ``start()`` returns
a handle at once, ``run()`` waits for it. What is timed is the measured window only:
worker start-up and a short warm-up (which, the first time a request runs, also times it
alone for the ideal) come before it and are reported apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func

from .app_loader import AppLoadError, FunctionInfo, index_app
from .app_settings import UPSTREAM_URL_SETTING, check_processes, check_threads_flag
from .cpu_share import CpuMeter, own_cpu_s
from .host import SIGNAL_SLICE_S, Host
from .invocation import InvocationRecord, clock
from .load import closed_loop, host_sender
from .metrics import Demand, Ideal, Summary, summarize
from .routing import DEFAULT_ROUTE_PREFIX, plan_request, route_prefix
from .upstream import Upstream

DEFAULT_TIMEOUT_S = 30.0
# Invocations timed alone before a run: at least ALONE_MIN (and one per worker), up to
# ALONE_MAX while they take less than ALONE_BUDGET_S in all; once per request in a Lab.
ALONE_MIN, ALONE_MAX, ALONE_BUDGET_S = 3, 15, 0.5
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


def _code_stamp(app: Path) -> float:
    """When the app's Python files last changed (v2 modules, blueprints, v1 folders)."""
    files = [*app.glob("*.py"), *app.glob("*/*.py")]
    return max((f.stat().st_mtime for f in files if f.is_file()), default=0.0)


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
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = SIGNAL_SLICE_S if deadline is None else deadline - time.monotonic()
            try:  # waking every slice runs any signal handler another thread tripped
                return self.future.result(max(0.0, min(SIGNAL_SLICE_S, left)))
            except FutureTimeoutError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    def __await__(self) -> Any:
        return asyncio.wrap_future(self.future).__await__()

    def cancel(self) -> None:
        """Stop the run; invocations in flight are abandoned, the result is an error."""
        self._cancelled = True
        if self._loop is not None and self._task is not None and not self.done():
            with contextlib.suppress(RuntimeError):  # its loop closed as the run ended
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
        self._host_lock = threading.RLock()  # one thread at a time starts or stops workers
        self._running: RunHandle | None = None
        # Invocations timed alone, by what decides that time: the same request to the same
        # handler against the same upstream takes the same time alone whatever the thread
        # and process settings, so a sweep times it once (each run still adds its own).
        self._alone: dict[tuple[Any, ...], list[InvocationRecord]] = {}

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
        with self._host_lock:
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
        with self._host_lock:
            return self._host_for(processes, threads, handler, cpu_affinity)

    def _host_for(
        self,
        processes: int,
        threads: int | None,
        handler: Callable[..., Any] | func.FunctionApp | None,
        cpu_affinity: set[int] | None,
    ) -> Host:
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
                if isinstance(handler, func.FunctionRegister)
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
        method: str | None = None,
        path: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RunHandle:
        """Begin a run in the background and return its handle at once.

        The request: ``function`` with its own route, or ``path`` (e.g. ``/api/users/7``),
        routed like the host; ``method``, ``params``, ``headers`` and ``body`` as given.
        """
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
        if function is None and path is None:
            if handler is None or isinstance(handler, func.FunctionRegister):
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
            method=method,
            path=path,
            headers=headers or {},
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
            # Say so first (a Stop button waits for this), then stop the workers: a failed
            # or stopped run may leave invocations in flight, so the next run starts clean.
            with self._host_lock:
                handle.future.set_exception(exc)
                self._close_host()
        else:
            handle.future.set_result(result)

    async def _run(
        self,
        handle: RunHandle,
        *,
        function: str | None,
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
        method: str | None,
        path: str | None,
        headers: dict[str, str],
    ) -> RunResult:
        handle._loop, handle._task = asyncio.get_running_loop(), asyncio.current_task()
        if handle._cancelled:
            raise asyncio.CancelledError
        host = await asyncio.to_thread(self.host, processes, threads, handler, cpu_affinity)
        prefix = DEFAULT_ROUTE_PREFIX if handler is not None else route_prefix(self.app)
        function, request = plan_request(
            host.functions, prefix, function, method, path, params, headers, body
        )
        info = host.function(function)
        if upstream_delay_ms is not None:
            self.upstream.delay_ms = upstream_delay_ms
        timeout = (host.timeout_s or DEFAULT_TIMEOUT_S) + 5.0
        send_now = host_sender(host, function, request, timeout)

        async def send(index: int) -> InvocationRecord:
            # On Python < 3.12 wait_for can swallow a task.cancel() that lands as a result
            # arrives; the flag still stops the run at its next invocation.
            if handle._cancelled:
                raise asyncio.CancelledError
            return await send_now(index)

        # Warm-up: one invocation per worker (imports, first connections), not timed.
        for i in range(processes):
            await send(-1 - i)
        # Then invocations alone, to time what one needs: at least three and one per
        # worker, more while they are quick, for medians that a busy machine cannot sway.
        alone_key = (
            function,
            handler,
            repr(request),
            self.upstream.delay_ms,
            self.upstream.jitter_ms,
            frozenset(cpu_affinity or ()),
            None if handler is not None else _code_stamp(self.app),  # an edited app: anew
        )
        alone = self._alone.get(alone_key)
        if alone is None:
            alone, began = [], clock()
            while len(alone) < max(processes, ALONE_MIN) or (
                len(alone) < ALONE_MAX and clock() - began < ALONE_BUDGET_S
            ):
                alone.append(await send(-100 - len(alone)))
                if len(alone) == 3 and not any(r.ok for r in alone):
                    break  # it fails alone: no use timing it further
            if any(r.ok for r in alone):
                self._alone[alone_key] = alone
        pool_threads = None if info.is_async else host.threads
        meter = CpuMeter(cpu_affinity)

        def ideal(demand: Demand, cores: float) -> Ideal:
            if not demand.samples:
                return Ideal(0.0, "unknown: the function failed when run alone")
            return demand.ideal(
                concurrency=concurrency, processes=processes, pool_threads=pool_threads, cores=cores
            )

        handle.ideal = ideal(Demand.measure(alone), meter.cores)  # until the run says more

        before = await asyncio.to_thread(host.stats)  # also resets each worker's loop lag
        self.upstream.reset_stats()
        meter.start(_lab_cpu_s(before))
        own_before = own_cpu_s()

        def record(rec: InvocationRecord) -> None:
            handle.records.append(rec)
            if on_record is not None:
                on_record(rec)

        records, elapsed = await closed_loop(send, concurrency, requests, duration_s, record)
        worker_stats = await asyncio.to_thread(host.stats)
        cpu = meter.stop(_lab_cpu_s(worker_stats))
        own_busy = (own_cpu_s() - own_before) / elapsed if elapsed > 0 else 0.0
        demand = Demand.measure(alone, records)
        handle.ideal = ideal(demand, cpu.free)
        summary = summarize(
            records,
            function=function,
            processes=processes,
            threads=host.threads,
            concurrency=concurrency,
            elapsed_s=elapsed,
            startup_s=host.startup_s,
            ideal=handle.ideal,
            service_s=demand.service_s,
            worker_stats=worker_stats,
            upstream_peak=self.upstream.stats.peak_in_flight,
            is_async=info.is_async,
            cpu=cpu,
            loop_busy=_busiest_loop(before, worker_stats, elapsed),
            lab_process_busy=own_busy,
        )
        return RunResult(summary, records, worker_stats)


def _lab_cpu_s(worker_stats: list[dict[str, Any]]) -> float:
    """CPU seconds of the lab so far: this process and its worker processes."""
    me = os.getpid()
    return own_cpu_s() + sum(s.get("cpu_s", 0.0) for s in worker_stats if s.get("pid") != me)


def _busiest_loop(
    before: list[dict[str, Any]], after: list[dict[str, Any]], elapsed_s: float
) -> float:
    """Share of the window the busiest worker's event-loop thread spent computing."""
    start = {s["worker"]: s.get("loop_cpu_s", 0.0) for s in before}
    busy = [s.get("loop_cpu_s", 0.0) - start.get(s["worker"], 0.0) for s in after]
    return max(busy, default=0.0) / elapsed_s if elapsed_s > 0 else 0.0

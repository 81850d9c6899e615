"""The Azure Functions Python worker's concurrency model, in one screen.

One worker process has ONE asyncio event loop. Every invocation the host sends becomes its
own task on that loop, so invocations overlap and the worker sets no cap on how many.
- ``async def`` functions are awaited right on the loop: while one blocks (``time.sleep``,
  ``requests.get``, a CPU loop), every invocation in this process waits.
- plain ``def`` functions run on ONE ThreadPoolExecutor per process, sized by the app
  setting PYTHON_THREADPOOL_THREAD_COUNT. Request decoding and response encoding stay on
  the loop thread.
- the loop's default executor, used by ``run_in_executor(None, ...)``, is not the pool the
  app setting sizes: it is asyncio's own, min(32, cores + 4) threads. (The lab puts a
  metered pool of that same size in its place, to measure what each invocation uses.)
Sources: azure-functions-python-worker ``dispatcher.py`` and ``utils/threadpool.py``.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .app_loader import FunctionInfo
from .app_settings import THREAD_COUNT_SETTING, default_executor_threads, thread_count_from_setting
from .bindings import arguments, output_bytes, shown_value
from .http_streaming import HttpCoordinator, sync_route_params
from .instrument import LoopLagProbe, MeteredExecutor, StepTimer
from .invocation import HttpRequestFields, HttpResponseFields, InvocationRecord, clock
from .invocation_logs import current_invocation, user_traceback


class Worker:
    def __init__(
        self,
        functions: dict[str, FunctionInfo],
        timeout_s: float | None = None,
        app_settings: Mapping[str, str] = os.environ,
    ):
        self.functions = functions
        self.timeout_s = timeout_s
        setting = thread_count_from_setting(app_settings.get(THREAD_COUNT_SETTING))
        self.pool = ThreadPoolExecutor(max_workers=setting, thread_name_prefix="worker-pool")
        self.threads: int = self.pool._max_workers  # what max_workers=None resolved to
        self.lag = LoopLagProbe()
        self.default_executor = MeteredExecutor(default_executor_threads())
        self._loop: asyncio.AbstractEventLoop | None = None
        # HTTP streaming (http_streaming): the web extension's base module and the
        # coordinator that pairs invocations with the requests its web server received.
        self.streaming: tuple[Any, HttpCoordinator] | None = None

    async def invoke(
        self, record: InvocationRecord, request: HttpRequestFields
    ) -> HttpResponseFields:
        fn = self.functions[record.function]
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            loop.set_default_executor(self.default_executor)
            self._loop = loop
        streaming = self.streaming if fn.is_http else None
        key = str(record.invocation_id)
        try:
            if streaming:  # the framework's request, from the worker's web server
                req = await asyncio.wait_for(streaming[1].request(key), self.timeout_s)
                sync_route_params(streaming[0], req, request.route_params)
            else:
                req = request.to_request()  # decoded on the loop thread, as the worker does
        except asyncio.TimeoutError:
            record.error = "the HTTP request for this invocation never reached the worker"
            return HttpResponseFields(500, record.error.encode())
        inputs = request.input_values() if hasattr(request, "input_values") else None
        kwargs, outs = arguments(fn, req, record.invocation_id, inputs)  # and context, Out
        # This task's context: its logging and its default-executor time land on the record.
        current_invocation.set(record)
        record.submitted = clock()
        try:
            if fn.unsupported or fn.error or fn.load_error:  # as the host replays a load error
                raise RuntimeError(fn.load_error or fn.error or fn.unsupported)
            if fn.is_async:
                call = self._run_async(fn, kwargs, record)
            else:
                call = loop.run_in_executor(self.pool, self._run_sync, fn, kwargs, record)
            result = await asyncio.wait_for(call, self.timeout_s)
            if streaming:  # the web server sends it (a StreamingResponse: chunk by chunk)
                streaming[1].set_response(key, result)
                return HttpResponseFields(int(getattr(result, "status_code", 200)))
            record.outputs = {name: shown_value(out.get()) for name, out in outs.items()}
            blobs = {n for n, kind in fn.outputs if kind == "blob"}
            record.output_data = {
                n: output_bytes(out.get()) for n, out in outs.items() if n in blobs and out.get()
            }
            record.outputs.update({n: f"{len(b)} bytes" for n, b in record.output_data.items()})
            if fn.http_output != "$return":  # v1: the response set on an http output binding
                record.outputs.pop(fn.http_output, None)
                result = outs[fn.http_output].get()
            # A trigger other than HTTP says how its function's return value is encoded.
            encode = getattr(request, "encode_return", HttpResponseFields.from_return)
            return encode(result)
        except asyncio.TimeoutError:
            record.error = f"FunctionTimeout: {fn.name} ran longer than {self.timeout_s:g} s"
        except Exception as exc:  # the function failed: a 500 for this request only
            record.error = f"{type(exc).__name__}: {exc}"
            record.traceback = user_traceback(exc)
        record.ended = record.ended or clock()
        if streaming:  # the waiting route raises it: the web server answers 500
            streaming[1].set_response(key, RuntimeError(record.error))
        return HttpResponseFields(500, record.error.encode())

    async def _run_async(self, fn: FunctionInfo, kwargs: dict, record: InvocationRecord) -> Any:
        record.started, record.thread = clock(), threading.current_thread().name
        timer = StepTimer(fn.func(**kwargs))
        try:
            return await timer
        finally:
            record.ended = clock()
            record.cpu_ms, record.longest_step_ms = timer.cpu_s * 1e3, timer.longest_step_s * 1e3
            record.loop_ms = timer.held_s * 1e3

    def _run_sync(self, fn: FunctionInfo, kwargs: dict, record: InvocationRecord) -> Any:
        record.started, record.thread = clock(), threading.current_thread().name
        current_invocation.set(record)  # this pool thread's context, until its next invocation
        cpu0 = time.thread_time()
        try:
            return fn.func(**kwargs)
        finally:
            record.ended = clock()
            record.cpu_ms = (time.thread_time() - cpu0) * 1e3

    def close(self) -> None:
        self.lag.stop()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.default_executor.shutdown(wait=False, cancel_futures=True)

"""Measuring inside a worker without changing what it does.

- ``StepTimer`` drives a coroutine step by step, as the event loop would, adding up the
  CPU time of each step, the wall time of all its steps (how long it held the loop) and
  the longest step. A blocking call inside ``async def`` shows up as one long step.
- ``MeteredExecutor`` stands in for asyncio's default executor, with the same size, and
  adds each job's thread time to the invocation that submitted it: what
  ``run_in_executor(None, ...)`` and ``asyncio.to_thread`` cost in that pool.
- ``LoopLagProbe`` asks the loop to wake it every 10 ms and records how late it woke:
  while anything blocks the loop, every other invocation in the process is that late too.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from .invocation_logs import current_invocation


class StepTimer:
    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self._coro = coro
        self.cpu_s = 0.0
        self.held_s = 0.0  # all steps together: how long this coroutine held the loop
        self.longest_step_s = 0.0

    def _account(self, cpu0: float, wall0: float) -> None:
        step = time.monotonic() - wall0
        self.cpu_s += time.thread_time() - cpu0
        self.held_s += step
        self.longest_step_s = max(self.longest_step_s, step)

    def __await__(self) -> Generator[Any, Any, Any]:
        steps = self._coro.__await__()
        value: Any = None
        error: BaseException | None = None
        while True:
            cpu0, wall0 = time.thread_time(), time.monotonic()
            try:
                yielded = steps.throw(error) if error is not None else steps.send(value)
            except StopIteration as done:
                self._account(cpu0, wall0)
                return done.value
            except BaseException:
                self._account(cpu0, wall0)
                raise
            self._account(cpu0, wall0)
            value, error = None, None
            try:
                value = yield yielded
            except GeneratorExit:
                self._coro.close()
                raise
            except BaseException as exc:  # e.g. CancelledError: pass it into the coroutine
                error = exc


class LoopLagProbe:
    INTERVAL_S = 0.01

    def __init__(self) -> None:
        self.max_lag_s = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def reset(self) -> float:
        lag, self.max_lag_s = self.max_lag_s, 0.0
        return lag

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.INTERVAL_S)
            lag = time.monotonic() - before - self.INTERVAL_S
            self.max_lag_s = max(self.max_lag_s, lag)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


class MeteredExecutor(ThreadPoolExecutor):
    """A ThreadPoolExecutor that charges each job's thread time to its invocation.

    Installed as the loop's default executor with asyncio's own size and thread names, so
    ``run_in_executor(None, ...)`` behaves as in the real worker, and can be measured.
    """

    def __init__(self, max_workers: int | None = None) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix="asyncio")
        self._lock = threading.Lock()
        self.busy = 0
        self.peak_busy = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        record = current_invocation.get()

        def timed() -> Any:
            with self._lock:
                self.busy += 1
                self.peak_busy = max(self.peak_busy, self.busy)
            began = time.monotonic()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.monotonic() - began
                with self._lock:
                    self.busy -= 1
                if record is not None:
                    record.executor_ms += spent * 1e3

        return super().submit(timed)

    def reset_peak(self) -> int:
        with self._lock:
            peak, self.peak_busy = self.peak_busy, self.busy
        return peak

"""Measuring inside a worker without changing what it does.

- ``StepTimer`` drives a coroutine step by step, as the event loop would, adding up the
  CPU time of each step and the longest step: how long the coroutine held the loop
  without yielding. A blocking call inside ``async def`` shows up as one long step.
- ``LoopLagProbe`` asks the loop to wake it every 10 ms and records how late it woke:
  while anything blocks the loop, every other invocation in the process is that late too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Generator
from typing import Any


class StepTimer:
    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self._coro = coro
        self.cpu_s = 0.0
        self.longest_step_s = 0.0

    def _account(self, cpu0: float, wall0: float) -> None:
        self.cpu_s += time.thread_time() - cpu0
        self.longest_step_s = max(self.longest_step_s, time.monotonic() - wall0)

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

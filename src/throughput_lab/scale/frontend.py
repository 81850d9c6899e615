"""The platform's HTTP front end, reduced to what scale-out needs: each instance takes at
most ``per_instance_concurrency`` requests at once; a request that finds no free slot waits,
first come first served, and is rejected after ``timeout_s`` (assumptions, as in
``controller``: the front end's routing is not documented). One event loop owns it."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from ..invocation import clock


class Slotted:
    """What the front end needs of an instance: whether it is gone, and how busy it is."""

    gone: bool = False
    busy: int = 0


class FrontEnd:
    def __init__(self, per_instance_concurrency: int, timeout_s: float) -> None:
        self.per_instance = per_instance_concurrency
        self.timeout_s = timeout_s
        self.free: deque[Any] = deque()  # one entry per free slot
        self.waiters: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self.busy = self.busy_peak = 0
        self.closed = False

    @property
    def waiting(self) -> int:
        self._purge()
        return sum(1 for _, f in self.waiters if not f.done())

    @property
    def in_flight(self) -> int:
        return self.waiting + self.busy

    def oldest_wait_s(self) -> float:
        self._purge()
        return clock() - self.waiters[0][0] if self.waiters else 0.0

    def _purge(self) -> None:
        while self.waiters and self.waiters[0][1].done():
            self.waiters.popleft()

    def add(self, instance: Any) -> None:
        for _ in range(self.per_instance):
            self._freed(instance)

    def remove(self, instance: Any) -> None:
        instance.gone = True
        self.free = deque(i for i in self.free if i is not instance)

    def close(self) -> None:
        """Stopping: every waiting request (and any later) gets no instance, at once."""
        self.closed = True
        while self.waiters:
            _, future = self.waiters.popleft()
            if not future.done():
                future.set_result(None)
        self.free.clear()

    async def acquire(self) -> Any:
        """A slot's instance, or None once the request waited ``timeout_s`` (or at once
        when the front end is closed)."""
        if self.closed:
            return None
        if self.free:
            return self._take(self.free.popleft())
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiters.append((clock(), future))
        timer = asyncio.get_running_loop().call_later(
            self.timeout_s, lambda: future.done() or future.set_result(None)
        )
        try:
            return await future
        finally:
            timer.cancel()

    def _take(self, instance: Any) -> Any:
        instance.busy += 1
        self.busy += 1
        self.busy_peak = max(self.busy_peak, self.busy)
        return instance

    def release(self, instance: Any) -> None:
        instance.busy -= 1
        self.busy -= 1
        self._freed(instance)

    def _freed(self, instance: Any) -> None:
        if instance.gone or self.closed:
            return
        while self.waiters:
            _, future = self.waiters.popleft()
            if not future.done():
                future.set_result(self._take(instance))
                return
        self.free.append(instance)

"""The host's side of its channel to each worker process (azure-functions-host's
``GrpcWorkerChannel``): the invocations sent and not yet answered, the thread that receives
each worker's results and stats, and the stats request.

``host.Host`` decides which worker gets an invocation (round-robin), and what happens when
one ends (supervision); this module only carries invocations and their answers over the
typed ``channel``, and fails the ones a worker will never answer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from typing import Any

from .channel import Invoke, Result, StatsRequest, WorkerStats, dispatcher
from .invocation import InvocationRecord, clock
from .worker_start import WorkerProcess


class WorkerDiedError(RuntimeError):
    """A worker process ended while invocations were in flight."""


class Pending:
    """Invocations sent and not yet answered: their worker, future and when each was sent."""

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[WorkerProcess, Future[Any], float]] = {}

    def add(self, worker: WorkerProcess, record: InvocationRecord, future: Future[Any]) -> None:
        self._by_id[record.invocation_id] = (worker, future, record.dispatched)

    def take(self, invocation_id: int) -> Future[Any] | None:
        entry = self._by_id.pop(invocation_id, None)
        return entry[1] if entry else None

    def in_flight(self) -> list[tuple[WorkerProcess, float]]:
        return [(worker, sent) for worker, _, sent in list(self._by_id.values())]

    def fail(self, worker: WorkerProcess | None, why: str) -> None:
        """Fail what ``worker`` holds (every worker's: None) with ``why``."""
        for invocation_id, (owner, future, _) in list(self._by_id.items()):
            if worker is None or owner is worker:
                self._by_id.pop(invocation_id, None)
                if not future.done():
                    with contextlib.suppress(InvalidStateError):
                        future.set_exception(WorkerDiedError(why))


class WorkerChannels:
    """Send invocations to workers and receive their results and stats; ``closed()`` says
    the host is stopping (a worker's channel closing then is no news)."""

    def __init__(self, closed: Callable[[], bool]) -> None:
        self.pending = Pending()
        self._closed = closed
        self._stats: queue.Queue[WorkerStats] = queue.Queue()

    def attend(self, worker: WorkerProcess) -> None:
        """Receive ``worker``'s messages on a thread of its own, until its channel closes."""
        threading.Thread(
            target=self._receive, args=(worker,), name=f"host-rx-{worker.index}", daemon=True
        ).start()

    def send(
        self, worker: WorkerProcess, record: InvocationRecord, request: Any, future: Future[Any]
    ) -> None:
        """Send one invocation; ``future`` gets its result, or fails if the worker is gone."""
        record.worker, record.pid = worker.index, worker.pid
        record.dispatched = clock()
        self.pending.add(worker, record, future)
        try:
            worker.send(Invoke(record, request))
        except (OSError, ValueError) as exc:
            self.pending.take(record.invocation_id)
            why = worker.gone or f"worker {worker.index} is gone: {exc}"
            if not future.done():
                future.set_exception(WorkerDiedError(why))
            return
        if worker.gone:  # it died while this was being sent: its failing may have missed it
            self.pending.fail(worker, worker.gone)

    def _receive(self, worker: WorkerProcess) -> None:
        def on_result(message: Result) -> None:
            message.record.completed = clock()
            future = self.pending.take(message.record.invocation_id)
            if future is not None and not future.done():
                future.set_result((message.record, message.response))

        def on_stats(message: WorkerStats) -> None:
            self._stats.put(dataclasses.replace(message, worker=worker.index))

        dispatch = dispatcher({Result: on_result, WorkerStats: on_stats})
        try:
            while True:
                dispatch(worker.conn.recv())
        except (EOFError, OSError):
            pass
        if worker.process is not None:
            return  # its exit is reported by its supervisor, with the code or signal
        if not self._closed():
            worker.gone = f"worker {worker.index} (in this process) ended"
            self.pending.fail(worker, worker.gone)

    def stats(self, workers: list[WorkerProcess], timeout_s: float) -> list[WorkerStats]:
        """Ask each live worker for its stats; the replies within ``timeout_s``, by worker."""
        while not self._stats.empty():  # a late reply to an earlier call
            self._stats.get_nowait()
        asked = 0
        for worker in workers:
            if not worker.alive():
                continue
            try:
                worker.send(StatsRequest())
                asked += 1
            except (OSError, ValueError):
                pass
        replies: list[WorkerStats] = []
        deadline = time.monotonic() + timeout_s
        while len(replies) < asked:
            try:
                replies.append(self._stats.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return sorted(replies, key=lambda r: r.worker)


def wake(conn: Any) -> None:
    """Make a thread blocked reading ``conn`` return (EOF), even if a child holds it open."""
    try:
        dup = socket.socket(fileno=os.dup(conn.fileno()))
    except (OSError, ValueError):
        return
    with contextlib.suppress(OSError):
        dup.shutdown(socket.SHUT_RDWR)
    dup.close()

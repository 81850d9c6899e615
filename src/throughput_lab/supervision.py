"""Keeping a host's workers healthy, as the Functions host does: restart a worker that exits
(up to a limit, then recycle), and end one that holds an invocation past the function
timeout or grows past a memory limit.

Sources: azure-functions-host ``RpcFunctionInvocationDispatcher`` (ErrorEventsThreshold =
3 x maxProcessCount, ``WorkerRestartErrorIntervalThresholdInMinutes`` = 30) and
``RestartWorkerWithInvocationIdAsync`` (a timed-out invocation restarts its worker).
"""

from __future__ import annotations

import collections
import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterable

from .channel import Stop
from .invocation import clock
from .supervisor import SupervisedProcess, describe_exit
from .worker_start import WorkerProcess

RESTARTS_PER_PROCESS = 3
RESTART_WINDOW_S = 30 * 60.0
TIMEOUT_GRACE_S = 2.0  # past the function timeout, a worker that has not answered is ended
WATCH_EVERY_S = 0.2


class RestartPolicy:
    """Counts worker exits in a sliding window; past the host's limit, it gives up."""

    def __init__(self, processes: int) -> None:
        self.limit = RESTARTS_PER_PROCESS * processes
        self._exits: collections.deque[float] = collections.deque()

    def give_up(self, why: str) -> str:
        """Record one exit; the reason to stop restarting, or "" to restart."""
        now = time.monotonic()
        self._exits.append(now)
        while self._exits and now - self._exits[0] > RESTART_WINDOW_S:
            self._exits.popleft()
        if len(self._exits) < self.limit:
            return ""
        return (
            f"{why}; not restarted: {len(self._exits)} worker exits in "
            f"{RESTART_WINDOW_S / 60:g} min (the Functions host stops at 3 per process)"
        )


def why_it_ended(worker: WorkerProcess, proc: SupervisedProcess) -> str:
    """One line for a learner: which worker, how it ended, and its last words."""
    who = f"worker {worker.index} (pid {proc.pid})"
    if proc.reason:
        return f"{who} was ended by the host: {proc.reason}"
    why = f"{who} {describe_exit(proc.returncode)}"
    if proc.tail:
        why += f"; its last output: {proc.tail[-1][:300]}"
    return why


class Watchdog:
    """A thread that ends a worker sitting on an invocation past the function timeout (its
    loop is blocked: it cannot time the invocation out itself), and one whose memory, its
    children's included, passes ``max_worker_mb``; the host then starts a replacement."""

    def __init__(
        self,
        workers: Callable[[], Iterable[WorkerProcess]],
        in_flight: Callable[[], Iterable[tuple[WorkerProcess, float]]],
        timeout_s: float | None,
        max_worker_mb: float | None,
        stopped: Callable[[], bool],
    ) -> None:
        self.workers, self.in_flight, self.stopped = workers, in_flight, stopped
        self.timeout_s, self.max_worker_mb = timeout_s, max_worker_mb

    def start(self) -> None:
        threading.Thread(target=self._watch, name="host-watchdog", daemon=True).start()

    def _watch(self) -> None:
        while not self.stopped():
            if self.timeout_s is not None:
                self._end_overdue(self.timeout_s)
            if self.max_worker_mb is not None:
                self._end_oversized(self.max_worker_mb)
            time.sleep(WATCH_EVERY_S)

    def _end_overdue(self, timeout_s: float) -> None:
        overdue = clock() - timeout_s - TIMEOUT_GRACE_S
        for worker, sent in self.in_flight():
            if sent < overdue and worker.process is not None and worker.alive():
                worker.process.kill(
                    f"no answer {timeout_s:g} s + {TIMEOUT_GRACE_S:g} s after an "
                    "invocation was sent: its event loop is blocked"
                )

    def _end_oversized(self, limit_mb: float) -> None:
        import psutil

        for worker in self.workers():
            if worker.process is None or not worker.alive():
                continue
            try:
                root = psutil.Process(worker.process.pid)
                rss = sum(p.memory_info().rss for p in [root, *root.children(True)])
            except psutil.Error:
                continue
            if rss > limit_mb * 2**20:
                worker.process.kill(
                    f"it used {rss / 2**20:.0f} MB, over --max-worker-mb {limit_mb:g}"
                )


def stop_workers(workers: list[WorkerProcess], grace_s: float, hurry: threading.Event) -> None:
    """Stop message to each, a grace period, then end each group; all at once, on threads,
    so a full channel to a stuck worker blocks no one. ``hurry`` cuts the grace short."""
    for worker in workers:
        threading.Thread(target=_send_stop, args=(worker,), daemon=True).start()
    stoppers = []
    for worker in workers:
        if worker.process is not None:
            grace = 0.0 if hurry.is_set() else grace_s
            t = threading.Thread(target=worker.process.stop, args=(grace, hurry))
            t.start()
            stoppers.append(t)
        elif worker.thread is not None:
            worker.thread.join(timeout=2)
    for t in stoppers:
        t.join()


def run_to_the_end(shutdown: Callable[[], None], hurry: threading.Event) -> None:
    """Run ``shutdown`` on a thread of its own and wait for it: a Ctrl-C meanwhile only
    sets ``hurry`` (no more waiting, groups killed at once), then is raised once it is done,
    so an impatient learner cannot leave workers behind."""
    thread = threading.Thread(target=shutdown, name="host-shutdown")
    try:
        thread.start()
    except RuntimeError:  # interpreter shutting down: no new threads
        hurry.set()
        shutdown()
        return
    interrupted = False
    while thread.is_alive():
        try:
            thread.join(0.1)
        except KeyboardInterrupt:
            interrupted = True
            hurry.set()
    if interrupted:
        raise KeyboardInterrupt


def _send_stop(worker: WorkerProcess) -> None:
    with contextlib.suppress(OSError, ValueError):
        worker.send(Stop())


def say(line: str) -> None:
    """A host message for the learner's console (stderr: stdout may carry JSON)."""
    print(f"throughput_lab: {line}", file=sys.stderr, flush=True)

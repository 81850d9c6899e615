"""The Functions host, reduced to what decides throughput: it starts the worker processes
and hands them invocations round-robin, without waiting for one to finish before sending
the next (azure-functions-host ``RpcFunctionInvocationDispatcherLoadBalancer``).

Its jobs are split by kind: ``worker_start`` starts and authenticates the worker processes,
``supervision`` restarts them and watches for timeouts and memory, ``worker_channel``
carries invocations, results and stats over the typed ``channel``, and this module
decides which worker gets each invocation and what follows when one ends.

Each worker is a fresh interpreter in a session of its own (``supervisor``), so a
terminal's or Jupyter's group-wide Ctrl-C reaches only the host, which then stops them in
order (Stop message, a short wait, terminate, kill the group, children of handlers
included). A worker that exits is reported at once with its code or signal, its
invocations fail at once, and a replacement starts, as the Functions host restarts a
worker. A worker ends its group itself when its host is gone, even killed outright.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from .app_loader import FunctionInfo, find_function
from .app_settings import (
    PROCESS_COUNT_SETTING,
    check_processes,
    check_threads_flag,
    processes_from_setting,
)
from .channel import WorkerStats
from .host_index import error_lines
from .invocation import HttpRequestFields, HttpResponseFields, InvocationRecord
from .local_settings import app_environment, say_once
from .supervision import (
    RestartPolicy,
    Watchdog,
    run_to_the_end,
    say,
    stop_workers,
    why_it_ended,
)
from .supervisor import SupervisedProcess
from .worker_channel import WorkerChannels, WorkerDiedError, wake
from .worker_start import (
    Launch,
    WorkerProcess,
    app_settings_for_workers,
    start_in_process,
    worker_environment,
)

STOP_GRACE_S = 2.0  # after the Stop message, before the worker's group is ended
# The longest the main thread sleeps at a time while it waits. Python runs signal handlers
# on the main thread only, and the kernel may hand SIGTERM or SIGINT to another thread: a
# main thread asleep for good would never run the handler (bench once ignored a SIGTERM).
SIGNAL_SLICE_S = 0.2

Held = tuple[InvocationRecord, Any, "Future[Any]"]  # waits for a replacement worker


class Host:
    """Start ``processes`` workers for a function app and dispatch invocations to them.

    ``threads`` sets PYTHON_THREADPOOL_THREAD_COUNT for the workers; ``None`` leaves it as
    the environment has it (absent: the worker's default). ``functions`` instead of ``app``
    runs one worker on a thread of this process, for handlers defined in a notebook cell.
    ``max_worker_mb`` ends (and reports) a worker whose memory, its children's included,
    grows past that many megabytes; the host then starts a replacement.
    """

    def __init__(
        self,
        app: str | Path | None = None,
        *,
        processes: int | None = None,
        threads: int | None = None,
        app_settings: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        functions: Mapping[str, FunctionInfo] | None = None,
        cpu_affinity: set[int] | None = None,
        start_timeout_s: float = 60.0,
        max_worker_mb: float | None = None,
        capture_logs: bool = False,
    ) -> None:
        if (app is None) == (functions is None):
            raise ValueError("give either an app folder or in-process functions")
        self.app = None if app is None else Path(app)
        # The environment func start gives the app: this one, plus local.settings.json.
        self.environment = app_environment(self.app)
        if processes is None:
            processes = processes_from_setting(self.environment.get(PROCESS_COUNT_SETTING))
        self.processes = check_processes(processes)
        if functions is not None and self.processes != 1:
            raise ValueError("handlers defined in this process run in one in-process worker")
        self.thread_setting = check_threads_flag(threads)
        self.app_settings = dict(app_settings or {})
        self.timeout_s = timeout_s
        self._in_process = dict(functions) if functions is not None else None
        self.cpu_affinity = cpu_affinity
        self.start_timeout_s = start_timeout_s
        self.max_worker_mb = max_worker_mb
        self.capture_logs = capture_logs  # functions' logging kept on their records (serve)
        self.workers: list[WorkerProcess] = []
        self.functions: dict[str, dict[str, Any]] = {}
        self.startup_s = 0.0
        self.worker_exits: list[str] = []  # one line per worker that ended while in use
        self._channels = WorkerChannels(lambda: self._closed)
        self._held: list[Held] = []  # no worker was alive: they go to the replacement
        self._lock = threading.RLock()
        self._restart_policy = RestartPolicy(self.processes)
        self._restarting = 0
        self._given_up = ""
        self._hurry = threading.Event()
        self._ids = itertools.count()
        self._round_robin = itertools.count()
        self._closed = False
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> Host:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def threads(self) -> int:
        """The thread pool size each worker really has."""
        return self.workers[0].threads if self.workers else 0

    def _worker_app_settings(self) -> dict[str, str]:
        return app_settings_for_workers(self.app_settings, self.thread_setting, self.environment)

    def _launch(self) -> Launch:
        assert self.app is not None
        return Launch(
            self.app,
            worker_environment(self._worker_app_settings()),
            timeout_s=self.timeout_s,
            capture_logs=self.capture_logs,
            cpu_affinity=self.cpu_affinity,
            start_timeout_s=self.start_timeout_s,
            on_exit=self._worker_exited,
            give_up=lambda: self._hurry.is_set() or self._closed,
        )

    def start(self) -> Host:
        if self._started:
            return self
        self._started = True
        atexit.register(self._close_at_exit)
        began = time.monotonic()
        try:
            if self._in_process is not None:
                settings = self._worker_app_settings()
                args = (self._in_process, self.timeout_s, settings, self.start_timeout_s)
                self.workers = [start_in_process(*args)]
            else:
                self.workers = self._launch().start(list(range(self.processes)))
        except BaseException:
            self.close()
            raise
        self.startup_s = time.monotonic() - began
        ready = self.workers[0].ready
        self.functions = {f["name"]: dict(f) for f in ready.functions} if ready else {}
        for line in error_lines(self.functions):  # the host logs each; the rest runs
            say_once(str(self.app), line)
        for worker in self.workers:
            self._channels.attend(worker)
        if self._in_process is None:
            watched = (lambda: list(self.workers), self._channels.pending.in_flight)
            limits = (self.timeout_s, self.max_worker_mb)
            Watchdog(*watched, *limits, stopped=lambda: self._closed).start()
        return self

    def close(self) -> None:
        """Stop every worker: Stop message, wait, end its group. Safe to call twice.

        The work runs on a thread of its own: a second Ctrl-C here only hurries it (no
        more waiting, the groups are killed at once); it cannot leave workers behind.
        """
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._close_at_exit)
        run_to_the_end(self._shutdown, self._hurry)

    def _close_at_exit(self) -> None:
        with contextlib.suppress(BaseException):
            self.close()

    def _shutdown(self) -> None:
        with self._lock:
            workers = list(self.workers)
            held, self._held = self._held, []
        stop_workers(workers, STOP_GRACE_S, self._hurry)
        for worker in workers:
            wake(worker.conn)
            worker.conn.close()
        _fail_held(held, "the host was closed")
        self._channels.pending.fail(None, "the host was closed")

    @property
    def closed(self) -> bool:
        """Closed, or recycling after too many worker exits: start a new host to go on."""
        return self._closed or bool(self._given_up)

    # -- supervision -------------------------------------------------------------------

    def _worker_exited(self, proc: SupervisedProcess) -> None:
        """A worker process ended (its group is already killed): report, fail, replace."""
        with self._lock:
            worker = next((w for w in self.workers if w.process is proc), None)
        if worker is None or self._closed:
            return  # still starting (start-up reports it) or the host is stopping it
        why = why_it_ended(worker, proc)
        worker.gone = why
        wake(worker.conn)
        self._channels.pending.fail(worker, why)
        with self._lock:
            self.worker_exits.append(why)
            given_up = self._restart_policy.give_up(why)
            if given_up:
                self._give_up(given_up)
                # Like the Functions host, recycle: stop the other workers too; a Lab then
                # starts a fresh host for its next run.
                threading.Thread(target=self._close_at_exit, daemon=True).start()
                return
            self._restarting += 1
        say(f"{why}; starting a replacement")
        self._replace(worker, why)

    def _give_up(self, why: str) -> None:
        with self._lock:
            self._given_up = why
            held, self._held = self._held, []
        say(why)
        _fail_held(held, why)

    def _replace(self, worker: WorkerProcess, why: str) -> None:
        try:
            (new,) = self._launch().start([worker.index])
        except BaseException as exc:  # this thread's end: report, do not raise
            if self._closed:
                return
            with self._lock:
                self._restarting -= 1
            self._give_up(f"{why}; its replacement failed: {exc}")
            return
        with self._lock:
            self._restarting -= 1
            if self._closed:
                new.process.kill() if new.process else None
                return
            self.workers[self.workers.index(worker)] = new
            held, self._held = self._held, []
        self._channels.attend(new)
        for record, request, future in held:
            self._channels.send(new, record, request, future)

    # -- invocations -------------------------------------------------------------------

    def function(self, name: str) -> FunctionInfo:
        """Describe an indexed HTTP function (an error lists the known ones)."""
        infos = {n: FunctionInfo.from_description(f) for n, f in self.functions.items()}
        return find_function(infos, name)

    def new_record(self, function: str) -> InvocationRecord:
        """A record for ``invoke`` whose id the caller needs first (HTTP streaming)."""
        return InvocationRecord(next(self._ids), function)

    @property
    def streams_http(self) -> bool:
        """The app's HTTP functions answer through each worker's web server (http_streaming)."""
        return bool(self.workers and self.workers[0].ready and self.workers[0].ready.http_uri)

    def http_uri(self, worker: int) -> str:
        """Where worker ``worker``'s web server listens (HTTP streaming), or ""."""
        for candidate in list(self.workers):
            if candidate.index == worker and candidate.ready is not None:
                return candidate.ready.http_uri
        return ""

    def invoke(
        self,
        function: str,
        request: HttpRequestFields,
        record: InvocationRecord | None = None,
    ) -> Future[tuple[InvocationRecord, HttpResponseFields]]:
        """Send one invocation to the next live worker in turn; the future holds the result."""
        future: Future[tuple[InvocationRecord, HttpResponseFields]] = Future()
        if self._given_up:  # recycled after too many worker exits: fail at once, say why
            future.set_exception(WorkerDiedError(self._given_up))
            return future
        if self._closed or not self._started:
            raise RuntimeError("the host is not running")
        record = record or self.new_record(function)
        with self._lock:
            worker = self._next_worker()
            if worker is None:
                if self._restarting and not self._given_up:
                    self._held.append((record, request, future))  # sent to the replacement
                else:
                    why = self._given_up or "; ".join(w.gone for w in self.workers if w.gone)
                    future.set_exception(WorkerDiedError(why or "no worker is running"))
                return future
        self._channels.send(worker, record, request, future)
        return future

    def _next_worker(self) -> WorkerProcess | None:
        for _ in range(len(self.workers)):
            worker = self.workers[next(self._round_robin) % len(self.workers)]
            if worker.alive():
                return worker
        return None

    def stats(self, timeout_s: float = 5.0) -> list[WorkerStats]:
        """Each worker's loop lag since the last call, CPU seconds, RSS, thread count."""
        return self._channels.stats(list(self.workers), timeout_s)


def _fail_held(held: list[Held], why: str) -> None:
    for _, _, future in held:
        if not future.done():
            future.set_exception(WorkerDiedError(why))

"""The Functions host, reduced to what decides throughput: it starts the worker processes
and hands them invocations round-robin, without waiting for one to finish before sending
the next (azure-functions-host ``RpcFunctionInvocationDispatcherLoadBalancer``).

Workers are fresh interpreters (``python -m throughput_lab.worker_process``), never forks
of a multi-threaded parent such as a notebook kernel, each supervised as a process
supervisor would (``supervisor.SupervisedProcess``): its own session, so a terminal's or
Jupyter's group-wide Ctrl-C reaches only the host, which then stops them in order (stop
message, a short wait, terminate, kill the group, children of handlers included); output
tagged on stderr; a worker that exits is reported at once with its code or signal, its
invocations fail at once, and a replacement starts, as the Functions host restarts a
worker. A worker ends its group itself when its host is gone, even killed outright.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import itertools
import logging
import os
import queue
import secrets
import socket
import struct
import sys
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, Pipe, answer_challenge, deliver_challenge
from pathlib import Path
from typing import Any

from .app_loader import AppLoadError, FunctionInfo, find_function
from .app_settings import (
    PROCESS_COUNT_SETTING,
    THREAD_COUNT_SETTING,
    check_processes,
    check_threads_flag,
    processes_from_setting,
)
from .invocation import HttpRequestFields, HttpResponseFields, InvocationRecord, clock
from .supervisor import SupervisedProcess, describe_exit

log = logging.getLogger("throughput_lab")
_SRC = str(Path(__file__).resolve().parent.parent)


class WorkerDiedError(RuntimeError):
    """A worker process ended while invocations were in flight."""


class WorkerStartError(AppLoadError):
    """Workers could not be started: the app's import exits, hangs or fails."""


# The Functions host restarts a worker that exits, up to 3 x the process count worker
# errors within 30 minutes, then gives up (azure-functions-host
# RpcFunctionInvocationDispatcher: ErrorEventsThreshold = 3 * maxProcessCount,
# WorkerConstants.WorkerRestartErrorIntervalThresholdInMinutes = 30).
RESTARTS_PER_PROCESS = 3
RESTART_WINDOW_S = 30 * 60.0
HANDSHAKE_TIMEOUT_S = 2.0  # a connection to the start-up listener that stays silent is dropped
MAX_HANDSHAKES = 32  # connections being authenticated at once; more are refused
STOP_GRACE_S = 2.0  # after the stop message, before the worker's group is ended
TIMEOUT_GRACE_S = 2.0  # past the function timeout, a worker that has not answered is ended
# The longest the main thread sleeps at a time while it waits. Python runs signal handlers
# on the main thread only, and the kernel may hand SIGTERM or SIGINT to another thread: a
# main thread asleep for good would never run the handler (bench once ignored a SIGTERM).
SIGNAL_SLICE_S = 0.2


@dataclass
class WorkerProcess:
    index: int
    conn: Connection
    pid: int = 0
    threads: int = 0
    process: SupervisedProcess | None = None
    thread: threading.Thread | None = None  # the in-process worker's thread
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    gone: str = ""  # why it is no longer usable ("worker 0 (pid 12) exited with code 3")

    def alive(self) -> bool:
        if self.gone:
            return False
        if self.process is not None:
            return not self.process.has_exited()
        return self.thread is not None and self.thread.is_alive()

    @property
    def stderr_tail(self) -> collections.deque[str]:
        return self.process.tail if self.process is not None else collections.deque()


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
        if processes is None:
            processes = processes_from_setting(os.environ.get(PROCESS_COUNT_SETTING))
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
        # invocation id -> (worker, future of its result, when it was sent)
        self._pending: dict[int, tuple[WorkerProcess, Future[Any], float]] = {}
        # invocations that wait for a replacement worker (no worker was alive)
        self._held: list[tuple[InvocationRecord, HttpRequestFields, Future[Any]]] = []
        self._lock = threading.RLock()
        self._restarts: collections.deque[float] = collections.deque()
        self._restarting = 0
        self._given_up = ""
        self._hurry = threading.Event()
        self._stats: queue.Queue[dict[str, Any]] = queue.Queue()
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

    def worker_app_settings(self) -> dict[str, str]:
        """What a worker reads its app settings from: this environment, then the host's."""
        settings = {**os.environ, **self.app_settings}
        if self.thread_setting is not None:
            settings[THREAD_COUNT_SETTING] = str(self.thread_setting)
        return settings

    def worker_environment(self) -> dict[str, str]:
        env = self.worker_app_settings()
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_SRC, env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"  # handler output reaches the console when printed
        return env

    def start(self) -> Host:
        if self._started:
            return self
        self._started = True
        atexit.register(self._close_at_exit)
        began = time.monotonic()
        try:
            if self._in_process is not None:
                self._start_in_process()
            else:
                self.workers = self._launch(list(range(self.processes)))
        except BaseException:
            self.close()
            raise
        self.startup_s = time.monotonic() - began
        for worker in self.workers:
            self._attend(worker)
        if self._in_process is None:
            threading.Thread(target=self._watch_workers, name="host-watchdog", daemon=True).start()
        return self

    def _attend(self, worker: WorkerProcess) -> None:
        threading.Thread(
            target=self._receive, args=(worker,), name=f"host-rx-{worker.index}", daemon=True
        ).start()

    def _start_in_process(self) -> None:
        from .worker_process import run_worker_loop, serve

        host_end, worker_end = Pipe()
        assert self._in_process is not None
        loop_main = serve(worker_end, self._in_process, self.timeout_s, self.worker_app_settings())
        thread = threading.Thread(
            target=run_worker_loop, args=(loop_main,), name="in-process-worker", daemon=True
        )
        worker = WorkerProcess(0, host_end, thread=thread)
        self.workers.append(worker)
        thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not host_end.poll(0.1):
            if time.monotonic() > deadline:
                raise WorkerStartError(f"the worker was not ready after {self.start_timeout_s:g} s")
        self._ready(worker, host_end.recv())

    def _ready(self, worker: WorkerProcess, message: tuple[Any, ...]) -> None:
        kind, info = message
        if kind == "load_error":
            raise AppLoadError(info)
        worker.pid, worker.threads = info["pid"], info["threads"]
        self.functions = {f["name"]: f for f in info["functions"]}

    # -- start-up channel --------------------------------------------------------------

    def _launch(self, indices: list[int]) -> list[WorkerProcess]:
        """Start one worker process per index and wait until each has indexed the app.

        The key reaches each worker on its stdin only. A connection to the listener must
        prove it holds the key within HANDSHAKE_TIMEOUT_S and name a process started here,
        else it is dropped; handshakes run on threads, so listening goes on meanwhile.
        """
        key = secrets.token_bytes(32)
        server = socket.create_server(("127.0.0.1", 0))
        server.settimeout(0.1)
        address, port = server.getsockname()[:2]
        command = [sys.executable, "-m", "throughput_lab.worker_process", "--app", str(self.app)]
        if self.timeout_s is not None:
            command += ["--timeout", str(self.timeout_s)]
        if self.capture_logs:
            command += ["--capture-logs"]
        env = self.worker_environment()
        line = f"{address} {port} {key.hex()}\n".encode()
        arrived: queue.Queue[tuple[int, Connection, tuple[Any, ...]]] = queue.Queue()
        handshakes = threading.BoundedSemaphore(MAX_HANDSHAKES)
        by_pid: dict[int, SupervisedProcess] = {}
        ready: dict[int, WorkerProcess] = {}
        try:
            for index in indices:
                proc = SupervisedProcess(
                    command, env, f"worker {index}", line, on_exit=self._worker_exited
                )
                by_pid[proc.pid] = proc
                if self.cpu_affinity and hasattr(os, "sched_setaffinity"):
                    os.sched_setaffinity(proc.pid, self.cpu_affinity)
            deadline = time.monotonic() + self.start_timeout_s
            waiting = dict(zip(by_pid, indices, strict=True))  # pid -> index
            while waiting:
                with contextlib.suppress(queue.Empty):
                    while True:
                        pid, conn, message = arrived.get_nowait()
                        index = waiting.pop(pid, None)
                        if index is None:
                            conn.close()
                            continue
                        worker = WorkerProcess(index, conn, process=by_pid[pid])
                        ready[index] = worker
                        self._ready(worker, message)  # a load error is raised here
                for pid in waiting:
                    if by_pid[pid].has_exited():
                        with contextlib.suppress(queue.Empty):  # its load error, if it sent one
                            _, conn, message = arrived.get(timeout=0.5)
                            conn.close()
                            if message[0] == "load_error":
                                raise AppLoadError(message[1])
                        raise WorkerStartError(self._start_failure(by_pid[pid]))
                if time.monotonic() > deadline:
                    raise WorkerStartError(
                        f"worker {waiting[next(iter(waiting))]} not ready after "
                        f"{self.start_timeout_s:g} s: does the app block while it is imported?"
                    )
                if self._hurry.is_set() or self._closed:
                    raise KeyboardInterrupt
                try:
                    sock, _ = server.accept()
                except (TimeoutError, BlockingIOError):
                    continue
                if not handshakes.acquire(blocking=False):
                    sock.close()
                    continue
                threading.Thread(
                    target=_handshake,
                    args=(sock, key, set(by_pid), arrived, handshakes, deadline),
                    name="host-handshake",
                    daemon=True,
                ).start()
        except BaseException:
            for worker in ready.values():
                worker.conn.close()
            for proc in by_pid.values():  # a process no worker record owns must not live on
                proc.kill()
            for proc in by_pid.values():
                proc.exited.wait(5.0)
            raise
        finally:
            server.close()
        return [ready[i] for i in indices]

    @staticmethod
    def _start_failure(proc: SupervisedProcess) -> str:
        proc.exited.wait(1.0)
        time.sleep(0.1)  # let the output reader pass on the last lines
        last = proc.tail[-1] if proc.tail else "no message"
        return f"a worker process {describe_exit(proc.returncode)} while loading the app: {last}"

    def close(self) -> None:
        """Stop every worker: stop message, wait, end its group. Safe to call twice.

        The work runs on a thread of its own: a second Ctrl-C here only hurries it (no
        more waiting, the groups are killed at once); it cannot leave workers behind.
        """
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._close_at_exit)
        shutdown = threading.Thread(target=self._shutdown, name="host-shutdown")
        try:
            shutdown.start()
        except RuntimeError:  # interpreter shutting down: no new threads
            self._hurry.set()
            self._shutdown()
            return
        interrupted = False
        while shutdown.is_alive():
            try:
                shutdown.join(0.1)
            except KeyboardInterrupt:
                interrupted = True
                self._hurry.set()
        if interrupted:
            raise KeyboardInterrupt

    def _close_at_exit(self) -> None:
        with contextlib.suppress(BaseException):
            self.close()

    def _shutdown(self) -> None:
        with self._lock:
            workers = list(self.workers)
            held, self._held = self._held, []
        for worker in workers:  # on threads: a full channel to a stuck worker must not block
            threading.Thread(target=_send_stop, args=(worker,), daemon=True).start()
        stoppers = []
        for worker in workers:
            if worker.process is not None:
                grace = 0.0 if self._hurry.is_set() else STOP_GRACE_S
                t = threading.Thread(target=worker.process.stop, args=(grace, self._hurry))
                t.start()
                stoppers.append(t)
            elif worker.thread is not None:
                worker.thread.join(timeout=2)
        for t in stoppers:
            t.join()
        for worker in workers:
            _wake(worker.conn)
            worker.conn.close()
        for _, _, future in held:
            if not future.done():
                future.set_exception(WorkerDiedError("the host was closed"))
        self._fail_pending(None, "the host was closed")

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
        why = f"worker {worker.index} (pid {proc.pid}) {describe_exit(proc.returncode)}"
        if proc.reason:
            why = f"worker {worker.index} (pid {proc.pid}) was ended by the host: {proc.reason}"
        elif proc.tail:
            why += f"; its last output: {proc.tail[-1][:300]}"
        worker.gone = why
        _wake(worker.conn)
        self._fail_pending(worker, why)
        with self._lock:
            self.worker_exits.append(why)
            now = time.monotonic()
            self._restarts.append(now)
            while self._restarts and now - self._restarts[0] > RESTART_WINDOW_S:
                self._restarts.popleft()
            limit = RESTARTS_PER_PROCESS * self.processes
            if len(self._restarts) >= limit:
                self._given_up = (
                    f"{why}; not restarted: {len(self._restarts)} worker exits in "
                    f"{RESTART_WINDOW_S / 60:g} min (the Functions host stops at 3 per process)"
                )
                _say(self._given_up)
                held, self._held = self._held, []
                for _, _, future in held:
                    future.set_exception(WorkerDiedError(self._given_up))
                # Like the Functions host, recycle: stop the other workers too; a Lab then
                # starts a fresh host for its next run.
                threading.Thread(target=self._close_at_exit, daemon=True).start()
                return
            self._restarting += 1
        _say(f"{why}; starting a replacement")
        try:
            (new,) = self._launch([worker.index])
        except BaseException as exc:  # this thread's end: report, do not raise
            if self._closed:
                return
            with self._lock:
                self._restarting -= 1
                self._given_up = f"{why}; its replacement failed: {exc}"
                held, self._held = self._held, []
            _say(self._given_up)
            for _, _, future in held:
                future.set_exception(WorkerDiedError(self._given_up))
            return
        with self._lock:
            self._restarting -= 1
            if self._closed:
                new.process.kill() if new.process else None
                return
            self.workers[self.workers.index(worker)] = new
            held, self._held = self._held, []
        self._attend(new)
        for record, request, future in held:
            self._send(new, record, request, future)

    def _watch_workers(self) -> None:
        """End a worker that sits on an invocation past the function timeout (its loop is
        blocked: it cannot time the invocation out itself), as the Functions host restarts
        a worker whose invocation timed out (``RestartWorkerWithInvocationIdAsync``); and one
        whose memory, its children's included, passes ``max_worker_mb``."""
        while not self._closed:
            if self.timeout_s is not None:
                overdue = clock() - self.timeout_s - TIMEOUT_GRACE_S
                for worker, _, sent in list(self._pending.values()):
                    if sent < overdue and worker.process is not None and worker.alive():
                        worker.process.kill(
                            f"no answer {self.timeout_s:g} s + {TIMEOUT_GRACE_S:g} s after an "
                            "invocation was sent: its event loop is blocked"
                        )
            if self.max_worker_mb is not None:
                self._check_memory(self.max_worker_mb)
            time.sleep(0.2)

    def _check_memory(self, limit_mb: float) -> None:
        import psutil

        for worker in list(self.workers):
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

    # -- invocations -------------------------------------------------------------------

    def function(self, name: str) -> FunctionInfo:
        """Describe an indexed HTTP function (an error lists the known ones)."""
        infos = {n: FunctionInfo.from_description(f) for n, f in self.functions.items()}
        return find_function(infos, name)

    def invoke(
        self, function: str, request: HttpRequestFields
    ) -> Future[tuple[InvocationRecord, HttpResponseFields]]:
        """Send one invocation to the next live worker in turn; the future holds the result."""
        future: Future[tuple[InvocationRecord, HttpResponseFields]] = Future()
        if self._given_up:  # recycled after too many worker exits: fail at once, say why
            future.set_exception(WorkerDiedError(self._given_up))
            return future
        if self._closed or not self._started:
            raise RuntimeError("the host is not running")
        record = InvocationRecord(next(self._ids), function)
        with self._lock:
            worker = self._next_worker()
            if worker is None:
                if self._restarting and not self._given_up:
                    self._held.append((record, request, future))  # sent to the replacement
                else:
                    why = self._given_up or "; ".join(w.gone for w in self.workers if w.gone)
                    future.set_exception(WorkerDiedError(why or "no worker is running"))
                return future
        self._send(worker, record, request, future)
        return future

    def _next_worker(self) -> WorkerProcess | None:
        for _ in range(len(self.workers)):
            worker = self.workers[next(self._round_robin) % len(self.workers)]
            if worker.alive():
                return worker
        return None

    def _send(
        self,
        worker: WorkerProcess,
        record: InvocationRecord,
        request: HttpRequestFields,
        future: Future[Any],
    ) -> None:
        record.worker, record.pid = worker.index, worker.pid
        record.dispatched = clock()
        self._pending[record.invocation_id] = (worker, future, record.dispatched)
        try:
            with worker.send_lock:
                worker.conn.send(("invoke", record, request))
        except (OSError, ValueError) as exc:
            self._pending.pop(record.invocation_id, None)
            why = worker.gone or f"worker {worker.index} is gone: {exc}"
            if not future.done():
                future.set_exception(WorkerDiedError(why))
            return
        if worker.gone:  # it died while this was being sent: its failing may have missed it
            self._fail_pending(worker, worker.gone)

    def _receive(self, worker: WorkerProcess) -> None:
        try:
            while True:
                message = worker.conn.recv()
                if message[0] == "result":
                    record, response = message[1], message[2]
                    record.completed = clock()
                    _, future, _ = self._pending.pop(record.invocation_id, (None, None, 0))
                    if future is not None and not future.done():
                        future.set_result((record, response))
                elif message[0] == "stats":
                    self._stats.put({"worker": worker.index, **message[1]})
        except (EOFError, OSError):
            pass
        if worker.process is not None:
            return  # its exit is reported by its supervisor, with the code or signal
        if not self._closed:
            worker.gone = f"worker {worker.index} (in this process) ended"
            self._fail_pending(worker, worker.gone)

    def _fail_pending(self, worker: WorkerProcess | None, why: str) -> None:
        for invocation_id, (owner, future, _) in list(self._pending.items()):
            if worker is None or owner is worker:
                self._pending.pop(invocation_id, None)
                if not future.done():
                    with contextlib.suppress(InvalidStateError):
                        future.set_exception(WorkerDiedError(why))

    def stats(self, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        """Each worker's loop lag since the last call, CPU seconds, RSS, thread count."""
        while not self._stats.empty():  # a late reply to an earlier call
            self._stats.get_nowait()
        asked = 0
        for worker in list(self.workers):
            if not worker.alive():
                continue
            try:
                with worker.send_lock:
                    worker.conn.send(("stats",))
                asked += 1
            except (OSError, ValueError):
                pass
        replies: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while len(replies) < asked:
            try:
                replies.append(self._stats.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return sorted(replies, key=lambda r: r["worker"])


def _handshake(
    sock: socket.socket,
    key: bytes,
    pids: set[int],
    arrived: queue.Queue[tuple[int, Connection, tuple[Any, ...]]],
    slots: threading.BoundedSemaphore,
    deadline: float,
) -> None:
    """Authenticate one connection (bounded in time), then wait for its worker's ready."""
    conn: Connection | None = None
    try:
        sock.setblocking(True)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # see worker_process
        _io_timeout(sock, HANDSHAKE_TIMEOUT_S)  # the challenge reads block no longer
        conn = Connection(sock.detach())
        deliver_challenge(conn, key)
        answer_challenge(conn, key)
        if not conn.poll(HANDSHAKE_TIMEOUT_S):
            raise TimeoutError("no hello")
        kind, pid = conn.recv()
        if kind != "hello" or pid not in pids:
            raise ValueError("not a worker of this host")
        _io_timeout(socket.socket(fileno=os.dup(conn.fileno())), 0.0, close=True)
    except Exception:  # junk, a wrong key, silence: drop it, keep listening
        (conn or sock).close()
        return
    finally:
        slots.release()
    # Loading the app may take long (imports): wait for "ready" up to the start deadline.
    while not conn.poll(0.2):
        if time.monotonic() > deadline or conn.closed:
            return
    try:
        arrived.put((pid, conn, conn.recv()))
    except (EOFError, OSError):
        conn.close()


def _io_timeout(sock: socket.socket, seconds: float, close: bool = False) -> None:
    """Bound blocking reads and writes on a socket's descriptor (0: no bound)."""
    whole = int(seconds)
    value = struct.pack("ll", whole, int((seconds - whole) * 1e6))
    try:
        for option in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):
            sock.setsockopt(socket.SOL_SOCKET, option, value)
    except OSError:  # not supported here: the thread and the deadline still bound it
        pass
    finally:
        if close:
            sock.close()


def _wake(conn: Connection) -> None:
    """Make a thread blocked reading ``conn`` return (EOF), even if a child holds it open."""
    try:
        dup = socket.socket(fileno=os.dup(conn.fileno()))
    except (OSError, ValueError):
        return
    with contextlib.suppress(OSError):
        dup.shutdown(socket.SHUT_RDWR)
    dup.close()


def _send_stop(worker: WorkerProcess) -> None:
    with contextlib.suppress(OSError, ValueError), worker.send_lock:
        worker.conn.send(("stop",))


def _say(line: str) -> None:
    print(f"throughput_lab: {line}", file=sys.stderr, flush=True)

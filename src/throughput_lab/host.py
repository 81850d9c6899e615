"""The Functions host, reduced to what decides throughput: it starts the worker processes
and hands them invocations round-robin, without waiting for one to finish before sending
the next (azure-functions-host ``RpcFunctionInvocationDispatcherLoadBalancer``).

Workers are fresh interpreters (``python -m throughput_lab.worker_process``), never forks
of a multi-threaded parent such as a notebook kernel. They run in their own session, so a
terminal's or Jupyter's group-wide Ctrl-C reaches only the host, which then stops them in
order: stop message, wait, terminate, kill. A worker also exits when its channel to the
host closes, so a host killed outright leaves no worker behind.
"""

from __future__ import annotations

import atexit
import collections
import itertools
import logging
import os
import queue
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
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

log = logging.getLogger("throughput_lab")
_SRC = str(Path(__file__).resolve().parent.parent)


class WorkerDiedError(RuntimeError):
    """A worker process ended while invocations were in flight."""


@dataclass
class WorkerProcess:
    index: int
    conn: Connection
    pid: int = 0
    threads: int = 0
    process: subprocess.Popen[bytes] | None = None
    thread: threading.Thread | None = None  # the in-process worker's thread
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    stderr_tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=5))

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return self.thread is not None and self.thread.is_alive()


class Host:
    """Start ``processes`` workers for a function app and dispatch invocations to them.

    ``threads`` sets PYTHON_THREADPOOL_THREAD_COUNT for the workers; ``None`` leaves it as
    the environment has it (absent: the worker's default). ``functions`` instead of ``app``
    runs one worker on a thread of this process, for handlers defined in a notebook cell.
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
        self.capture_logs = capture_logs  # functions' logging kept on their records (serve)
        self.workers: list[WorkerProcess] = []
        self.functions: dict[str, dict[str, Any]] = {}
        self.startup_s = 0.0
        # invocation id -> (worker index, future of its result)
        self._pending: dict[
            int, tuple[int, Future[tuple[InvocationRecord, HttpResponseFields]]]
        ] = {}
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
        return env

    def start(self) -> Host:
        if self._started:
            return self
        self._started = True
        atexit.register(self.close)
        began = time.monotonic()
        try:
            if self._in_process is not None:
                self._start_in_process()
            else:
                self._start_processes()
        except BaseException:
            self.close()
            raise
        self.startup_s = time.monotonic() - began
        for worker in self.workers:
            threading.Thread(
                target=self._receive, args=(worker,), name=f"host-rx-{worker.index}", daemon=True
            ).start()
        return self

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
        self._await_ready(worker, time.monotonic() + self.start_timeout_s)

    def _start_processes(self) -> None:
        key = secrets.token_bytes(32)
        server = socket.create_server(("127.0.0.1", 0))
        server.settimeout(0.1)
        host, port = server.getsockname()[:2]
        env = self.worker_environment()
        command = [sys.executable, "-m", "throughput_lab.worker_process", "--app", str(self.app)]
        if self.timeout_s is not None:
            command += ["--timeout", str(self.timeout_s)]
        if self.capture_logs:
            command += ["--capture-logs"]
        session = (
            {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
            if sys.platform == "win32"
            else {"start_new_session": True}
        )
        processes: list[subprocess.Popen[bytes]] = []
        try:
            for _ in range(self.processes):
                proc = subprocess.Popen(
                    command, stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=env, **session
                )
                processes.append(proc)
                assert proc.stdin is not None
                proc.stdin.write(f"{host} {port} {key.hex()}\n".encode())
                proc.stdin.close()
                if self.cpu_affinity and hasattr(os, "sched_setaffinity"):
                    os.sched_setaffinity(proc.pid, self.cpu_affinity)
            deadline = time.monotonic() + self.start_timeout_s
            by_pid = {p.pid: p for p in processes}
            unclaimed = list(processes)
            while len(self.workers) < self.processes:
                self._check_deadline(deadline, unclaimed)
                try:
                    sock, _ = server.accept()
                except TimeoutError:
                    continue
                sock.setblocking(True)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # see worker_process
                conn = Connection(sock.detach())
                deliver_challenge(conn, key)
                answer_challenge(conn, key)
                worker = WorkerProcess(len(self.workers), conn)
                self.workers.append(worker)
                self._await_ready(worker, deadline)
                worker.process = by_pid.get(worker.pid)
                if worker.process in unclaimed:
                    unclaimed.remove(worker.process)
                    self._drain_stderr(worker)
        finally:
            server.close()
            for proc in processes:  # a process no worker record owns must not outlive start()
                if all(w.process is not proc for w in self.workers):
                    _stop_process(proc, grace_s=0.0)

    def _check_deadline(self, deadline: float, waiting: list[subprocess.Popen[bytes]]) -> None:
        for proc in waiting:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
                last = err.splitlines()[-1] if err else "no message"
                raise AppLoadError(f"a worker process exited with code {proc.returncode}: {last}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"workers not ready after {self.start_timeout_s:g} s")

    def _await_ready(self, worker: WorkerProcess, deadline: float) -> None:
        while not worker.conn.poll(0.1):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"worker {worker.index} not ready after {self.start_timeout_s:g} s"
                )
        kind, info = worker.conn.recv()
        if kind == "load_error":
            raise AppLoadError(info)
        worker.pid, worker.threads = info["pid"], info["threads"]
        self.functions = {f["name"]: f for f in info["functions"]}

    def _drain_stderr(self, worker: WorkerProcess) -> None:
        """Pass worker warnings on (e.g. an invalid thread setting) and keep the last lines."""
        stream = worker.process.stderr if worker.process else None
        if stream is None:
            return

        def pump() -> None:
            for raw in stream:
                line = raw.decode(errors="replace").rstrip()
                worker.stderr_tail.append(line)
                print(line, file=sys.stderr)

        threading.Thread(target=pump, name=f"host-stderr-{worker.index}", daemon=True).start()

    def close(self) -> None:
        """Stop every worker: stop message, wait, terminate, kill. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        for worker in self.workers:
            try:
                with worker.send_lock:
                    worker.conn.send(("stop",))
            except (OSError, ValueError):
                pass
        for worker in self.workers:
            if worker.process is not None:
                _stop_process(worker.process)
            elif worker.thread is not None:
                worker.thread.join(timeout=2)
            worker.conn.close()
        self._fail_pending(None, "the host was closed")

    @property
    def closed(self) -> bool:
        return self._closed

    # -- invocations -------------------------------------------------------------------

    def function(self, name: str) -> FunctionInfo:
        """Describe an indexed HTTP function (an error lists the known ones)."""
        infos = {n: FunctionInfo.from_description(f) for n, f in self.functions.items()}
        return find_function(infos, name)

    def invoke(
        self, function: str, request: HttpRequestFields
    ) -> Future[tuple[InvocationRecord, HttpResponseFields]]:
        """Send one invocation to the next worker in turn; the future holds the result."""
        if self._closed or not self._started:
            raise RuntimeError("the host is not running")
        worker = self.workers[next(self._round_robin) % len(self.workers)]
        record = InvocationRecord(next(self._ids), function, worker=worker.index, pid=worker.pid)
        future: Future[tuple[InvocationRecord, HttpResponseFields]] = Future()
        self._pending[record.invocation_id] = (worker.index, future)
        record.dispatched = clock()
        try:
            with worker.send_lock:
                worker.conn.send(("invoke", record, request))
        except (OSError, ValueError) as exc:
            self._pending.pop(record.invocation_id, None)
            future.set_exception(WorkerDiedError(f"worker {worker.index} is gone: {exc}"))
        return future

    def _receive(self, worker: WorkerProcess) -> None:
        try:
            while True:
                message = worker.conn.recv()
                if message[0] == "result":
                    record, response = message[1], message[2]
                    record.completed = clock()
                    _, future = self._pending.pop(record.invocation_id, (None, None))
                    if future is not None and not future.done():
                        future.set_result((record, response))
                elif message[0] == "stats":
                    self._stats.put({"worker": worker.index, **message[1]})
        except (EOFError, OSError):
            pass
        if not self._closed:
            tail = "; ".join(worker.stderr_tail) or "no message"
            self._fail_pending(
                worker.index, f"worker {worker.index} (pid {worker.pid}) ended: {tail}"
            )

    def _fail_pending(self, index: int | None, why: str) -> None:
        for invocation_id, (worker_index, future) in list(self._pending.items()):
            if index is None or worker_index == index:
                self._pending.pop(invocation_id, None)
                if not future.done():
                    future.set_exception(WorkerDiedError(why))

    def stats(self, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        """Each worker's loop lag since the last call, CPU seconds, RSS, thread count."""
        while not self._stats.empty():  # a late reply to an earlier call
            self._stats.get_nowait()
        for worker in self.workers:
            try:
                with worker.send_lock:
                    worker.conn.send(("stats",))
            except (OSError, ValueError):
                pass
        replies: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while len(replies) < len(self.workers):
            try:
                replies.append(self._stats.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return sorted(replies, key=lambda r: r["worker"])


def _stop_process(proc: subprocess.Popen[bytes], grace_s: float = 2.0) -> None:
    try:
        proc.wait(timeout=grace_s) if grace_s > 0 else proc.terminate()
        proc.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdin, proc.stderr):
        if stream is not None:
            stream.close()

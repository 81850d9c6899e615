"""Starting worker processes: launch, authenticate, wait until each has indexed the app.

A worker is a fresh interpreter (``python -m throughput_lab.worker_process``), never a fork
of a multi-threaded parent such as a notebook kernel. It reads the host's address and a
one-time key on its stdin, connects back, and both ends prove the key (HMAC challenge both
ways) before either unpickles anything. The listener stays open to anything on loopback,
so each connection is authenticated on a thread of its own, bounded in time: a silent,
junk or wrong-key connection is dropped and cannot hold start-up up.
"""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import secrets
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, Pipe, answer_challenge, deliver_challenge
from pathlib import Path

from .app_loader import AppLoadError, FunctionInfo
from .app_settings import THREAD_COUNT_SETTING
from .channel import Hello, LoadError, Ready
from .supervisor import SupervisedProcess, describe_exit

_SRC = str(Path(__file__).resolve().parent.parent)
HANDSHAKE_TIMEOUT_S = 2.0  # a connection to the start-up listener that stays silent is dropped
MAX_HANDSHAKES = 32  # connections being authenticated at once; more are refused

Arrival = tuple[int, Connection, object]  # pid, its channel, the first message after Hello


class WorkerStartError(AppLoadError):
    """Workers could not be started: the app's import exits, hangs or fails."""


@dataclass
class WorkerProcess:
    """The host's end of one worker: its channel, and its process (or thread, in process)."""

    index: int
    conn: Connection
    ready: Ready | None = None
    process: SupervisedProcess | None = None
    thread: threading.Thread | None = None  # the in-process worker's thread
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    gone: str = ""  # why it is no longer usable ("worker 0 (pid 12) exited with code 3")

    @property
    def pid(self) -> int:
        return self.ready.pid if self.ready else 0

    @property
    def threads(self) -> int:
        return self.ready.threads if self.ready else 0

    def alive(self) -> bool:
        if self.gone:
            return False
        if self.process is not None:
            return not self.process.has_exited()
        return self.thread is not None and self.thread.is_alive()

    @property
    def stderr_tail(self) -> collections.deque[str]:
        return self.process.tail if self.process is not None else collections.deque()

    def send(self, message: object) -> None:
        with self.send_lock:
            self.conn.send(message)


def app_settings_for_workers(
    app_settings: Mapping[str, str],
    thread_setting: int | None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """What a worker reads its app settings from: this environment (with the app's
    local.settings.json, as ``func start`` loads it), then the host's own."""
    settings = {**(os.environ if environ is None else environ), **app_settings}
    if thread_setting is not None:
        settings[THREAD_COUNT_SETTING] = str(thread_setting)
    return settings


def worker_environment(app_settings: Mapping[str, str]) -> dict[str, str]:
    """A worker process's environment: its app settings, and this package importable."""
    env = dict(app_settings)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_SRC, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"  # handler output reaches the console when printed
    return env


def accept_ready(worker: WorkerProcess, message: object) -> WorkerProcess:
    """Take a worker's first message: ``Ready``, or its ``LoadError`` raised for the host."""
    if isinstance(message, LoadError):
        raise AppLoadError(message.text)
    if not isinstance(message, Ready):
        raise WorkerStartError(f"worker {worker.index} said {type(message).__name__}, not Ready")
    worker.ready = message
    return worker


@dataclass
class Launch:
    """What every worker process of one host is started with."""

    app: Path
    env: Mapping[str, str]
    timeout_s: float | None = None
    capture_logs: bool = False
    cpu_affinity: set[int] | None = None
    start_timeout_s: float = 60.0
    on_exit: Callable[[SupervisedProcess], None] | None = None
    give_up: Callable[[], bool] = lambda: False  # the host is closing: stop waiting

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "throughput_lab.worker_process", "--app", str(self.app)]
        if self.timeout_s is not None:
            command += ["--timeout", str(self.timeout_s)]
        if self.capture_logs:
            command += ["--capture-logs"]
        return command

    def start(self, indices: list[int]) -> list[WorkerProcess]:
        """Start one worker process per index and wait until each has indexed the app.

        The key reaches each worker on its stdin only. A connection to the listener must
        prove it holds the key within HANDSHAKE_TIMEOUT_S and name a process started here.
        """
        key = secrets.token_bytes(32)
        server = socket.create_server(("127.0.0.1", 0))
        server.settimeout(0.1)
        address, port = server.getsockname()[:2]
        line = f"{address} {port} {key.hex()}\n".encode()
        by_pid: dict[int, SupervisedProcess] = {}
        ready: dict[int, WorkerProcess] = {}
        try:
            for index in indices:
                proc = SupervisedProcess(
                    self.command(), self.env, f"worker {index}", line, on_exit=self.on_exit
                )
                by_pid[proc.pid] = proc
                if self.cpu_affinity and hasattr(os, "sched_setaffinity"):
                    os.sched_setaffinity(proc.pid, self.cpu_affinity)
            waiting = dict(zip(by_pid, indices, strict=True))  # pid -> index
            self._listen(server, key, by_pid, waiting, ready)
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

    def _listen(
        self,
        server: socket.socket,
        key: bytes,
        by_pid: dict[int, SupervisedProcess],
        waiting: dict[int, int],
        ready: dict[int, WorkerProcess],
    ) -> None:
        arrived: queue.Queue[Arrival] = queue.Queue()
        handshakes = threading.BoundedSemaphore(MAX_HANDSHAKES)
        deadline = time.monotonic() + self.start_timeout_s
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
                    accept_ready(worker, message)  # a load error is raised here
            for pid in waiting:
                if by_pid[pid].has_exited():
                    raise _exited_while_loading(by_pid[pid], arrived)
            if time.monotonic() > deadline:
                raise WorkerStartError(
                    f"worker {waiting[next(iter(waiting))]} not ready after "
                    f"{self.start_timeout_s:g} s: does the app block while it is imported?"
                )
            if self.give_up():
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


def _exited_while_loading(proc: SupervisedProcess, arrived: queue.Queue[Arrival]) -> Exception:
    """Its load error if it sent one, else how it ended and its last line of output."""
    with contextlib.suppress(queue.Empty):
        _, conn, message = arrived.get(timeout=0.5)
        conn.close()
        if isinstance(message, LoadError):
            return AppLoadError(message.text)
    proc.exited.wait(1.0)
    time.sleep(0.1)  # let the output reader pass on the last lines
    last = proc.tail[-1] if proc.tail else "no message"
    return WorkerStartError(
        f"a worker process {describe_exit(proc.returncode)} while loading the app: {last}"
    )


def start_in_process(
    functions: dict[str, FunctionInfo],
    timeout_s: float | None,
    app_settings: Mapping[str, str],
    start_timeout_s: float,
) -> WorkerProcess:
    """One worker on a thread of this process, for handlers defined in a notebook cell."""
    from .worker_process import run_worker_loop, serve

    host_end, worker_end = Pipe()
    loop_main = serve(worker_end, functions, timeout_s, app_settings)
    thread = threading.Thread(
        target=run_worker_loop, args=(loop_main,), name="in-process-worker", daemon=True
    )
    worker = WorkerProcess(0, host_end, thread=thread)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not host_end.poll(0.1):
        if time.monotonic() > deadline:
            raise WorkerStartError(f"the worker was not ready after {start_timeout_s:g} s")
    return accept_ready(worker, host_end.recv())


def _handshake(
    sock: socket.socket,
    key: bytes,
    pids: set[int],
    arrived: queue.Queue[Arrival],
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
        hello = conn.recv()
        if not isinstance(hello, Hello) or hello.pid not in pids:
            raise ValueError("not a worker of this host")
        _io_timeout(socket.socket(fileno=os.dup(conn.fileno())), 0.0, close=True)
    except Exception:  # junk, a wrong key, silence: drop it, keep listening
        (conn or sock).close()
        return
    finally:
        slots.release()
    # Loading the app may take long (imports): wait for Ready up to the start deadline.
    while not conn.poll(0.2):
        if time.monotonic() > deadline or conn.closed:
            return
    try:
        arrived.put((hello.pid, conn, conn.recv()))
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

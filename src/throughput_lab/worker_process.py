"""A worker's side of the host-worker channel: receive invocations, answer with results.

Started by the host as ``python -m throughput_lab.worker_process`` (a fresh interpreter,
as ``spawn`` would, so nothing of a multi-threaded parent such as a notebook kernel is
forked). The messages, one typed kind each, are defined in ``channel``.

The worker's stdin stays open to the host: a thread waits for its end of file, which comes
when the host is gone however it went, and then ends the worker's whole process group.
That thread does not need the event loop, so a handler that blocks the loop forever
cannot keep the worker alive after its host.

Messages are read on the event loop's thread when it is told the channel is readable (a
thread on Windows, where the loop cannot watch a socket this way).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import platform
import signal
import socket
import sys
import threading
import time
from collections.abc import Coroutine, Mapping
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge
from typing import Any, NoReturn

from .app_loader import AppLoadError, FunctionInfo, load_app
from .channel import (
    Hello,
    Invoke,
    LoadError,
    Ready,
    Result,
    StatsRequest,
    Stop,
    WorkerStats,
    dispatcher,
)
from .http_streaming import HttpCoordinator, extension_base, start_web_server
from .invocation import HttpRequestFields, InvocationRecord
from .invocation_logs import capture_logs
from .worker import Worker


def _involuntary_switches() -> int:
    """Context switches the OS forced on this process so far, all its threads summed.

    getrusage(RUSAGE_SELF) sums every thread (the pool's too); /proc/PID/status, which
    psutil reads, counts the main thread only.
    """
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw)
    except ImportError:  # Windows: not reported
        return 0


def _memory() -> tuple[int, int]:
    """Resident memory now and at its peak, in bytes (0 where the OS does not say)."""
    rss = peak = 0
    try:
        import psutil

        rss = int(psutil.Process().memory_info().rss)
    except Exception:  # psutil missing or not permitted: report nothing rather than fail
        pass
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = peak if sys.platform == "darwin" else peak * 1024
    except ImportError:  # Windows
        pass
    return rss, peak


class Session:
    """One worker's side of the channel: each message kind the host sends, one handler."""

    def __init__(self, conn: Connection, worker: Worker, loop: asyncio.AbstractEventLoop) -> None:
        self.conn, self.worker, self.loop = conn, worker, loop
        self.stopped = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        # Which worker model ran: the interpreter and the loop (uvloop on 3.13+).
        self.python, self.event_loop = platform.python_version(), event_loop_name(loop)
        self.dispatch = dispatcher(
            {Invoke: self.on_invoke, StatsRequest: self.on_stats, Stop: self.on_stop}
        )

    def ready(
        self, functions: dict[str, FunctionInfo], app_load_s: float = 0.0, http_uri: str = ""
    ) -> Ready:
        return Ready(
            pid=os.getpid(),
            threads=self.worker.threads,
            functions=tuple(f.describe() for f in functions.values()),
            python=self.python,
            event_loop=self.event_loop,
            http_uri=http_uri,
            app_load_s=app_load_s,
        )

    def on_invoke(self, message: Invoke) -> None:
        task = self.loop.create_task(self.run(message.record, message.request))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run(self, record: InvocationRecord, request: HttpRequestFields) -> None:
        try:
            response = await self.worker.invoke(record, request)
        except SystemExit as exc:  # uvloop (3.13+) does not stop its loop for it, asyncio does
            exit_for(exc)
        record.pid, record.status = os.getpid(), response.status
        if response.status >= 400 and not record.error:  # the function's own error response
            record.error = f"HTTP {response.status}: {response.body[:200].decode(errors='replace')}"
        self.conn.send(Result(record, response))

    def on_stats(self, _: StatsRequest) -> None:
        rss, peak = _memory()
        self.conn.send(
            WorkerStats(
                pid=os.getpid(),
                max_loop_lag_ms=self.worker.lag.reset() * 1e3,
                executor_peak=self.worker.default_executor.reset_peak(),
                loop_cpu_s=time.thread_time(),  # this runs on the loop's thread: its CPU
                cpu_s=time.process_time(),
                rss_bytes=rss,
                peak_rss_bytes=peak,
                threads=threading.active_count(),
                involuntary_switches=_involuntary_switches(),
                python=self.python,
                event_loop=self.event_loop,
            )
        )

    def on_stop(self, _: Stop) -> None:
        self.stopped.set()

    def receive_ready(self) -> None:
        """The channel is readable: handle every message waiting (on the loop's thread)."""
        try:
            while self.conn.poll():
                self.dispatch(self.conn.recv())
        except (EOFError, OSError):  # the host closed the channel or died
            self.loop.remove_reader(self.conn.fileno())
            self.stopped.set()

    def receive_on_thread(self) -> None:
        """Windows' proactor loop cannot watch a socket: a thread reads, the loop handles."""
        try:
            while True:
                self.loop.call_soon_threadsafe(self.dispatch, self.conn.recv())
        except (EOFError, OSError):
            pass
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self.loop.call_soon_threadsafe(self.stopped.set)


async def serve(
    conn: Connection,
    functions: dict[str, FunctionInfo],
    timeout_s: float | None,
    app_settings: Mapping[str, str] = os.environ,
    http_streaming: bool = False,
    app_load_s: float = 0.0,
) -> None:
    """Run invocations from ``conn`` until the host says stop or goes away.

    ``http_streaming``: a worker process of an app folder streams HTTP when the app imported
    a web extension; handlers from a notebook cell (a worker on a thread) never do."""
    loop = asyncio.get_running_loop()
    worker = Worker(functions, timeout_s, app_settings)
    worker.lag.start()
    session = Session(conn, worker, loop)
    http_uri = ""
    base = extension_base() if http_streaming else None
    if base is not None:  # the app imported a web extension: HTTP streaming, as the worker
        coordinator = HttpCoordinator()
        http_uri = await start_web_server(base, coordinator)
        worker.streaming = (base, coordinator)
    conn.send(session.ready(functions, app_load_s, http_uri))
    try:
        # Reading on the loop's own thread avoids a GIL hand-off for every message.
        loop.add_reader(conn.fileno(), session.receive_ready)
        # uvloop (libuv's uv_poll_init) makes the socket non-blocking; the channel reads and
        # writes whole messages, and one larger than the socket's buffer (a blob's bytes)
        # would then fail half-read with BlockingIOError and end the worker.
        os.set_blocking(conn.fileno(), True)
    except NotImplementedError:  # Windows' proactor loop: a thread, like the worker's gRPC one
        threading.Thread(target=session.receive_on_thread, name="host-channel", daemon=True).start()
    try:
        await session.stopped.wait()
    finally:
        for task in session.tasks:
            task.cancel()
        worker.close()


def connect_to_host(host: str, port: int, key: bytes) -> Connection:
    """An authenticated channel to the host over loopback TCP."""
    sock = socket.create_connection((host, port))
    # Small messages both ways: without this, Nagle + delayed ACK add ~40 ms stalls.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = Connection(sock.detach())
    answer_challenge(conn, key)
    deliver_challenge(conn, key)
    return conn


def new_worker_loop() -> asyncio.AbstractEventLoop:
    """The event loop the real worker runs for this Python version.

    From Python 3.13 the worker is a thin proxy that sets uvloop's event loop policy when
    uvloop imports, and keeps asyncio's loop when it does not (no uvloop on Windows):
    azure-functions-python-worker ``workers/proxy_worker/start_worker.py``. Below 3.13 the
    worker runs asyncio's own loop.
    """
    if sys.version_info >= (3, 13):
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def event_loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """'uvloop' or 'asyncio': the package whose loop runs the invocations."""
    return type(loop).__module__.split(".")[0]


def lookup_threads() -> tuple[str, int]:
    """Where the worker's loop runs a host-name lookup on this Python: measured, not assumed.

    One ``loop.getaddrinfo("localhost")`` on a fresh loop of the worker's kind, on a thread
    of its own (a notebook's thread already runs a loop), counting the Python threads it
    started. asyncio hands the lookup to the loop's default executor, a Python
    ``ThreadPoolExecutor`` (CPython ``Lib/asyncio/base_events.py``: ``getaddrinfo`` calls
    ``run_in_executor(None, ...)``); uvloop hands it to libuv's own thread pool, 4 threads
    unless ``UV_THREADPOOL_SIZE`` says otherwise, which Python does not list (libuv's
    "Thread pool work scheduling"). Returns the loop's name and the new Python threads.
    """
    found: list[tuple[str, int]] = []

    def probe() -> None:
        loop = new_worker_loop()
        before = set(threading.enumerate())
        try:
            loop.run_until_complete(loop.getaddrinfo("localhost", None))
            found.append((event_loop_name(loop), len(set(threading.enumerate()) - before)))
        finally:
            loop.close()

    thread = threading.Thread(target=probe, name="lookup-probe")
    thread.start()
    thread.join()
    return found[0]


def run_worker_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run a worker's loop to the end without waiting for threads stuck in user code.

    ``asyncio.run`` would join the default executor's threads; ``loop.close()`` does not.
    """
    loop = new_worker_loop()
    try:
        loop.run_until_complete(main)
    finally:
        loop.close()


def watch_host(stream: Any = None) -> None:
    """End this worker's process group once the host is gone (EOF on stdin), on a thread."""

    def watch() -> None:
        source = stream if stream is not None else sys.stdin.buffer
        with contextlib.suppress(OSError, ValueError):
            while source.read(4096):
                pass
        leave(1)

    threading.Thread(target=watch, name="host-watch", daemon=True).start()


def leave(code: int) -> None:
    """Exit now, and end every process a handler started (this worker leads its group)."""
    if hasattr(os, "killpg") and os.getpgrp() == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)  # this process included
    os._exit(code)


def exit_for(exc: SystemExit) -> NoReturn:
    """A function called sys.exit(): the worker process ends with its code, as in Azure."""
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    print(f"a function called sys.exit({exc.code!r}): the worker process exits", flush=True)
    os._exit(code)  # the host reports the code, then ends the group


def main(argv: list[str] | None = None) -> None:
    # The host stops workers in order; a terminal's Ctrl-C is the host's to handle.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="worker %(process)d: %(message)s")
    parser = argparse.ArgumentParser()
    parser.add_argument("--app", required=True)
    parser.add_argument("--timeout", type=float, default=None)
    parser.add_argument("--capture-logs", action="store_true")
    args = parser.parse_args(argv)
    if args.capture_logs:
        capture_logs()
    stdin = sys.stdin.buffer
    host, port, key = stdin.readline().decode().split()
    watch_host(stdin)
    conn = connect_to_host(host, int(port), bytes.fromhex(key))
    conn.send(Hello(os.getpid()))
    began = time.perf_counter()
    try:
        functions = load_app(args.app)  # the app's imports: a cold start's share the app owns
    except AppLoadError as exc:
        conn.send(LoadError(str(exc)))
        conn.close()
        os._exit(0)
    try:
        loaded_s = time.perf_counter() - began
        run_worker_loop(
            serve(conn, functions, args.timeout, app_load_s=loaded_s, http_streaming=True)
        )
    except SystemExit as exc:
        exit_for(exc)
    # Stopped, or the channel closed (the host may be gone: no one else would end the group).
    # os._exit: pool threads may still be blocked in user code (requests.get, time.sleep),
    # and a normal interpreter exit would wait for them.
    leave(0)


if __name__ == "__main__":
    main()

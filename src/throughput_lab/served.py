"""A function app served over real HTTP on 127.0.0.1 for as long as a ``with`` block lasts.

``served_locally`` runs ``python -m throughput_lab serve`` (each HTTP function at
``/api/<route>``, like ``func start``) on a free port, waits until it answers, yields its
base URL, then stops it as Ctrl-C stops it in a terminal: it stops its workers first.
It is kept as the workers are (``supervisor.SupervisedProcess``): in a session of its own,
so a notebook's interrupt reaches only the kernel, which then stops it in order; and,
like a worker, it ends when its stdin reaches end of file, that is when the process that
started it is gone however it went (a kernel restarted or killed outright).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from .supervisor import StopStep, SupervisedProcess, answers, free_port
from .worker_start import worker_environment

# ``python -m throughput_lab serve ARGS`` with the workers' watch on stdin in front. It
# reads stdin unbuffered: a thread blocked in sys.stdin's buffer would hold its lock, and
# the interpreter's exit would then abort on it.
_SERVE = (
    "import sys; from throughput_lab.worker_process import watch_host;"
    " watch_host(open(0, 'rb', buffering=0, closefd=False));"
    " from throughput_lab.cli import main; sys.exit(main(['serve', *sys.argv[1:]]))"
)
# Ctrl-C, as in a terminal: serve stops its workers in order, within the CLI's stop limit.
STOP_STEPS: tuple[StopStep, ...] = ((signal.SIGINT, 20.0),)
OUTPUT_LINES = 20  # of serve's output, kept for the error when it stops before answering


def start_serve(
    app: str | Path,
    port: int,
    processes: int = 1,
    threads: int | None = None,
    upstream_delay_ms: float = 100.0,
    on_exit: Callable[[SupervisedProcess], None] | None = None,
) -> SupervisedProcess:
    """Start ``serve`` for ``app`` on ``port`` (it answers once its workers are ready)."""
    args = ["--app", str(app), "--port", str(port), "--processes", str(processes)]
    if threads is not None:
        args += ["--threads", str(threads)]
    args += ["--upstream-delay-ms", str(upstream_delay_ms)]
    return SupervisedProcess(
        [sys.executable, "-c", _SERVE, *args],
        worker_environment(os.environ),  # the same throughput_lab as this one
        "serve",
        on_exit=on_exit,
        echo=False,  # a line per request: shown only if it stops before answering
        tail_lines=OUTPUT_LINES,
        stop_steps=STOP_STEPS,
    )


@contextlib.contextmanager
def served_locally(
    app: str | Path,
    processes: int = 1,
    threads: int | None = None,
    upstream_delay_ms: float = 100.0,
    start_timeout_s: float = 60.0,
) -> Iterator[str]:
    """The app over HTTP on 127.0.0.1, stopped (with its workers) when the block ends.

    Yields the base URL, e.g. ``http://127.0.0.1:54321``; a function is at
    ``{base}/api/<route>``. ``processes`` and ``threads`` are
    FUNCTIONS_WORKER_PROCESS_COUNT and PYTHON_THREADPOOL_THREAD_COUNT (``None``: the
    worker's default); ``upstream_delay_ms`` is how long UPSTREAM_URL takes to answer.
    """
    port = free_port()
    server = start_serve(app, port, processes, threads, upstream_delay_ms)
    try:
        late = f"serve did not start within {start_timeout_s:g} s"
        if not server.wait_ready(lambda: answers(port, 1.0), start_timeout_s, late):
            raise RuntimeError(f"serve stopped: {server.last_output(OUTPUT_LINES)}")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()

"""Process-level care of one child process, as a process supervisor gives it.

Every process the lab starts and must not leave behind is kept here: the worker processes
(host.py), Azurite (azurite.py), Locust (locust_export.py) and a served app (served.py).
A worker runs handler code the engine does not control: it may start children (with or
without the worker's stdio), fork, print megabytes, block its event loop, or die. So:

- each kept process leads a session (and process group) of its own, so a terminal's or
  Jupyter's Ctrl-C reaches only its keeper, which then stops it in order; everything in
  that group is killed with it, children of handlers included;
- its exit is waited for without reaping it first (``waitid(WNOWAIT)``), so the group is
  killed while the process's PID, hence the group's ID, cannot yet be reused;
- its stdout and stderr share one pipe (or stdout is discarded), read by a thread that
  keeps the last lines and, for a worker, tags each line and writes it to this process's
  stderr (never its stdout, which may carry JSON); nothing ever closes that pipe under the
  reader, so a grandchild holding it blocks no one;
- its stdin stays open: a worker (and Azurite, and serve, behind a guard) watches it and
  ends its group when it reaches end of file, that is when this process is gone, even if
  killed outright;
- it is stopped in steps: the caller's own stop request and grace, then the process's stop
  steps (close its stdin, or signal its group, each followed by a wait), then SIGKILL to
  the group; interrupted meanwhile (a second Ctrl-C), it kills the group at once.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

POSIX = sys.platform != "win32"
LINE_LIMIT = 2000  # characters of one output line passed on; the rest is counted, not shown
POLL_S = 0.05  # waits are sliced so a signal for the main thread (Ctrl-C) is handled soon

CLOSE_STDIN: Literal["close stdin"] = "close stdin"
# One stop step: close the process's stdin, or send a signal to its group; then wait.
StopStep = tuple[Literal["close stdin"] | signal.Signals, float]
# A worker has had its stop message: EOF on stdin ends its group, SIGTERM its handlers.
WORKER_STOP: tuple[StopStep, ...] = ((CLOSE_STDIN, 0.5), (signal.SIGTERM, 1.0))


def describe_exit(returncode: int | None) -> str:
    """``exited with code 3`` or ``was killed by signal 11 (SIGSEGV)``."""
    if returncode is None:
        return "is still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown"
        return f"was killed by signal {-returncode} ({name})"
    return f"exited with code {returncode}"


def free_port() -> int:
    """A port free on 127.0.0.1 now; another process may still take it before it is bound."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(port: int, timeout_s: float = 0.2) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s):
            return True
    except OSError:
        return False


class SupervisedProcess:
    """A child process in its own session, its output read, its exit watched.

    ``echo`` passes each output line on to this process's stderr, tagged; without it only
    the last ``tail_lines`` are kept, for an error message. ``on_line`` gets every line
    too, on the reading thread (a child that reports to its keeper on stdout).
    ``read_stdout=False`` discards stdout and reads stderr alone. ``stop_steps`` are what
    ``stop`` tries before the kill.
    """

    def __init__(
        self,
        command: Sequence[str],
        env: Mapping[str, str] | None,
        tag: str,
        first_line: bytes = b"",
        on_exit: Callable[[SupervisedProcess], None] | None = None,
        *,
        cwd: str | None = None,
        echo: bool = True,
        read_stdout: bool = True,
        tail_lines: int = 5,
        stop_steps: Sequence[StopStep] = WORKER_STOP,
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        self.tag = tag
        self._on_line = on_line
        self.tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
        self.exited = threading.Event()
        self.output_ended = threading.Event()
        self.returncode: int | None = None
        self.reason = ""  # why the host ended it, if it did (e.g. a memory limit)
        self._echo = echo
        self._stop_steps = tuple(stop_steps)
        self._signal_lock = threading.Lock()
        self._on_exit = on_exit
        session = (
            {"start_new_session": True}
            if POSIX
            else {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
        )
        self.popen = subprocess.Popen(
            list(command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE if read_stdout else subprocess.DEVNULL,
            stderr=subprocess.STDOUT if read_stdout else subprocess.PIPE,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            **session,
        )
        self.pid = self.popen.pid
        output = self.popen.stdout if read_stdout else self.popen.stderr
        assert self.popen.stdin is not None and output is not None
        self._output = output
        # Hand it its first line and keep its stdin open: EOF there is its keeper's death.
        if first_line:
            with contextlib.suppress(OSError):
                self.popen.stdin.write(first_line)
                self.popen.stdin.flush()
        threading.Thread(target=self._pump, name=f"{tag}-output", daemon=True).start()
        threading.Thread(target=self._watch, name=f"{tag}-exit", daemon=True).start()

    # -- output ------------------------------------------------------------------------

    def _pump(self) -> None:
        """Read the output a line at a time: keep the last lines, pass them on if echoing."""
        fd = self._output.fileno()
        pending = b""
        cut = 0  # bytes dropped from the current over-long line
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._emit(line, cut)
                cut = 0
            if len(pending) > LINE_LIMIT:  # a line without end (e.g. 10 MB of "x")
                cut += len(pending) - LINE_LIMIT
                pending = pending[:LINE_LIMIT]
        if pending or cut:
            self._emit(pending, cut)
        with contextlib.suppress(OSError):
            self._output.close()  # only this thread ever reads or closes it
        self.output_ended.set()

    def _emit(self, raw: bytes, cut: int) -> None:
        line = raw.decode(errors="replace").rstrip("\r")
        if cut:
            line += f" ... ({cut} more bytes on this line not shown)"
        self.tail.append(line)
        if self._on_line is not None:
            self._on_line(line)
        if self._echo:
            with contextlib.suppress(Exception):  # a closed console must not kill the reader
                print(f"[{self.tag}] {line}", file=sys.stderr, flush=True)

    def last_output(self, lines: int = 1, wait_s: float = 1.0) -> str:
        """Its last ``lines`` non-blank lines of output, once its output has ended.

        Waits at most ``wait_s`` for that end: a grandchild may hold the pipe open.
        """
        self.output_ended.wait(wait_s)
        kept = [line for line in list(self.tail) if line.strip()]
        return "\n".join(kept[-lines:]).strip()

    # -- exit --------------------------------------------------------------------------

    def has_exited(self) -> bool:
        return self.exited.is_set()

    def _watch(self) -> None:
        """Wait for the process to end, end its group with it, then reap it."""
        if POSIX and hasattr(os, "waitid"):
            while True:
                try:  # WNOWAIT: leave it a zombie, so its PID (the group's ID) stays taken
                    os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
                    break
                except InterruptedError:
                    continue
                except ChildProcessError:
                    break
        else:
            self.popen.wait()
        with self._signal_lock:
            self._signal_group(signal.SIGKILL if POSIX else signal.SIGTERM)
            self.returncode = self.popen.wait()
        with contextlib.suppress(OSError):
            assert self.popen.stdin is not None
            self.popen.stdin.close()
        self.exited.set()
        if self._on_exit is not None:
            self._on_exit(self)

    def _signal_group(self, sig: int) -> None:
        if POSIX:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)
        else:
            with contextlib.suppress(OSError):
                self.popen.kill()

    def signal_group(self, sig: int) -> None:
        """Signal the process and everything in its group, unless it has been reaped."""
        with self._signal_lock:
            if self.returncode is None:
                self._signal_group(sig)

    def kill(self, reason: str = "") -> None:
        self.reason = self.reason or reason
        self.signal_group(signal.SIGKILL if POSIX else signal.SIGTERM)

    def close_stdin(self) -> None:
        """Its cue that its keeper is gone: a worker's watcher (Azurite's guard) ends it."""
        with self._signal_lock, contextlib.suppress(OSError):
            assert self.popen.stdin is not None
            self.popen.stdin.close()

    def stop(self, grace_s: float = 0.0, hurry: threading.Event | None = None) -> None:
        """Wait ``grace_s`` (after a stop message, if the caller sent one), take the stop
        steps, then kill the group; ``hurry`` skips what is left of each wait."""
        try:
            if self.wait(grace_s, hurry):
                return
            for action, wait_s in self._stop_steps:
                if action == CLOSE_STDIN:
                    self.close_stdin()
                elif POSIX:  # Windows has no group to signal: the kill below ends it
                    self.signal_group(action)
                if self.wait(wait_s, hurry):
                    return
        finally:  # also when interrupted: a second Ctrl-C must not leave it running
            if not self.exited.is_set():
                self.kill()
                self.exited.wait(5.0)

    def wait(self, timeout_s: float, hurry: threading.Event | None = None) -> bool:
        """Whether it exited within ``timeout_s``; False as soon as ``hurry`` is set."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.exited.wait(min(POLL_S, max(0.0, deadline - time.monotonic()))):
                return True
            if hurry is not None and hurry.is_set():
                return False
        return self.exited.is_set()

    def wait_ready(self, ready: Callable[[], bool], timeout_s: float, late: str) -> bool:
        """Whether ``ready()`` came true before the process exited; ``TimeoutError(late)``
        if neither happened within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not self.exited.is_set():
            if ready():
                return True
            if time.monotonic() > deadline:
                raise TimeoutError(late)
            time.sleep(POLL_S)
        return False

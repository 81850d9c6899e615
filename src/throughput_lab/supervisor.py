"""Process-level care of one worker process, as a process supervisor gives it.

The worker runs handler code the engine does not control: it may start children (with or
without the worker's stdio), fork, print megabytes, block its event loop, or die. So:

- each worker leads a session (and process group) of its own; everything in that group is
  killed with it, children of handlers included;
- its exit is waited for without reaping it first (``waitid(WNOWAIT)``), so the group is
  killed while the worker's PID, hence the group's ID, cannot yet be reused;
- its stdout and stderr share one pipe, read by a thread that tags each line with the
  worker and writes it to this process's stderr (never its stdout, which may carry JSON);
  nothing ever closes that pipe under the reader, so a grandchild holding it blocks no one;
- its stdin stays open: the worker watches it on a thread of its own and kills its group
  when it reaches end of file, that is when this process is gone, even if killed outright.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence

POSIX = sys.platform != "win32"
LINE_LIMIT = 2000  # characters of one output line passed on; the rest is counted, not shown


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


class SupervisedProcess:
    """A worker process in its own session, its output tagged, its exit watched."""

    def __init__(
        self,
        command: Sequence[str],
        env: Mapping[str, str],
        tag: str,
        first_line: bytes,
        on_exit: collections.abc.Callable[[SupervisedProcess], None] | None = None,
    ) -> None:
        self.tag = tag
        self.tail: collections.deque[str] = collections.deque(maxlen=5)
        self.exited = threading.Event()
        self.returncode: int | None = None
        self.reason = ""  # why the host ended it, if it did (e.g. a memory limit)
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
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(env),
            **session,
        )
        self.pid = self.popen.pid
        assert self.popen.stdin is not None and self.popen.stdout is not None
        # Hand the worker its first line and keep its stdin open: EOF there is host death.
        with contextlib.suppress(OSError):
            self.popen.stdin.write(first_line)
            self.popen.stdin.flush()
        threading.Thread(target=self._pump, name=f"{tag}-output", daemon=True).start()
        threading.Thread(target=self._watch, name=f"{tag}-exit", daemon=True).start()

    # -- output ------------------------------------------------------------------------

    def _pump(self) -> None:
        """Pass the worker's output on, a line at a time, tagged; keep the last lines."""
        assert self.popen.stdout is not None
        fd = self.popen.stdout.fileno()
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
            self.popen.stdout.close()  # only this thread ever reads or closes it

    def _emit(self, raw: bytes, cut: int) -> None:
        line = raw.decode(errors="replace").rstrip("\r")
        if cut:
            line += f" ... ({cut} more bytes on this line not shown)"
        self.tail.append(line)
        with contextlib.suppress(Exception):  # a closed console must not kill the reader
            print(f"[{self.tag}] {line}", file=sys.stderr, flush=True)

    # -- exit --------------------------------------------------------------------------

    def has_exited(self) -> bool:
        return self.exited.is_set()

    def _watch(self) -> None:
        """Wait for the worker to end, end its group with it, then reap it."""
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
        """Signal the worker and everything in its group, unless it has been reaped."""
        with self._signal_lock:
            if self.returncode is None:
                self._signal_group(sig)

    def kill(self, reason: str = "") -> None:
        self.reason = self.reason or reason
        self.signal_group(signal.SIGKILL if POSIX else signal.SIGTERM)

    def close_stdin(self) -> None:
        """The worker's cue that the host is gone: its watcher ends its group."""
        with self._signal_lock, contextlib.suppress(OSError):
            assert self.popen.stdin is not None
            self.popen.stdin.close()

    def stop(self, grace_s: float, hurry: threading.Event | None = None) -> None:
        """After a stop message: wait ``grace_s``, close stdin, terminate, kill the group."""
        steps = ((grace_s, None), (0.5, "stdin"), (1.0, signal.SIGTERM))
        for wait_s, action in steps:
            if action == "stdin":
                self.close_stdin()
            elif action is not None and POSIX:
                self.signal_group(action)
            if self._wait(wait_s, hurry):
                return
        self.kill()
        self.exited.wait(5.0)

    def _wait(self, seconds: float, hurry: threading.Event | None) -> bool:
        step = 0.05
        waited = 0.0
        while waited < seconds:
            if self.exited.wait(step):
                return True
            if hurry is not None and hurry.is_set():
                return False
            waited += step
        return self.exited.is_set()

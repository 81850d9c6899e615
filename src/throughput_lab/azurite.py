"""Azurite, the Azure Storage emulator Core Tools uses locally, as a process the lab owns.

Locally a queue- or blob-triggered app runs against Azurite (``AzureWebJobsStorage`` set to
``UseDevelopmentStorage=true``; Learn: "Use Azurite emulator for local Azure Storage
development"). The lab starts only the service it needs (``azurite-queue`` for queue
triggers, ``azurite-blob`` for blob triggers and bindings) on 127.0.0.1, on a free port,
with its data in memory (its working folder a temporary one), and stops it with the lab: on
close, on an error, on Ctrl-C (it runs in its own session, so a terminal's Ctrl-C reaches
only the lab, which then stops it), at interpreter exit, and when the lab's process ends
any other way (it exits when its stdin from the lab closes).
The process is kept as the workers are (``supervisor.SupervisedProcess``).

The npm package is installed by ``make`` into ``.azurite/`` (pinned there, with its lock
file); nothing is downloaded at run time. ``AZURITE_QUEUE`` (``AZURITE_BLOB``) may name
another executable.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile
from pathlib import Path

import psutil

from .learner_errors import LearnerError
from .supervisor import CLOSE_STDIN, StopStep, SupervisedProcess, answers, free_port

# The well-known development account every Storage SDK and Azurite share (public, not a
# secret: Learn "Use the Azurite emulator", connection strings).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
_ROOT = Path(__file__).resolve().parent.parent.parent
EXECUTABLE_SETTING = "AZURITE_QUEUE"  # for the queue service; AZURITE_BLOB for blobs
SERVICES = ("queue", "blob")


# Node runs Azurite's entry point behind a guard: when the lab's end of stdin closes (the
# lab exited, however it ended: even SIGKILL), Azurite exits too, as the workers do.
_GUARD = (
    "process.stdin.on('end', () => process.exit(0)); process.stdin.resume();"
    " require(require('path').resolve(process.argv[1]));"
)
# Its stdin closed, the guard ends it; SIGTERM, then the kill, if that did not.
STOP_STEPS: tuple[StopStep, ...] = ((CLOSE_STDIN, 0.0), (signal.SIGTERM, 3.0))


class AzuriteNotFoundError(LearnerError, RuntimeError):
    """No azurite-queue (azurite-blob) executable: say how to get one."""


def find_executable(service: str = "queue") -> str:
    """``$AZURITE_QUEUE`` (``$AZURITE_BLOB``), else the one ``make`` installed in
    ``.azurite/``, else PATH."""
    name = f"azurite-{service}"
    candidates = [
        os.environ.get(f"AZURITE_{service.upper()}", ""),
        str(_ROOT / ".azurite" / "node_modules" / ".bin" / name),
        shutil.which(name) or "",
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise AzuriteNotFoundError(
        "Azurite (the storage emulator for queue and blob triggers) is not installed: run "
        "`make lab` or `make test`, which install it into .azurite/ with npm (Node.js 18 or "
        f"newer), or set AZURITE_{service.upper()} to an {name} executable"
    )


def _launcher(executable: str) -> list[str]:
    """``node -e GUARD main.js`` for the npm-installed script, else the executable itself."""
    script = os.path.realpath(executable)
    node = shutil.which("node")
    if node and script.endswith(".js"):
        return [node, "-e", _GUARD, script]
    return [executable]


class Azurite:
    """One service of Azurite (queue or blob) on 127.0.0.1; a context manager."""

    def __init__(self, start_timeout_s: float = 30.0, service: str = "queue") -> None:
        if service not in SERVICES:
            raise ValueError(f"Azurite service must be one of {SERVICES}, got {service!r}")
        self.service = service
        self.start_timeout_s = start_timeout_s
        self.port = 0
        self.process: SupervisedProcess | None = None
        self._data: tempfile.TemporaryDirectory[str] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def queue_endpoint(self) -> str:
        return self.endpoint

    @property
    def connection_string(self) -> str:
        """What ``UseDevelopmentStorage=true`` means, with this instance's port."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"{self.service.capitalize()}Endpoint={self.endpoint};"
        )

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> Azurite:
        if self.process is not None:
            return self
        executable = find_executable(self.service)
        self._data = tempfile.TemporaryDirectory(prefix="throughput-lab-azurite-")
        atexit.register(self.close)
        try:
            # A port taken between choosing and binding makes Azurite exit: try another.
            for _ in range(3):
                self.port = free_port()
                self.process = SupervisedProcess(
                    self._command(executable),
                    None,
                    "azurite",
                    cwd=self._data.name,  # anything it writes goes there and is removed
                    echo=False,  # quiet; its last words make the error below
                    read_stdout=False,
                    stop_steps=STOP_STEPS,
                )
                if self.process.wait_ready(
                    lambda: answers(self.port),
                    self.start_timeout_s,
                    f"Azurite not listening after {self.start_timeout_s:g} s",
                ):
                    return self
        except BaseException:
            self.close()
            raise
        err = self._stop()
        self.close()
        raise RuntimeError(f"Azurite did not start: {err or 'no message'}")

    def _command(self, executable: str) -> list[str]:
        return [
            *_launcher(executable),
            f"--{self.service}Host",
            "127.0.0.1",
            f"--{self.service}Port",
            str(self.port),
            "--silent",
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--disableTelemetry",
        ]

    def _stop(self) -> str:
        """Stop the process (and its group); return the last line it wrote on stderr."""
        proc, self.process = self.process, None
        if proc is None:
            return ""
        proc.stop()
        return proc.last_output()

    def close(self) -> None:
        """Stop Azurite and remove its data. Safe to call twice."""
        atexit.unregister(self.close)
        self._stop()
        if self._data is not None:
            self._data.cleanup()
            self._data = None

    def cpu_s(self) -> float:
        """CPU seconds Azurite has used so far (0 when not running): the lab's cost."""
        if self.process is None:
            return 0.0
        try:
            times = psutil.Process(self.process.pid).cpu_times()
        except psutil.Error:
            return 0.0
        return times.user + times.system

    @property
    def running(self) -> bool:
        return self.process is not None and not self.process.has_exited()

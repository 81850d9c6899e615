"""Shared fixtures: the engine's test app, and a guard that no worker outlives a test module."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from pathlib import Path

import psutil
import pytest

TESTS = Path(__file__).resolve().parent
APPS = TESTS / "apps"
ENGINE_APP = APPS / "engine_app"
REPO = TESTS.parent
SAMPLE_APP = REPO / "sample_functions"

# A shell that runs the tests as a background job starts them with SIGINT ignored, and every
# process they start would inherit that; the tests press Ctrl-C as a terminal would, so the
# CLIs they start must hear it. (A handler is not inherited across exec: the default is.)
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Every process this test session starts inherits the mark, so a worker of ours can be told
# from one of another test run on the same machine, even after its parent is gone.
MARK = "THROUGHPUT_LAB_TEST_SESSION"
os.environ[MARK] = uuid.uuid4().hex


def session_processes(
    matches: Callable[[list[str]], bool], *, zombies: bool = True
) -> list[psutil.Process]:
    """Processes started by this test session whose command line ``matches``."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if not matches(proc.info.get("cmdline") or []):
            continue
        try:
            if proc.environ().get(MARK) == os.environ[MARK] and (
                zombies or proc.status() != psutil.STATUS_ZOMBIE
            ):
                found.append(proc)
        except psutil.Error:  # gone meanwhile, or not ours to read
            pass
    return found


def azurite_processes() -> list[psutil.Process]:
    """Azurite queue services started by this test session, zombies left out."""
    return session_processes(
        lambda cmdline: "azurite" in " ".join(cmdline) and "queue" in " ".join(cmdline),
        zombies=False,
    )


def wait_gone(
    find: Callable[[], list[psutil.Process]], before: AbstractSet[int], timeout_s: float = 10.0
) -> list[psutil.Process]:
    """What ``find`` still lists beyond ``before``, once they had ``timeout_s`` to stop."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = [p for p in find() if p.pid not in before]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def worker_processes() -> list[psutil.Process]:
    """Worker processes started by this test session (they run in sessions of their own)."""
    return session_processes(lambda cmdline: "throughput_lab.worker_process" in cmdline)


def wait_no_workers(before: set[int], timeout_s: float = 10.0) -> list[psutil.Process]:
    return wait_gone(worker_processes, before, timeout_s)


@pytest.fixture
def summary(record_property: Callable[[str, object], None]) -> Callable[[str], None]:
    """Add a line to the run's closing summary (notebook timings, cross-checks).

    Kept on the test's report, so it reaches the summary from a pytest-xdist worker too,
    and is shown without ``-s``, whatever the test's outcome."""
    return lambda line: record_property(SUMMARY, line)


SUMMARY = "summary"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = [
        value
        for reports in terminalreporter.stats.values()
        for report in reports
        if getattr(report, "when", None) == "call"
        for name, value in getattr(report, "user_properties", ())
        if name == SUMMARY
    ]
    if lines:
        terminalreporter.section("measured")
        for line in sorted(lines):
            terminalreporter.write_line(str(line))


@pytest.fixture(autouse=True, scope="module")
def no_orphan_workers():
    before = {p.pid for p in worker_processes()}
    yield
    left = wait_no_workers(before)
    assert not left, f"worker processes left behind: {[p.pid for p in left]}"

"""Shared fixtures: the engine's test app, and a guard that no worker outlives a test module."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

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


# -- solo: the tests that need the machine's cores to themselves ----------------------------
# `make test` runs the rest on two pytest-xdist workers (--solo=exclude), then these in one
# process (--solo=only): beside the other worker's tests they would find too few cores free
# to show what they measure, and skip. Plain `pytest` runs every test (--solo=include).
SOLO = "solo"
SET_APART = pytest.StashKey[int]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--solo",
        choices=("include", "exclude", "only"),
        default="include",
        help="tests marked solo: run them with the rest (include), leave them out (exclude: "
        "make test's parallel phase), or run only them (only: its serial phase)",
    )


@pytest.hookimpl(trylast=True)  # after -k and -m have chosen
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    which = config.getoption("solo")
    if which == "include":
        return
    keep = [i for i in items if (i.get_closest_marker(SOLO) is not None) == (which == "only")]
    apart = [i for i in items if i not in keep]
    if apart:
        config.hook.pytest_deselected(items=apart)
        items[:] = keep
    config.stash[SET_APART] = len(apart)
    if hasattr(config, "workeroutput"):  # a pytest-xdist worker: tell the controller
        config.workeroutput[SOLO] = len(apart)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist's controller: what its workers set apart (each collects every test)."""
    apart = getattr(node, "workeroutput", {}).get(SOLO, 0)
    node.config.stash[SET_APART] = max(node.config.stash.get(SET_APART, 0), apart)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No test left in one phase because the other phase has them all is no failure: only
    a selection (-k, -m) that matches no test at all is."""
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and session.config.stash.get(SET_APART, 0):
        session.exitstatus = pytest.ExitCode.OK


@pytest.fixture(autouse=True, scope="module")
def no_orphan_workers():
    before = {p.pid for p in worker_processes()}
    yield
    left = wait_no_workers(before)
    assert not left, f"worker processes left behind: {[p.pid for p in left]}"

"""The two app settings that tune a Python function app, read the way the platform reads them.

Sources are listed in the workbook's platform facts:
- ``PYTHON_THREADPOOL_THREAD_COUNT``: azure-functions-python-worker ``utils/threadpool.py``
  (``_validate_thread_count``) and ``constants.py``.
- ``FUNCTIONS_WORKER_PROCESS_COUNT``: azure-functions-host ``WorkerProcessCountOptions``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

from .learner_errors import LearnerError

THREAD_COUNT_SETTING = "PYTHON_THREADPOOL_THREAD_COUNT"
PROCESS_COUNT_SETTING = "FUNCTIONS_WORKER_PROCESS_COUNT"
UPSTREAM_URL_SETTING = "UPSTREAM_URL"

MIN_PROCESSES = 1
MAX_PROCESSES = 10  # the Functions host refuses more
DEFAULT_PROCESSES = 1

# The worker's thread-count defaults over its history, by name, for the notebooks.
LEGACY_DEFAULT_THREADS = 1  # Python 3.6-3.8 (and older 4.x workers on 3.10-3.12)
# The v4 host sets this on every Python worker it starts without the setting
# (DefaultWorkerProcessFactory.ApplyWorkerConcurrencyLimits, RpcWorkerConstants
# .DefaultConcurrencyLimit; read at host release 4.1037.0, see docs/platform.md).
HOST_INJECTED_THREADS = 1000
DEFAULT_THREADS: int | None = None  # Python 3.9+: ThreadPoolExecutor's own default

log = logging.getLogger("throughput_lab")


class SettingError(LearnerError, ValueError):
    """An app setting or flag outside what the platform accepts."""


def python_default_threads() -> int:
    """What ``ThreadPoolExecutor(max_workers=None)`` gives on this interpreter."""
    if sys.version_info >= (3, 13):
        count = os.process_cpu_count()  # type: ignore[attr-defined]
    else:
        count = os.cpu_count()
    return min(32, (count or 1) + 4)


def default_executor_threads() -> int:
    """Size of asyncio's default executor, used by ``run_in_executor(None, ...)``."""
    return python_default_threads()


def thread_count_from_setting(value: str | None) -> int | None:
    """Read ``PYTHON_THREADPOOL_THREAD_COUNT`` as the worker does.

    Absent: the default. Not an integer, or below 1: a warning, then the default.
    """
    if value is None or value == "":
        return DEFAULT_THREADS
    try:
        count = int(value)
    except ValueError:
        log.warning("%s must be an integer; got %r, using the default", THREAD_COUNT_SETTING, value)
        return DEFAULT_THREADS
    if count < 1:
        log.warning("%s must be at least 1; got %d, using the default", THREAD_COUNT_SETTING, count)
        return DEFAULT_THREADS
    return count


def effective_threads(setting: int | None) -> int:
    """The pool size a setting yields (``None`` means Python's default)."""
    return python_default_threads() if setting is None else setting


def check_threads_flag(threads: int | None) -> int | None:
    """A thread count a user asked for explicitly: anything below 1 is an error."""
    if threads is not None and (
        isinstance(threads, bool) or int(threads) != threads or threads < 1
    ):
        raise SettingError(
            f"{THREAD_COUNT_SETTING} (threads) must be a whole number >= 1, got {threads!r}"
        )
    return threads


def check_processes(processes: int) -> int:
    """A worker process count a user asked for explicitly: 1-10, the host's limit."""
    if (
        isinstance(processes, bool)
        or int(processes) != processes
        or not (MIN_PROCESSES <= processes <= MAX_PROCESSES)
    ):
        raise SettingError(
            f"{PROCESS_COUNT_SETTING} (processes) must be {MIN_PROCESSES}-{MAX_PROCESSES} "
            f"(the Functions host's limit), got {processes!r}"
        )
    return int(processes)


def processes_from_setting(value: str | None) -> int:
    """Read ``FUNCTIONS_WORKER_PROCESS_COUNT`` as the host does: below 1 is 1, above 10 an error."""
    if value is None or value == "":
        return DEFAULT_PROCESSES
    try:
        count = int(value)
    except ValueError:
        raise SettingError(
            f"{PROCESS_COUNT_SETTING} must be an integer 1-{MAX_PROCESSES}, got {value!r}"
        ) from None
    return check_processes(max(MIN_PROCESSES, count))


def settings_from_environment(env: Mapping[str, str] | None = None) -> tuple[int, int | None]:
    """Processes and thread setting as a deployed app would get them from its app settings."""
    env = os.environ if env is None else env
    processes = processes_from_setting(env.get(PROCESS_COUNT_SETTING))
    threads = thread_count_from_setting(env.get(THREAD_COUNT_SETTING))
    return processes, threads


def available_cores() -> float:
    """Cores this process may really use: CPU affinity and a cgroup quota (Binder) both count."""
    try:
        cores: float = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1.0, int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return float(cores)

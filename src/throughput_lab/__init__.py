"""throughput_lab: run an Azure Functions Python app under the worker's concurrency model.

Everything a notebook needs is importable from here.
"""

# The one place the version is written: pyproject.toml reads it when the package is built
# (setuptools' dynamic version), and CHANGELOG.md has an entry for it.
__version__ = "0.1.0"

from .app_loader import AppLoadError, FunctionInfo, index_app, load_app
from .app_settings import (
    DEFAULT_THREADS,
    HOST_INJECTED_THREADS,
    LEGACY_DEFAULT_THREADS,
    MAX_PROCESSES,
    PROCESS_COUNT_SETTING,
    THREAD_COUNT_SETTING,
    UPSTREAM_URL_SETTING,
    SettingError,
    available_cores,
    default_executor_threads,
    python_default_threads,
    thread_count_from_setting,
)
from .cold_start import ColdStart, measure_cold_start
from .host import Host, WorkerDiedError
from .invocation import HttpRequestFields, InvocationRecord
from .lab import Lab, RunResult, find_app
from .metrics import Ideal, Summary, ideal_throughput, most_at_once, percentile
from .run import RunHandle
from .served import served_locally
from .upstream import Upstream

__all__ = [
    "DEFAULT_THREADS",
    "HOST_INJECTED_THREADS",
    "LEGACY_DEFAULT_THREADS",
    "MAX_PROCESSES",
    "PROCESS_COUNT_SETTING",
    "THREAD_COUNT_SETTING",
    "UPSTREAM_URL_SETTING",
    "AppLoadError",
    "ColdStart",
    "FunctionInfo",
    "Host",
    "HttpRequestFields",
    "Ideal",
    "InvocationRecord",
    "Lab",
    "RunHandle",
    "RunResult",
    "SettingError",
    "Summary",
    "Upstream",
    "WorkerDiedError",
    "available_cores",
    "default_executor_threads",
    "find_app",
    "ideal_throughput",
    "index_app",
    "load_app",
    "measure_cold_start",
    "most_at_once",
    "percentile",
    "python_default_threads",
    "served_locally",
    "thread_count_from_setting",
]

"""What a lab for an emulated message broker needs, whatever the trigger: Service Bus, Event Hubs.

``MessagingLab`` owns the slow upstream the handlers call, the worker processes (a ``Host``
per setting, kept across runs) and the times alone; a subclass adds its trigger's
``drain`` and hands a ``run.Trigger`` to ``measure``, which runs the one measured run
(``run.MeasuredRun``) on a thread of its own. The broker itself lives in process (no
emulator for either service installs without containers), so no helper process costs CPU.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

from .app_loader import AppLoadError, FunctionInfo
from .app_settings import UPSTREAM_URL_SETTING
from .host import Host
from .invocation import InvocationRecord
from .lab import DEFAULT_TIMEOUT_S, find_app, function_timeout_s
from .run import (
    HostCache,
    Measured,
    MeasuredRun,
    RunHandle,
    Trigger,
    WorkerSettings,
    start_on_thread,
    wait_or_cancel,
)
from .upstream import Upstream

R = TypeVar("R")


class DrainStopped(RuntimeError):
    """The drain was stopped before its messages were done (the panel's Stop)."""


def find_triggered(
    functions: dict[str, dict[str, Any]], name: str, trigger_type: str, what: str
) -> FunctionInfo:
    """The function ``name`` with this trigger type, or one line that lists those there are."""
    infos = {n: FunctionInfo.from_description(f) for n, f in functions.items()}
    matching = {n: i for n, i in infos.items() if i.trigger_type.lower() == trigger_type.lower()}
    if name not in matching:
        known = ", ".join(sorted(matching)) or "none"
        kind = f"is not {what}-triggered" if name in infos else "is unknown"
        raise AppLoadError(f"function {name!r} {kind}; this app's {what} functions: {known}")
    return matching[name]


class MessagingLab:
    """The upstream and worker processes for functions a broker's listener triggers."""

    def __init__(
        self,
        app: str | Path | None = None,
        *,
        upstream_delay_ms: float = 100.0,
        timeout_s: float | None = None,
    ) -> None:
        self.app = Path(app) if app is not None else find_app()
        if not self.app.is_dir():
            raise AppLoadError(f"function app folder not found: {app}")
        self.timeout_s = timeout_s or function_timeout_s(self.app) or DEFAULT_TIMEOUT_S
        self.upstream = Upstream(upstream_delay_ms)
        self._hosts = HostCache()
        self._cancel = threading.Event()
        self._closed = False
        self.alone: dict[Hashable, list[InvocationRecord]] = {}

    def __enter__(self) -> MessagingLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> MessagingLab:
        self._closed = False  # a closed lab may be started again (the panel's Run does)
        self.upstream.start()
        return self

    def close(self) -> None:
        """Stop the workers and the upstream. Safe to call twice."""
        self._closed = True
        self._cancel.set()
        self._hosts.close()
        self.upstream.stop()

    def cancel(self) -> None:
        """Stop a drain in progress (e.g. the panel's Stop button)."""
        self._cancel.set()

    def cancelled(self) -> bool:
        return self._cancel.is_set() and not self._closed

    def host(self, processes: int, threads: int | None) -> Host:
        """Worker processes for these settings; kept until the settings change."""
        workers = WorkerSettings(processes, threads)
        settings = {UPSTREAM_URL_SETTING: self.upstream.url}
        return self._hosts.get(
            workers,
            lambda: Host(
                self.app,
                processes=workers.processes,
                threads=workers.threads,
                timeout_s=self.timeout_s,
                app_settings=settings,
            ),
        )

    def prepare(self, upstream_delay_ms: float | None) -> None:
        """Before a drain: clear a past Stop, set the upstream's delay."""
        self._cancel.clear()
        if upstream_delay_ms is not None:
            self.upstream.delay_ms = upstream_delay_ms

    def measure(
        self,
        host: Host,
        trigger: Trigger,
        handle: RunHandle,
        result: Callable[[Measured], R],
    ) -> R:
        """The one measured run of ``trigger``, on a thread of its own; Ctrl-C stops it."""

        async def run() -> R:
            handle.attach()
            measured = await MeasuredRun(host, trigger, self.upstream, handle, self.alone).measure()
            return await asyncio.to_thread(result, measured)

        start_on_thread(handle, run, handle.future.set_exception)
        return wait_or_cancel(handle, self._cancel.set)

"""What every lab of a non-HTTP trigger holds, whatever drives it: a queue on Azurite, a
blob container, an emulated Service Bus or event hub.

``TriggerLab`` owns the slow upstream the handlers call, the worker processes (a ``Host``
per setting, kept across runs), the times alone and, where the trigger needs storage,
Azurite. A subclass adds its trigger's ``drain`` and hands a ``run.Trigger`` to
``measure``, which runs the one measured run (``run.MeasuredRun``) on a thread of its own.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Hashable
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from .app_loader import AppLoadError, FunctionInfo
from .app_settings import UPSTREAM_URL_SETTING
from .azurite import Azurite
from .host import Host
from .invocation import InvocationRecord
from .lab import DEFAULT_TIMEOUT_S, find_app, function_timeout_s
from .load import host_sender
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
L = TypeVar("L", bound="TriggerLab")
K = TypeVar("K", bound=Hashable)  # what a listener's messages are known by


class DrainStopped(RuntimeError):
    """The drain was stopped before its messages were done (the panel's Stop)."""


@dataclass
class FunctionTrigger(Generic[L]):
    """What every drained trigger holds: its lab, the host whose workers run the function,
    the function's ``info`` and the run's ``handle`` (keyword-only, after the trigger's own
    fields); what ``run.Trigger`` asks of it read from ``info``: its name and whether it
    is ``async def``."""

    lab: L
    host: Host
    info: FunctionInfo
    _: KW_ONLY
    handle: RunHandle

    @property
    def function(self) -> str:
        return self.info.name

    @property
    def is_async(self) -> bool:
        return self.info.is_async

    def cancelled(self) -> bool:
        """The panel's Stop, or Ctrl-C while the drain waits (threads poll this)."""
        return self.lab.cancelled() or self.handle.cancelled

    async def send(self, fields: Any) -> InvocationRecord:
        """One invocation with these trigger fields, straight to the host's workers."""
        sender = host_sender(self.host, self.function, fields, self.lab.timeout_s + 5)
        return await sender(0)


@dataclass
class ListenerTrigger(FunctionTrigger[L], Generic[L, K]):
    """A trigger whose messages are all sent before the window and drained in it by a
    listener after the extension's: when each was sent (by its key), when the listener
    began, and who hears of each message done (a panel's progress)."""

    _: KW_ONLY
    on_done: Callable[[Any], None] | None = None
    began: float = 0.0
    enqueued: dict[K, float] = field(default_factory=dict)

    def window_s(self, last_done: float) -> float:
        """The measured window: the listener's start to the last message done."""
        return max(last_done - self.began, 1e-9)

    def since_began(self, curve: list[tuple[float, int]]) -> list[tuple[float, int]]:
        """A listener's (clock, in progress) curve, in seconds since it began."""
        return [(t - self.began, n) for t, n in curve]


class TriggerLab:
    """The upstream, worker processes and (``azurite``) storage emulator of a trigger's lab."""

    def __init__(
        self,
        app: str | Path | None = None,
        *,
        upstream_delay_ms: float = 100.0,
        timeout_s: float | None = None,
        azurite: Azurite | None = None,
    ) -> None:
        self.app = Path(app) if app is not None else find_app()
        if not self.app.is_dir():
            raise AppLoadError(f"function app folder not found: {app}")
        self.timeout_s = timeout_s or function_timeout_s(self.app) or DEFAULT_TIMEOUT_S
        self.azurite = azurite
        self.upstream = Upstream(upstream_delay_ms)
        self._hosts = HostCache()
        self._cancel = threading.Event()
        self._closed = False
        self.alone: dict[Hashable, list[InvocationRecord]] = {}

    def __enter__(self: L) -> L:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self: L) -> L:
        """Start Azurite (if any) and the upstream; a closed lab may be started again (the
        panel's Run does). What fails to start is stopped again."""
        self._closed = False
        try:
            if self.azurite is not None:
                self.azurite.start()
            self.upstream.start()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop the workers, Azurite and the upstream. Safe to call twice."""
        self._closed = True
        self._cancel.set()
        self._hosts.close()
        if self.azurite is not None:
            self.azurite.close()
        self.upstream.stop()

    def cancel(self) -> None:
        """Stop a drain in progress (e.g. the panel's Stop button)."""
        self._cancel.set()

    def cancelled(self) -> bool:
        return self._cancel.is_set() and not self._closed

    def app_settings(self) -> dict[str, str]:
        """What the workers get: the upstream's URL, and Azurite as AzureWebJobsStorage."""
        settings = {UPSTREAM_URL_SETTING: self.upstream.url}
        if self.azurite is not None:
            settings["AzureWebJobsStorage"] = self.azurite.connection_string
        return settings

    def host(self, processes: int, threads: int | None) -> Host:
        """Worker processes for these settings; kept until the settings change."""
        workers = WorkerSettings(processes, threads)
        settings = self.app_settings()
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

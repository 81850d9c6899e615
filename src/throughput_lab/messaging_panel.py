"""Notebook 13's control panel: a Service Bus or Event Hubs function's settings, then Run.

For Service Bus: sliders for host.json's ``maxConcurrentCalls`` and the app settings
``PYTHON_THREADPOOL_THREAD_COUNT`` and ``FUNCTIONS_WORKER_PROCESS_COUNT``; for Event Hubs:
the event hub's partitions, ``maxEventBatchSize`` and the same app settings. Run drains
on a thread (the kernel's loop stays free), Stop ends the drain; each run's line and its
invocations in progress over time are shown. Everything else a panel does (buttons,
status, Stop, Kernel > Interrupt) is ``panel.Panel``'s.
"""

from __future__ import annotations

import html
import time
from typing import Any

import ipywidgets as widgets

from . import plots
from .eventhubs.lab import EventHubLab, EventHubResult
from .messaging_lab import DrainStopped
from .panel import Panel, ThreadJob
from .servicebus.lab import ServiceBusLab, ServiceBusResult
from .trigger_lab import TriggerLab

Result = ServiceBusResult | EventHubResult
# name: (default, least, most, label), by the lab's trigger
SERVICE_BUS_SLIDERS = {
    "max_concurrent_calls": (16, 1, 64, "maxConcurrentCalls"),
    "threads": (4, 1, 64, "threads per process"),
    "processes": (1, 1, 4, "worker processes"),
}
EVENT_HUBS_SLIDERS = {
    "partitions": (4, 1, 32, "partitions"),
    "max_event_batch_size": (10, 1, 100, "maxEventBatchSize"),
    "threads": (4, 1, 64, "threads per process"),
    "processes": (1, 1, 4, "worker processes"),
}


def in_progress(results: dict[str, Result], ax: Any = None) -> Any:
    """Invocations in progress over time, one line per drain."""
    fig, ax = plots.new_axes(ax, (7.0, 3.4))
    for (name, result), color in zip(results.items(), plots.SERIES, strict=False):
        times = [t for t, _ in result.in_flight_curve]
        counts = [n for _, n in result.in_flight_curve]
        ax.step(times, counts, where="post", color=color, linewidth=1, label=name)
    ax.set_xlabel("seconds since the listener started")
    ax.set_ylabel("invocations in progress")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, loc="lower right")
    return fig


class MessagingPanel(Panel):
    """Sliders, Run and Stop for draining ``messages`` through ``function``.

    A lab that was closed (the notebook's last cell) is started again by the next Run.
    """

    history: list[Result]

    def __init__(self, lab: TriggerLab, function: str, messages: int = 160, **values: int):
        self.lab, self.function, self.messages = lab, function, messages
        spec = EVENT_HUBS_SLIDERS if isinstance(lab, EventHubLab) else SERVICE_BUS_SLIDERS
        defaults = {name: values.get(name, default) for name, (default, *_) in spec.items()}
        sliders = {
            name: widgets.IntSlider(
                defaults[name],
                low,
                high,
                description=label,
                style={"description_width": "150px"},
                layout=widgets.Layout(width="420px"),
            )
            for name, (_, low, high, label) in spec.items()
        }
        title = f"<b>{html.escape(function)}</b>: drain {messages} messages (broker in process)"
        super().__init__(title, sliders, defaults)

    def _starting(self, values: dict[str, int]) -> None:
        self.status.value = f"draining {self.messages} messages..."
        self.image.value = b""

    def _start(self, values: dict[str, int]) -> ThreadJob:
        return ThreadJob(lambda job: self._drain(job, values), self.lab.cancel, "messaging-panel")

    def _drain(self, job: ThreadJob, values: dict[str, int]) -> Result:
        if not self.lab.upstream.port:  # closed by the notebook's last cell: start it again
            self.lab.start()
        if job.cancelled.is_set():
            raise DrainStopped("the drain was stopped")
        if isinstance(self.lab, EventHubLab):
            return self.lab.drain(self.function, self.messages, **values)
        assert isinstance(self.lab, ServiceBusLab)
        return self.lab.drain(self.function, self.messages, **values)

    async def _show_progress(self, job: ThreadJob, began: float, values: dict[str, int]) -> None:
        self.status.value = f"draining {self.messages} messages: {time.monotonic() - began:.1f} s"

    def _ended_early(self, exc: BaseException) -> bool:
        if isinstance(exc, DrainStopped):  # the lab's own cancel() too: a stop, not a failure
            self._stopping = True
        return super()._ended_early(exc)

    def _record(self, values: dict[str, int], result: Result) -> str:
        self.history.append(result)
        fig = in_progress({f"run {len(self.history)}": result})
        self.image.value = plots.png(fig, dpi=80)
        return result.line()

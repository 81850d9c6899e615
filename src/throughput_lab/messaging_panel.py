"""Notebook 13's control panel: a Service Bus or Event Hubs function's settings, then Run.

For Service Bus: sliders for host.json's ``maxConcurrentCalls`` and the app settings
``PYTHON_THREADPOOL_THREAD_COUNT`` and ``FUNCTIONS_WORKER_PROCESS_COUNT``; for Event Hubs:
the event hub's partitions, ``maxEventBatchSize`` and the same app settings. Each run's
line and its invocations in progress over time are shown. Run and Stop around the drain
are ``drain_panel.DrainPanel``'s, the rest ``panel.Panel``'s.
"""

from __future__ import annotations

import html
from typing import Any

from . import plots
from .drain_panel import DrainPanel
from .eventhubs.lab import EventHubLab, EventHubResult
from .panel import ThreadJob
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


class MessagingPanel(DrainPanel):
    """Sliders, Run and Stop for draining ``messages`` through ``function``: the sliders
    of the lab's trigger (Service Bus or Event Hubs)."""

    history: list[Result]
    thread_name = "messaging-panel"

    def __init__(self, lab: TriggerLab, function: str, messages: int = 160, **values: int):
        spec = EVENT_HUBS_SLIDERS if isinstance(lab, EventHubLab) else SERVICE_BUS_SLIDERS
        title = f"<b>{html.escape(function)}</b>: drain {messages} messages (broker in process)"
        super().__init__(lab, function, messages, spec, values, title)

    def _drain_messages(self, job: ThreadJob, values: dict[str, int]) -> Result:
        if isinstance(self.lab, EventHubLab):
            return self.lab.drain(self.function, self.messages, **values)
        assert isinstance(self.lab, ServiceBusLab)
        return self.lab.drain(self.function, self.messages, **values)

    def _plot(self, results: dict[str, Result]) -> Any:
        return in_progress(results)

"""Notebook 11's control panel: the host's queue settings and the worker's, then Run.

Sliders for host.json's ``batchSize`` and ``newBatchThreshold`` and the app settings
``PYTHON_THREADPOOL_THREAD_COUNT`` and ``FUNCTIONS_WORKER_PROCESS_COUNT``; each run's line
and its in-flight curve are shown, next to the cap batchSize + newBatchThreshold. Run and
Stop around the drain are ``drain_panel.DrainPanel``'s, the rest ``panel.Panel``'s.
"""

from __future__ import annotations

import html
from typing import Any

from .. import plots
from ..drain_panel import DrainPanel
from ..panel import ThreadJob
from .lab import DrainResult, QueueLab
from .listener import MAX_BATCH_SIZE, MessageRecord

# name: (default, least, most, label): host.json's settings, then the app settings
SLIDERS = {
    "batch_size": (16, 1, MAX_BATCH_SIZE, "batchSize"),
    "new_batch_threshold": (8, 0, 64, "newBatchThreshold"),
    "threads": (32, 1, 64, "threads per process"),
    "processes": (1, 1, 4, "worker processes"),
}


def in_flight(results: dict[str, DrainResult], ax: Any = None) -> Any:
    """Messages in progress over time, one line per drain, each with its cap dotted."""
    fig, ax = plots.new_axes(ax, (7.0, 3.4))
    for (name, result), color in zip(results.items(), plots.SERIES, strict=False):
        times = [t for t, _ in result.in_flight_curve]
        counts = [n for _, n in result.in_flight_curve]
        ax.step(times, counts, where="post", color=color, linewidth=1, label=name)
        ax.axhline(result.options.max_in_flight, color=color, linestyle=":", linewidth=1)
    ax.set_xlabel("seconds since the listener started")
    ax.set_ylabel("messages in progress")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("dotted: batchSize + newBatchThreshold, the listener's cap", fontsize=9)
    return fig


class QueuePanel(DrainPanel):
    """Sliders, Run and Stop for draining ``messages`` through ``function``; the status
    counts the messages done, and the progress bar moves with them."""

    history: list[DrainResult]
    thread_name = "queue-panel"

    def __init__(self, lab: QueueLab, function: str, messages: int = 200, **values: int) -> None:
        self._done = 0  # messages done in the drain going on
        title = f"<b>{html.escape(function)}</b>: drain {messages} messages"
        super().__init__(lab, function, messages, SLIDERS, values, title)

    def _starting(self, values: dict[str, int]) -> None:
        self._done = 0
        super()._starting(values)

    def _drain_messages(self, job: ThreadJob, values: dict[str, int]) -> DrainResult:
        def on_done(_message: MessageRecord) -> None:
            self._done += 1
            if job.cancelled.is_set():  # a Stop the drain's own start may have cleared
                self.lab.cancel()

        return self.lab.drain(self.function, self.messages, on_done=on_done, **values)

    def _done_text(self) -> str:
        self.progress.value = min(1.0, self._done / self.messages)
        return f"{self._done} done, "

    def _plot(self, results: dict[str, DrainResult]) -> Any:
        return in_flight(results)

"""Notebook 11's control panel: the host's queue settings and the worker's, then Run.

Sliders for host.json's ``batchSize`` and ``newBatchThreshold`` and the app settings
``PYTHON_THREADPOOL_THREAD_COUNT`` and ``FUNCTIONS_WORKER_PROCESS_COUNT``; Run drains a
queue on a thread (the kernel's loop stays free), Stop ends the drain; each run's line and
its in-flight curve are shown, next to the cap batchSize + newBatchThreshold. Everything
else a panel does (buttons, status, Stop, Kernel > Interrupt) is ``panel.Panel``'s.
"""

from __future__ import annotations

import html
import time
from typing import Any

import ipywidgets as widgets

from .. import plots
from ..panel import Panel, ThreadJob
from .lab import DrainResult, DrainStopped, QueueLab
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


def lab_running(lab: QueueLab) -> bool:
    """Whether the lab's Azurite and upstream are up (not closed, as at the notebook's end)."""
    return lab.azurite is not None and lab.azurite.running and bool(lab.upstream.port)


class QueuePanel(Panel):
    """Sliders, Run and Stop for draining ``messages`` through ``function``.

    A lab that was closed (notebook 11's last cell) is started again by the next Run, as
    ``ControlPanel``'s lab starts its workers again.
    """

    history: list[DrainResult]

    def __init__(self, lab: QueueLab, function: str, messages: int = 200, **values: int) -> None:
        self.lab, self.function, self.messages = lab, function, messages
        self._done = 0  # messages done in the drain going on
        self._restarting = False
        defaults = {name: values.get(name, default) for name, (default, *_) in SLIDERS.items()}
        sliders = {
            name: widgets.IntSlider(
                defaults[name],
                low,
                high,
                description=label,
                style={"description_width": "150px"},
                layout=widgets.Layout(width="420px"),
            )
            for name, (_, low, high, label) in SLIDERS.items()
        }
        title = f"<b>{html.escape(function)}</b>: drain {messages} messages"
        super().__init__(title, sliders, defaults)

    def _starting(self, values: dict[str, int]) -> None:
        self.status.value = f"draining {self.messages} messages..."
        self.image.value = b""  # no plot of the last run beside this one's outcome

    def _start(self, values: dict[str, int]) -> ThreadJob:
        self._done = 0
        return ThreadJob(lambda job: self._drain(job, values), self.lab.cancel, "queue-panel")

    def _drain(self, job: ThreadJob, values: dict[str, int]) -> DrainResult:
        """On the job's thread: start the lab again if it was closed, then drain."""
        if not lab_running(self.lab):
            self._restarting = True
            try:
                self.lab.close()  # whatever is left of it (safe twice), then all of it anew
                self.lab.start()
            finally:
                self._restarting = False
        if job.cancelled.is_set():  # Stop while the lab started: drain nothing
            raise DrainStopped("the drain was stopped")

        def on_done(_message: MessageRecord) -> None:
            self._done += 1
            if job.cancelled.is_set():  # a Stop the drain's own start may have cleared
                self.lab.cancel()

        return self.lab.drain(self.function, self.messages, on_done=on_done, **values)

    async def _show_progress(self, job: ThreadJob, began: float, values: dict[str, int]) -> None:
        seconds = f"{time.monotonic() - began:.1f} s"
        if self._restarting:
            self.status.value = f"the lab was closed: starting it again... {seconds}"
            return
        self.progress.value = min(1.0, self._done / self.messages)
        self.status.value = f"draining {self.messages} messages: {self._done} done, {seconds}"

    def _ended_early(self, exc: BaseException) -> bool:
        if isinstance(exc, DrainStopped):  # the lab's own cancel() too: a stop, not a failure
            self._stopping = True
        return super()._ended_early(exc)

    def _record(self, values: dict[str, int], result: DrainResult) -> str:
        self.history.append(result)
        fig = in_flight({f"run {len(self.history)}": result})
        self.image.value = plots.png(fig, dpi=80)
        return result.line()

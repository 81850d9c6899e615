"""Notebook 11's control panel: the host's queue settings and the worker's, then Run.

Sliders for host.json's ``batchSize`` and ``newBatchThreshold`` and the app settings
``PYTHON_THREADPOOL_THREAD_COUNT`` and ``FUNCTIONS_WORKER_PROCESS_COUNT``; Run drains a
queue on a thread (the kernel's loop stays free), Stop ends the drain; each run's line and
its in-flight curve are shown, next to the cap batchSize + newBatchThreshold.
"""

from __future__ import annotations

import asyncio
import html
from typing import Any

import ipywidgets as widgets

from .. import plots
from .lab import DrainResult, DrainStopped, QueueLab
from .listener import MAX_BATCH_SIZE


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


class QueuePanel(widgets.VBox):
    """Sliders, Run and Stop for draining ``messages`` through ``function``."""

    def __init__(self, lab: QueueLab, function: str, messages: int = 200, **values: int) -> None:
        self.lab, self.function, self.messages = lab, function, messages
        self.history: list[DrainResult] = []
        style = {"description_width": "150px"}
        layout = widgets.Layout(width="420px")
        # name: (default, least, most, label): host.json's settings, then the app settings
        ranges = {
            "batch_size": (16, 1, MAX_BATCH_SIZE, "batchSize"),
            "new_batch_threshold": (8, 0, 64, "newBatchThreshold"),
            "threads": (32, 1, 64, "threads per process"),
            "processes": (1, 1, 4, "worker processes"),
        }
        self.sliders = {
            name: widgets.IntSlider(
                values.get(name, default),
                low,
                high,
                description=label,
                style=style,
                layout=layout,
            )
            for name, (default, low, high, label) in ranges.items()
        }
        self.run_button = widgets.Button(description="Run", button_style="primary")
        self.stop_button = widgets.Button(description="Stop", disabled=True)
        self.run_button.on_click(self._clicked)
        self.stop_button.on_click(lambda _b: self.lab.cancel())
        self._task: asyncio.Task[DrainResult | None] | None = None  # held: tasks are weak refs
        # Results go into widgets' values, not an Output widget: a drain started by a click
        # ends long after the click's message, and printing then has no cell to land in.
        self.status = widgets.Label("")
        self.summary = widgets.HTML("")
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        super().__init__(
            [
                *self.sliders.values(),
                widgets.HBox([self.run_button, self.stop_button, self.status]),
                self.summary,
                self.image,
            ]
        )

    def _clicked(self, _button: widgets.Button) -> None:
        self._task = asyncio.ensure_future(self.run())

    async def run(self, **settings: int) -> DrainResult | None:
        """Drain with the sliders' values (``settings`` moves the sliders first)."""
        for name, value in settings.items():
            self.sliders[name].value = value
        values = {name: s.value for name, s in self.sliders.items()}
        self.run_button.disabled, self.stop_button.disabled = True, False
        self.status.value = f"draining {self.messages} messages..."
        try:
            result = await asyncio.to_thread(self.lab.drain, self.function, self.messages, **values)
        except DrainStopped:
            self.status.value = "stopped: nothing measured"
            return None
        except Exception as exc:  # one line in the panel; the notebook goes on
            self.status.value = f"failed: {type(exc).__name__}: {exc}"
            return None
        finally:
            self.run_button.disabled, self.stop_button.disabled = False, True
        self.history.append(result)
        self.status.value = f"done: run {len(self.history)}"
        self.summary.value = f"<code>{html.escape(result.line())}</code>"
        fig = in_flight({f"run {len(self.history)}": result})
        self.image.value = plots.png(fig, dpi=80)
        return result

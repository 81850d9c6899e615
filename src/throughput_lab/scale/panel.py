"""Notebook 12's control panel and plot: a live scale-out, growing as it runs.

Sliders for the per-instance concurrency, the maximum and always-ready instances and the
allocation delay, a menu for the traffic's shape; Run starts the live scale-out on a
thread (the kernel's loop stays free), Stop (or Kernel > Interrupt) ends it and stops every
instance. The plot of instances, requests in flight and p95 grows while it runs. Buttons,
status and Stop are ``panel.Panel``'s.
"""

from __future__ import annotations

import html
import time
from typing import Any

import ipywidgets as widgets

from .. import plots
from ..panel import Panel, labelled_sliders
from ..run import RunHandle
from .lab import ScaleLab
from .simulation import Sample, ScaleResult
from .traffic import SHAPES, Traffic

# name: (default, least, most, label)
SLIDERS = {
    "per_instance_concurrency": (1, 1, 8, "per-instance concurrency"),
    "max_instances": (6, 1, 8, "maximum instances"),
    "always_ready": (1, 0, 4, "always-ready instances"),
    "allocation_ms": (1000, 0, 5000, "allocation delay (ms)"),
}


def over_time(runs: dict[str, list[Sample] | ScaleResult], axes: Any = None) -> Any:
    """Instances, requests in flight (a queue's messages) and p95 over time, one line per
    run (a result or its samples so far); instances dotted where ready."""
    if axes is None:
        fig, axes = plots.figure((9.5, 3.4), ncols=3)
    else:
        fig = axes[0].figure
    for (name, run), color in zip(runs.items(), plots.SERIES, strict=False):
        series = run.series if isinstance(run, ScaleResult) else run
        t = [s.t_s for s in series]
        axes[0].step(t, [s.instances for s in series], where="post", color=color, label=name)
        axes[0].step(t, [s.ready for s in series], where="post", color=color, linestyle=":")
        axes[1].plot(t, [s.in_flight for s in series], color=color, label=name)
        shown = [(s.t_s, s.p95_ms) for s in series if s.p95_ms > 0]
        axes[2].plot([x for x, _ in shown], [y for _, y in shown], color=color, label=name)
    queued = any(isinstance(r, ScaleResult) and r.rules.trigger == "queue" for r in runs.values())
    work = "messages waiting or in progress" if queued else "requests in flight"
    titles = ("instances (dotted: ready)", work, "p95 latency (ms)")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("seconds")
        ax.set_ylim(bottom=0)
    axes[2].set_yscale("symlog", linthresh=100)
    axes[0].legend(fontsize=7, loc="upper left")
    return fig


class ScalePanel(Panel):
    """Sliders, a traffic menu, Run and Stop for a live scale-out of ``function``."""

    history: list[ScaleResult]
    refresh_s = 1.0  # a redraw a second: the plot grows without taking a core

    def __init__(
        self,
        lab: ScaleLab,
        function: str,
        *,
        traffic: str = "spike",
        peak_rps: float = 40.0,
        duration_s: float = 20.0,
        **values: int,
    ) -> None:
        self.lab, self.function = lab, function
        self.peak_rps, self.duration_s = peak_rps, duration_s
        self._samples: list[Sample] = []
        self._drawn = 0
        defaults: dict[str, Any] = {
            name: values.get(name, default) for name, (default, *_) in SLIDERS.items()
        }
        defaults["traffic"] = traffic
        sliders: dict[str, Any] = dict(labelled_sliders(SLIDERS, defaults, "170px"))
        sliders["traffic"] = widgets.Dropdown(
            options=list(SHAPES), value=traffic, description="traffic"
        )
        title = (
            f"<b>{html.escape(function)}</b>: live scale-out, {peak_rps:g} req/s at the peak "
            f"for {duration_s:g} s"
        )
        super().__init__(title, sliders, defaults)

    def _starting(self, values: dict[str, Any]) -> None:
        self.status.value = "starting the always-ready instances..."
        self.image.value = b""
        self._samples, self._drawn = [], 0

    def _start(self, values: dict[str, Any]) -> RunHandle:
        traffic = Traffic(values["traffic"], self.peak_rps, self.duration_s)
        return self.lab.start_live(
            self.function,
            traffic,
            startup_s=values["allocation_ms"] / 1e3,
            on_sample=self._samples.append,
            per_instance_concurrency=values["per_instance_concurrency"],
            max_instances=values["max_instances"],
            always_ready=values["always_ready"],
            scale_in_after_s=10.0,
        )

    async def _show_progress(self, job: Any, began: float, values: dict[str, Any]) -> None:
        samples = list(self._samples)
        seconds = f"{time.monotonic() - began:.0f} s"
        if not samples:
            return
        last = samples[-1]
        self.progress.value = min(1.0, last.t_s / self.duration_s)
        self.status.value = (
            f"{seconds}: {last.instances} instances ({last.ready} ready), "
            f"{last.in_flight} in flight"
        )
        if len(samples) - self._drawn >= 2:  # a redraw per second of samples, not per look
            self._drawn = len(samples)
            self.image.value = plots.png(over_time({"live": samples}), dpi=70)

    def _record(self, values: dict[str, Any], result: ScaleResult) -> str:
        self.history.append(result)
        name = f"run {len(self.history)}"
        self.image.value = plots.png(over_time({name: result}), dpi=80)
        return result.line()

"""The control panels: move a setting, press Run, watch what the run measured.

``Panel`` is what every panel shares: Run and Stop, a progress bar, a status line, an
image and a summary line, and the run itself. A run is a job on a thread of its own (for
``ControlPanel`` the lab's, ``Lab.start``; for a drain a ``ThreadJob``); the panel
only polls it from a task on the kernel's event loop, so the kernel stays free while it
runs: other cells execute, and Stop is heard. A failure is one line in the status, and
results go into widgets' values, never printed: a run started by a click ends long after
the click's message, and printing then has no cell to land in. A notebook run headless
drives the very same code with ``await panel.run(threads=8)``.

``ControlPanel`` is the HTTP panel (notebooks 00-06); ``drain_panel.DrainPanel`` is the one
of the panels that drain a trigger's messages (notebooks 11 and 13).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import math
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

import ipywidgets as widgets

from . import plots
from .app_settings import MAX_PROCESSES, PROCESS_COUNT_SETTING, THREAD_COUNT_SETTING
from .lab import Lab, RunHandle, RunResult
from .metrics import Ideal, Summary


@dataclass(frozen=True)
class Control:
    """One slider: the Lab.start argument it sets, and the platform setting it stands for."""

    name: str
    description: str
    tooltip: str
    low: int
    high: int
    step: int = 1


CONTROLS = {
    "threads": Control(
        "threads",
        "threads",
        f"{THREAD_COUNT_SETTING}: threads in each worker process's pool for plain def functions",
        1,
        64,
    ),
    "processes": Control(
        "processes",
        "processes",
        f"{PROCESS_COUNT_SETTING}: worker processes the host starts (1-{MAX_PROCESSES})",
        1,
        MAX_PROCESSES,
    ),
    "concurrency": Control(
        "concurrency",
        "in flight",
        "requests in flight: clients that each send the next request when the last is answered",
        1,
        256,
    ),
    "upstream_delay_ms": Control(
        "upstream_delay_ms",
        "upstream ms",
        "UPSTREAM_URL answers after this many milliseconds (the slow dependency)",
        0,
        1000,
        10,
    ),
}

# Axis labels that fit half the panel's width.
SHORT_LABELS = {
    "threads": f"threads ({THREAD_COUNT_SETTING})",
    "processes": f"processes ({PROCESS_COUNT_SETTING})",
    "concurrency": "requests in flight",
    "upstream_delay_ms": "upstream delay (ms)",
}


def _main_thread_loop() -> asyncio.AbstractEventLoop | None:
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # no loop running: a plain script, not a kernel
        return None


class _InterruptStops:
    """While a panel run goes on, Kernel > Interrupt (SIGINT) stops it.

    A run started by the Run button has no cell executing, and an idle kernel ignores
    SIGINT (ipykernel sets SIG_IGN between messages, or leaves Python's default handler
    after overlapping messages); this handler makes the interrupt mean Stop. It is armed
    whenever no awaiting cell holds the interrupt, checked on each refresh: the button's
    own message handler still holds ipykernel's handler when the run begins. Python takes
    signal handlers only on the main thread, and ipykernel may run a button's callback on
    another: then the kernel's main loop sets it. While a cell awaits the run, ipykernel
    cancels that cell, which the panel also treats as Stop.
    """

    def __init__(
        self, stop: Callable[[], None], main_loop: asyncio.AbstractEventLoop | None
    ) -> None:
        self._stop = stop
        self._main_loop = main_loop
        self._previous: Any = None

    def __enter__(self) -> _InterruptStops:
        self.arm()
        return self

    def arm(self) -> None:
        self._on_main_thread(self._arm)

    def __exit__(self, *exc: object) -> None:
        self._on_main_thread(self._disarm)

    def _on_main_thread(self, action: Callable[[], None]) -> None:
        if threading.current_thread() is threading.main_thread():
            action()
        elif self._main_loop is not None and not self._main_loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._main_loop.call_soon_threadsafe(action)

    def _arm(self) -> None:
        current = signal.getsignal(signal.SIGINT)
        if current in (signal.SIG_IGN, signal.default_int_handler):
            self._previous = current
            signal.signal(signal.SIGINT, self._handle)

    def _disarm(self) -> None:
        if self._previous is not None and signal.getsignal(signal.SIGINT) == self._handle:
            signal.signal(signal.SIGINT, self._previous)
        self._previous = None

    def _handle(self, signum: int, frame: Any) -> None:
        self._stop()


# -- a run on a thread --------------------------------------------------------------------


class Job(Protocol):
    """A run going on off the kernel's loop: ``RunHandle``, or a ``ThreadJob``."""

    future: Future[Any]

    def done(self) -> bool: ...

    def result(self, timeout: float | None = None) -> Any: ...

    def cancel(self) -> None: ...


class ThreadJob:
    """``work(job)`` on a thread of its own; ``cancel()`` sets ``job.cancelled`` and calls
    ``on_cancel`` (which should make ``work`` return or raise soon)."""

    def __init__(
        self,
        work: Callable[[ThreadJob], Any],
        on_cancel: Callable[[], None],
        name: str = "panel-run",
    ) -> None:
        self.future: Future[Any] = Future()
        self.cancelled = threading.Event()
        self._on_cancel = on_cancel
        threading.Thread(target=self._run, args=(work,), name=name, daemon=True).start()

    def _run(self, work: Callable[[ThreadJob], Any]) -> None:
        try:
            result = work(self)
        except BaseException as exc:  # the panel reports it, in its status line
            self.future.set_exception(exc)
        else:
            self.future.set_result(result)

    def done(self) -> bool:
        return self.future.done()

    def result(self, timeout: float | None = None) -> Any:
        return self.future.result(timeout)

    def cancel(self) -> None:
        self.cancelled.set()
        self._on_cancel()


# -- the family ---------------------------------------------------------------------------

# Sliders by setting name: (default, least, most, label)
SliderSpec = Mapping[str, tuple[int, int, int, str]]


def labelled_sliders(
    spec: SliderSpec, values: Mapping[str, int], label_width: str = "150px"
) -> dict[str, widgets.IntSlider]:
    """A slider per setting of ``spec``, at its value in ``values``, its label in full."""
    return {
        name: widgets.IntSlider(
            values[name],
            low,
            high,
            description=label,
            style={"description_width": label_width},
            layout=widgets.Layout(width="420px"),
        )
        for name, (_, low, high, label) in spec.items()
    }


class Panel(widgets.VBox):
    """Run and Stop, progress, status, an image and a summary, over a subclass's sliders.

    ``sliders`` set some of the settings; ``defaults`` has a value for every setting, used
    when it has no slider. A subclass says what a run is: ``_start`` (begin it on a
    thread: a ``Job``), ``_show_progress`` (while it goes), ``_record`` (keep and draw its
    result; return its summary line); ``_starting`` clears what the last run showed.
    """

    refresh_s = 0.5  # seconds between looks at the run going on
    history: list[Any]

    def __init__(
        self, title: str, sliders: dict[str, widgets.IntSlider], defaults: dict[str, int]
    ) -> None:
        self.sliders = sliders
        self.defaults = defaults
        self.history = []
        self._job: Job | None = None
        self._busy = False
        self._stopping = False
        self._task: asyncio.Future[Any] | None = None  # a reference keeps the task alive
        # The kernel's main loop, where a signal handler can be set (see _InterruptStops).
        self._main_loop = _main_thread_loop()
        self.run_button = widgets.Button(
            description="Run", icon="play", button_style="success", tooltip="start a run"
        )
        self.stop_button = widgets.Button(
            description="Stop", icon="stop", disabled=True, tooltip="stop the run"
        )
        self.progress = widgets.FloatProgress(
            value=0, min=0, max=1, description="progress", layout=widgets.Layout(width="300px")
        )
        self.status = widgets.Label(value="ready: press Run")
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.summary = widgets.HTML(value="")
        self.run_button.on_click(self._on_run)
        self.stop_button.on_click(lambda _: self.stop())
        super().__init__(
            [
                widgets.HTML(title),
                widgets.HBox(list(sliders.values()), layout=widgets.Layout(flex_flow="wrap")),
                widgets.HBox([self.run_button, self.stop_button, self.progress, self.status]),
                self.image,
                self.summary,
            ]
        )

    # -- state ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._busy

    def settings(self) -> dict[str, int]:
        """What the next run uses: the sliders' values, defaults for the rest."""
        values = dict(self.defaults)
        values.update({name: slider.value for name, slider in self.sliders.items()})
        return values

    def _set_busy(self, busy: bool) -> None:
        self._busy = busy
        self.run_button.disabled = busy
        self.stop_button.disabled = not busy
        for slider in self.sliders.values():
            slider.disabled = busy

    def _runs_text(self) -> str:
        return f"runs so far: {len(self.history)}"

    # -- running -------------------------------------------------------------------------

    def _on_run(self, _button: Any = None) -> None:
        if self._busy:
            return
        self._set_busy(True)  # now, so that a second click cannot start a second run
        self._task = asyncio.ensure_future(self._run_quietly())

    async def _run_quietly(self) -> None:
        try:
            await self._run({})
        except Exception as exc:  # shown in the panel; a button has nobody to raise to
            self.status.value = f"failed: {type(exc).__name__}: {exc}"

    async def run(self, **settings: int) -> Any:
        """Set sliders from ``settings`` (e.g. ``threads=8``), run, and return the result.

        Returns None if the run was stopped. Await it: ``result = await panel.run()``.
        """
        if self._busy:
            raise RuntimeError("a run is already going: wait for it or press Stop")
        unknown = [name for name in settings if name not in self.defaults]
        if unknown:
            raise ValueError(f"unknown setting(s) {unknown}; choose from {list(self.defaults)}")
        self._set_busy(True)
        return await self._run(settings)

    async def _run(self, settings: Mapping[str, int]) -> Any:
        stop_on_interrupt = _InterruptStops(self.stop, self._main_loop)
        try:
            for name, value in settings.items():
                if name in self.sliders:
                    self.sliders[name].value = value
                else:
                    self.defaults[name] = value
            values = self.settings()
            self._stopping = False
            self.progress.value = 0
            self.summary.value = ""
            self._starting(values)  # this run's view starts empty, not with the last run's
            self._job = job = self._start(values)
            began = time.monotonic()
            finished = asyncio.wrap_future(job.future)
            # job.result() reports the run's outcome; this copy's is only for waking up.
            finished.add_done_callback(lambda f: f.cancelled() or f.exception())
            with stop_on_interrupt:
                while not job.done():
                    stop_on_interrupt.arm()
                    await self._show_progress(job, began, values)
                    # Wakes early when the run ends: a Stop shows at once.
                    await asyncio.wait({finished}, timeout=self.refresh_s)
            result = job.result()
            # Drawn first: Run comes back, and "done" shows, once the panel shows this run.
            line = self._record(values, result)
        except BaseException as exc:
            if self._ended_early(exc):
                return None
            raise
        self._job = None
        self.progress.value = 1
        self.status.value = f"done in {time.monotonic() - began:.1f} s ({self._runs_text()})"
        self.summary.value = f"<code>{html.escape(line)}</code>"
        self._set_busy(False)
        return result

    def _ended_early(self, exc: BaseException) -> bool:
        """Stop, Kernel > Interrupt, the cell awaiting the run interrupted, or a failure.

        The run is cancelled, its workers stop, and "runs so far" gains nothing. True when
        the run was stopped and ``run`` returns None; False when ``exc`` goes on up.
        """
        stopped = self._stopping or not isinstance(exc, Exception)
        job, self._job = self._job, None
        self._set_busy(False)
        if job is not None:
            job.cancel()
        if stopped:
            self.status.value = f"stopped: nothing added to the {self._runs_text()}"
            self.progress.value = 0
            return isinstance(exc, Exception)
        self.status.value = f"failed: {type(exc).__name__}: {exc}"
        return False

    def stop(self) -> None:
        """Cancel the run going on, if any; its workers stop, and nothing is added."""
        if self._job is not None and not self._stopping:
            self._stopping = True
            self.status.value = "stopping..."
            self._job.cancel()

    # -- what a subclass says ------------------------------------------------------------

    def _starting(self, values: dict[str, int]) -> None:
        """Before a run (the progress and summary are cleared already): say it starts, and
        clear the last run's image, each panel in its own way."""
        self.status.value = "starting..."

    def _start(self, values: dict[str, int]) -> Job:
        raise NotImplementedError

    async def _show_progress(self, job: Any, began: float, values: dict[str, int]) -> None:
        """Called every ``refresh_s`` while the run goes."""

    def _record(self, values: dict[str, int], result: Any) -> str:
        """Keep and draw a finished run; return its summary line."""
        raise NotImplementedError


class ControlPanel(Panel):
    """Sliders for the settings, Run and Stop, a progress bar and a live plot.

    ``controls`` names the sliders shown (keys of ``CONTROLS``); every setting also has a
    default, used when its slider is not shown. Each run draws completions over time
    against the ideal rate, and adds a point to the history: throughput against the first
    control (or ``history_x``).
    """

    history: list[tuple[dict[str, int], Summary]]

    def __init__(
        self,
        lab: Lab,
        function: str | None = None,
        *,
        handler: Callable[..., Any] | None = None,
        params: Mapping[str, str] | None = None,
        controls: Sequence[str] = ("threads",),
        threads: int = 4,
        processes: int = 1,
        concurrency: int = 8,
        upstream_delay_ms: int = 100,
        requests: int | None = None,
        duration_s: float | None = 3.0,
        history_x: str | None = None,
        limits: Mapping[str, tuple[int, int]] | None = None,
        refresh_s: float = 0.5,
        request: Mapping[str, Any] | None = None,
    ) -> None:
        unknown = [c for c in controls if c not in CONTROLS]
        if unknown:
            raise ValueError(f"unknown control(s) {unknown}; choose from {list(CONTROLS)}")
        # ``request``: Lab.run's request options, e.g. {"path": "/api/users/7", "method": "GET"}
        self.request = dict(request or {})
        if function is None and handler is None and "path" not in self.request:
            raise ValueError("name a function of the app, give a request path, or give a handler")
        self.lab = lab
        self.function = function
        self.handler = handler
        self.params = dict(params or {})
        self.requests = requests
        self.duration_s = None if requests is not None else duration_s
        self.refresh_s = refresh_s
        self.defaults = {
            "threads": threads,
            "processes": processes,
            "concurrency": concurrency,
            "upstream_delay_ms": upstream_delay_ms,
        }
        self.history_x = history_x or (controls[0] if controls else "threads")
        self.last: RunResult | None = None
        sliders = {name: self._slider(CONTROLS[name], limits) for name in controls}
        what = function or getattr(handler, "__name__", "handler")
        super().__init__(f"<b>{html.escape(what)}</b> under load", sliders, self.defaults)
        self._draw(None, None)

    def _slider(
        self, c: Control, limits: Mapping[str, tuple[int, int]] | None
    ) -> widgets.IntSlider:
        low, high = (limits or {}).get(c.name, (c.low, c.high))
        return widgets.IntSlider(
            value=min(max(self.defaults[c.name], low), high),
            min=low,
            max=high,
            step=c.step,
            description=c.description,
            tooltip=c.tooltip,
            continuous_update=False,
            style={"description_width": "80px"},
            layout=widgets.Layout(width="360px"),
        )

    # -- a run ---------------------------------------------------------------------------

    def _starting(self, values: dict[str, int]) -> None:
        self.status.value = "starting workers..."
        self._draw(None, None)

    def _start(self, values: dict[str, int]) -> RunHandle:
        return self.lab.start(
            self.function,
            handler=self.handler,
            processes=values["processes"],
            threads=values["threads"],
            concurrency=values["concurrency"],
            upstream_delay_ms=values["upstream_delay_ms"],
            requests=self.requests,
            duration_s=self.duration_s,
            params=self.params,
            **self.request,
        )

    def _record(self, values: dict[str, int], result: RunResult) -> str:
        self.history.append((values, result.summary))
        self._draw(result.records, result.summary)
        self.last = result
        return result.summary.line()

    async def _show_progress(self, handle: RunHandle, began: float, values: dict[str, int]) -> None:
        records = list(handle.records)
        if handle.total:
            self.progress.value = len(records) / handle.total
        elif self.duration_s:
            first = min((r.dispatched for r in records), default=None)
            if first is not None:
                self.progress.value = min(1.0, (records[-1].completed - first) / self.duration_s)
        if not records:
            self.status.value = f"starting workers... {time.monotonic() - began:.1f} s"
            return
        self.status.value = f"{len(records)} requests done"
        # Drawn on a worker thread: the kernel's loop stays free for other cells and Stop.
        self.image.value = await asyncio.to_thread(
            self._render, records, None, handle.ideal, values
        )

    # -- drawing -------------------------------------------------------------------------

    def _draw(self, records: Any, summary: Summary | None) -> None:
        self.image.value = self._render(records, summary, None, self.settings())

    def _render(
        self, records: Any, summary: Summary | None, ideal: Ideal | None, values: dict[str, int]
    ) -> bytes:
        """Left: this run's completions against the ideal rate; right: every run so far."""
        fig, (live, past) = plots.figure((9.0, 3.2), ncols=2)
        setting = (
            f"{values['processes']} process(es) x {values['threads']} threads, "
            f"{values['concurrency']} in flight"
        )
        if summary is not None:
            ideal_rps, ideal_error = summary.ideal_rps, summary.ideal_error_rps
        else:
            ideal_rps, ideal_error = (ideal.rps, ideal.error_rps) if ideal else (None, 0.0)
        plots.progress(
            records or [],
            ax=live,
            ideal_rps=ideal_rps,
            ideal_error_rps=ideal_error,
            title=f"this run: {setting}",
        )
        history = list(self.history)
        if history:
            plots.throughput_vs(
                [s for _, s in history],
                x=self.history_x,
                ax=past,
                x_values=[v[self.history_x] for v, _ in history],
                logx=False,
                title="runs so far",
            )
        else:
            past.set_title("runs so far: none yet", fontsize=10)
            past.set_ylabel("throughput (requests/s)")
        past.set_xlabel(SHORT_LABELS.get(self.history_x, self.history_x), fontsize=9)
        return plots.png(fig, dpi=80)

    # -- for notebooks and tests ---------------------------------------------------------

    def history_frame(self) -> Any:
        """The runs so far as a pandas DataFrame: settings, throughput, ideal, efficiency."""
        import pandas as pd

        rows = []
        for values, s in self.history:
            rows.append(
                {
                    **values,
                    "throughput_rps": s.throughput_rps,
                    "ideal_rps": s.ideal_rps if math.isfinite(s.ideal_rps) else None,
                    "efficiency": s.efficiency,
                    "p50_ms": s.latency_ms["p50"],
                    "errors": s.errors,
                }
            )
        return pd.DataFrame(rows)

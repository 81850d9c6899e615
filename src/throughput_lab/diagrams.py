"""Pictures of the worker model, drawn by the lab itself (notebooks 00 and 05).

Boxes and arrows in matplotlib, in the palette of ``plots``; each figure carries alt text
that says what it shows, in words, for screen readers and the rendered site.
"""

from __future__ import annotations

from typing import Any

from matplotlib.axes import Axes
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from .app_settings import default_executor_threads
from .plots import OKABE_ITO, WorkbookFigure

HOST = OKABE_ITO["orange"]
LOOP = OKABE_ITO["blue"]
POOL = OKABE_ITO["bluish green"]
EXECUTOR = OKABE_ITO["reddish purple"]
LIBUV = OKABE_ITO["sky blue"]


class Diagram(WorkbookFigure):
    """A drawing, not a measurement: its alt text is written, not read from axes."""

    alt = "Figure (a diagram)"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict, dict]:
        data, metadata = super()._repr_mimebundle_(include, exclude)
        data["text/plain"] = self.alt
        metadata["image/png"]["alt"] = self.alt
        return data, metadata


def _canvas(size: tuple[float, float], alt: str) -> tuple[Diagram, Axes]:
    fig = Diagram(figsize=size, dpi=100, layout="constrained")
    fig.alt = alt
    ax = fig.subplots()
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_axis_off()
    return fig, ax


def _box(
    ax: Axes,
    xy: tuple[float, float],
    wh: tuple[float, float],
    colour: str,
    text: str = "",
    *,
    filled: bool = True,
    size: float = 8.5,
    top: bool = False,
) -> None:
    (x, y), (w, h) = xy, wh
    ax.add_patch(
        FancyBboxPatch(
            (x, y),
            w,
            h,
            boxstyle="round,pad=0.4,rounding_size=1.5",
            facecolor=colour if filled else "white",
            edgecolor=colour,
            alpha=0.25 if filled else 1.0,
            linewidth=1.5,
        )
    )
    if text:
        ty, va = (y + h - 1.5, "top") if top else (y + h / 2, "center")
        ax.text(x + w / 2, ty, text, ha="center", va=va, fontsize=size, wrap=True)


def _arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], text: str = "") -> None:
    ax.add_patch(
        FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, color="black", lw=1)
    )
    if text:
        ax.text(
            (start[0] + end[0]) / 2 + 1, (start[1] + end[1]) / 2, text, fontsize=7.5, va="center"
        )


def worker_model(processes: int = 2, threads: int = 4) -> Diagram:
    """One instance: the host, its worker processes, each an event loop and a thread pool."""
    processes = max(1, min(processes, 4))  # more would not be legible; the text says how many
    alt = (
        "Diagram of one instance. The Functions host receives the requests and hands each "
        f"invocation, round-robin, to one of {processes} worker process(es) "
        "(FUNCTIONS_WORKER_PROCESS_COUNT). Each worker process has one event loop on one "
        "thread, where async def functions run, and one thread pool of "
        f"{threads} thread(s) (PYTHON_THREADPOOL_THREAD_COUNT), where def functions run."
    )
    fig, ax = _canvas((9.0, 4.6), alt)
    title = (
        "one instance: FUNCTIONS_WORKER_PROCESS_COUNT worker processes, "
        "PYTHON_THREADPOOL_THREAD_COUNT threads each"
    )
    _box(ax, (1, 1), (98, 97), OKABE_ITO["black"], title, filled=False, top=True)
    _box(ax, (30, 78), (40, 10), HOST, "Functions host: requests in, invocations out")
    width = 92 / processes
    for p in range(processes):
        x = 4 + p * width
        _box(
            ax,
            (x, 4),
            (width - 3, 58),
            OKABE_ITO["black"],
            f"worker process {p + 1}",
            filled=False,
            top=True,
        )
        _arrow(ax, (50, 77), (x + (width - 3) / 2, 63), "round-robin" if p == 0 else "")
        inner = width - 7
        _box(ax, (x + 2, 36), (inner, 14), LOOP, "event loop (1 thread)\nasync def runs here")
        _box(ax, (x + 2, 7), (inner, 24), POOL, "", top=True)
        ax.text(x + 2 + inner / 2, 27, "thread pool: def runs here", ha="center", fontsize=8.5)
        shown = min(threads, 6)
        step = inner / (shown + (1 if threads > shown else 0))
        for t in range(shown):
            _box(ax, (x + 3 + t * step, 10), (step * 0.6, 9), POOL)
        if threads > shown:
            ax.text(x + 3 + shown * step, 14, "...", fontsize=10, va="center")
        ax.text(x + 2 + inner / 2, 8, f"{threads} thread(s)", ha="center", fontsize=7.5)
    return fig


def two_pools(loop: str = "asyncio", lookup_pool: str | None = None) -> Diagram:
    """One worker process's pools, and which one a host-name lookup takes on ``loop``.

    ``lookup_pool`` is what the kernel measured (``worker_process.lookup_threads``):
    "default executor" or "libuv"; by default, what the loop is documented to use.
    """
    lookup_pool = lookup_pool or ("libuv" if loop == "uvloop" else "default executor")
    executor = default_executor_threads()
    alt = (
        f"Diagram of one worker process on the {loop} event loop and its thread pools. "
        "def functions run on the worker's pool, sized by PYTHON_THREADPOOL_THREAD_COUNT. "
        "run_in_executor(None, ...) and asyncio.to_thread run on the event loop's default "
        f"executor, min(32, cpus + 4) = {executor} threads here, which no app setting sizes. "
        f"Host-name lookups (loop.getaddrinfo) run on the {lookup_pool}"
        + (
            ": libuv's own pool, 4 threads unless UV_THREADPOOL_SIZE says otherwise."
            if lookup_pool == "libuv"
            else "."
        )
    )
    fig, ax = _canvas((9.0, 4.2), alt)
    _box(ax, (1, 1), (98, 97), OKABE_ITO["black"], "one worker process", filled=False, top=True)
    _box(ax, (33, 70), (34, 14), LOOP, f"event loop ({loop})\nasync def runs here")
    pools = [
        (
            "the worker's pool",
            "def functions\nPYTHON_THREADPOOL_THREAD_COUNT",
            POOL,
        ),
        (
            "default executor",
            f"run_in_executor(None, ...)\nasyncio.to_thread\nmin(32, cpus + 4) = {executor}",
            EXECUTOR,
        ),
        ("libuv", "uvloop's own pool\n4 (UV_THREADPOOL_SIZE)", LIBUV),
    ]
    for i, (name, text, colour) in enumerate(pools):
        x = 4 + i * 32
        used = name != "libuv" or loop == "uvloop"
        _box(ax, (x, 6), (28, 36), colour if used else OKABE_ITO["black"], filled=used)
        ax.text(x + 14, 38, name, ha="center", va="top", fontsize=9, weight="bold")
        ax.text(x + 14, 22, text, ha="center", va="center", fontsize=7.5)
        if not used:
            ax.text(x + 14, 9, "(not used on asyncio's loop)", ha="center", fontsize=7.5)
        if name == lookup_pool:
            ax.text(x + 14, 9, "host-name lookups (getaddrinfo)", ha="center", fontsize=7.5)
        if name == "default executor":
            _arrow(ax, (50, 69), (x + 14, 43), "run_in_executor(None)")
        if name == "libuv" and loop == "uvloop":
            _arrow(ax, (60, 69), (x + 14, 43), "getaddrinfo")
    _arrow(ax, (34, 72), (18, 43), "")
    ax.text(5, 58, "the worker submits\neach def invocation", fontsize=7.5)
    return fig

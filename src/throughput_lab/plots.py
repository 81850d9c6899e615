"""Figures for the workbook: each one shows a measurement next to its ideal.

Colours are the Okabe-Ito palette (readable with every common colour-vision deficiency);
lines also differ by style and marker, so a figure still reads in grey on a handout.
Every function takes an optional ``ax`` and returns the figure. Figures are built without
pyplot's figure manager, so a notebook cell shows one (as a PNG) only when it returns it
or calls ``display``, never twice, and no GUI backend is needed.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from typing import Any

import matplotlib.ticker
from matplotlib.axes import Axes
from matplotlib.container import BarContainer
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .invocation import InvocationRecord
from .metrics import Summary, percentile

# Okabe & Ito (2008), "Color Universal Design".
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky blue": "#56B4E9",
    "bluish green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish purple": "#CC79A7",
}
MEASURED = OKABE_ITO["blue"]
IDEAL = OKABE_ITO["orange"]
WAITING = "#BBBBBB"
WAITING_HATCH = "////"
WAIT_SHOWN_S = 0.002  # shorter waits (the hop from host to worker) are not drawn
SERIES = [
    OKABE_ITO[c]
    for c in (
        "blue",
        "vermillion",
        "bluish green",
        "reddish purple",
        "sky blue",
        "orange",
        "black",
        "yellow",
    )
]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
X_LABELS = {
    "threads": "threads per worker process (PYTHON_THREADPOOL_THREAD_COUNT)",
    "processes": "worker processes (FUNCTIONS_WORKER_PROCESS_COUNT)",
    "concurrency": "requests in flight",
    "upstream_delay_ms": "upstream delay (ms)",
}


class WorkbookFigure(Figure):
    """A matplotlib Figure that a notebook shows as a PNG when a cell returns it.

    The PNG carries alt text (output metadata ``image/png: {alt: ...}``), which the
    rendered site puts on the image for screen readers.
    """

    def _repr_png_(self) -> bytes:
        return png(self)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict, dict]:
        text = alt_text(self)
        return {"image/png": png(self), "text/plain": text}, {"image/png": {"alt": text}}


def alt_text(fig: Figure) -> str:
    """What each panel of ``fig`` shows, from its own title, axis labels, bars and legend."""
    parts = []
    for ax in fig.axes:
        bars = _bar_values(ax)
        title = ax.get_title() or ("a bar chart" if bars else "a plot")
        rows = [t.get_text() for t in ax.get_yticklabels() if not _is_number(t.get_text())]
        y = ax.get_ylabel() or ("rows " + "; ".join(rows) if rows else "values")
        x = ax.get_xlabel()
        what = [f"{title}: {y} against {x}" if x else f"{title}: {y}"]
        if bars:
            what.append("bars: " + "; ".join(bars))
        legend = ax.get_legend()
        if legend is not None:
            labels = [t.get_text() for t in legend.get_texts() if t.get_text()]
            if labels:
                what.append("key: " + "; ".join(labels))
        parts.append(", ".join(what))
    return "Figure. " + ". ".join(parts) if parts else "Figure (empty)"


def _bar_values(ax: Axes) -> list[str]:
    """Each bar as "name = value": its tick label, and the value written on it if any."""
    heights = [b.get_height() for c in ax.containers if isinstance(c, BarContainer) for b in c]
    if not heights:
        return []
    names = [t.get_text().replace("\n", " ") for t in ax.get_xticklabels()]
    if len(names) != len(heights):
        names = [str(i + 1) for i in range(len(heights))]
    written = [t.get_text() for t in ax.texts]
    values = written if len(written) == len(heights) else [f"{h:.3g}" for h in heights]
    ideals = _bar_ideals(ax)
    return [
        f"{name} = {value}" + (f" (ideal {ideals[i]:.3g})" if i in ideals else "")
        for i, (name, value) in enumerate(zip(names, values, strict=True))
    ]


def _bar_ideals(ax: Axes) -> dict[int, float]:
    """The dashed ideal mark over each bar that has one (``bars(ideal=...)``), by position."""
    marks = {}
    for collection in ax.collections:
        for segment in getattr(collection, "get_segments", list)():
            (x0, y0), (x1, y1) = segment[0], segment[-1]
            if y0 == y1:
                marks[round((x0 + x1) / 2)] = float(y0)
    return marks


def _is_number(text: str) -> bool:
    try:
        float(text.replace("\u2212", "-"))  # matplotlib's minus sign
    except ValueError:
        return not text  # an empty label says nothing either
    return True


def png(fig: Figure, dpi: int | None = None) -> bytes:
    """The figure rendered as PNG bytes (Agg; no display needed)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi or fig.dpi)
    return buffer.getvalue()


def figure(
    size: tuple[float, float] = (7.0, 3.6), ncols: int = 1, nrows: int = 1
) -> tuple[Figure, Any]:
    """A figure with its axes (``nrows`` x ``ncols``), shown only when a cell returns it."""
    fig = WorkbookFigure(figsize=size, dpi=100, layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=True)


def new_axes(ax: Axes | None, size: tuple[float, float] = (7.0, 3.6)) -> tuple[Figure, Axes]:
    """The given axes and their figure, or a fresh figure with one axes."""
    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    return figure(size)


def _summary(item: Any) -> Summary:
    return item.summary if hasattr(item, "summary") else item


def _records(item: Any) -> list[InvocationRecord]:
    return list(item.records if hasattr(item, "records") else item)


# -- timeline -----------------------------------------------------------------------------


def _thread_label(name: str) -> str:
    if name.startswith("worker-pool_"):
        return f"thread {name.rsplit('_', 1)[1]}"
    if name in ("MainThread", "in-process-worker"):
        return "event loop"
    return name


def _lane_key(record: InvocationRecord) -> tuple[int, int, str]:
    name = record.thread
    order = int(name.rsplit("_", 1)[1]) if name.startswith("worker-pool_") else -1
    return (record.worker, order, name)


def _pack(intervals: list[tuple[float, float, Any]]) -> list[list[Any]]:
    """Rows in which no two intervals overlap (each goes to the first row free by then)."""
    rows: list[list[Any]] = []
    row_end: list[float] = []
    for begin, end, record in sorted(intervals, key=lambda t: t[0]):
        for i, free_at in enumerate(row_end):
            if free_at <= begin:
                rows[i].append(record)
                row_end[i] = end
                break
        else:
            rows.append([record])
            row_end.append(end)
    return rows


def timeline(result: Any, ax: Axes | None = None, limit: int = 300) -> Figure:
    """Invocations over time: for each worker process, a band of requests waiting, then
    one band per lane that runs code (each pool thread, or the event loop).

    Grey hatched bars are requests sent by the host whose code has not started: queued for
    a pool thread, or behind a blocked event loop. Solid coloured bars are code running, one
    colour per worker process; every band is labelled too, so colour is never the only cue.
    Bars that overlap in time are stacked inside their band: many ``async def`` invocations
    at once on one event loop fill its band from top to bottom.
    Only the first ``limit`` invocations (by the time they were sent) are drawn.
    """
    every = _records(result)
    records = sorted((r for r in every if r.started and r.ended), key=lambda r: r.dispatched)[
        :limit
    ]
    fig, ax = new_axes(ax, (8.0, 4.2))
    if not records:
        ax.text(0.5, 0.5, "no invocations ran", ha="center", va="center", transform=ax.transAxes)
        return fig
    t0 = min(r.dispatched for r in records)
    lanes: dict[tuple[int, int, str], list[InvocationRecord]] = {}
    for r in records:
        lanes.setdefault(_lane_key(r), []).append(r)
    _draw_bands(ax, _timeline_bands(records, lanes, t0))
    ax.set_xlim(0, max(r.completed for r in records) - t0)
    ax.set_xlabel("seconds since the first request was sent")
    _timeline_legend(ax, sorted({k[0] for k in lanes}))
    shown = f" (first {len(records)} of {len(every)})" if len(every) > len(records) else ""
    ax.set_title(f"{records[0].function}: requests over time{shown}", fontsize=10)
    return fig


# A timeline's band: its label, its colour, and its bars as (begin, end) in seconds.
_Band = tuple[str, str, list[tuple[float, float]]]


def _timeline_bands(
    records: list[InvocationRecord],
    lanes: dict[tuple[int, int, str], list[InvocationRecord]],
    t0: float,
) -> list[_Band]:
    """For each worker process: its requests waiting, then one band per lane running code."""
    bands: list[_Band] = []
    for worker in sorted({key[0] for key in lanes}):
        colour = SERIES[worker % len(SERIES)] if worker >= 0 else MEASURED
        waits = [
            (r.dispatched - t0, r.started - t0)
            for r in records
            if r.worker == worker and r.started - r.dispatched > WAIT_SHOWN_S
        ]
        bands.append((f"process {worker}, waiting", WAITING, waits))
        for key in sorted(k for k in lanes if k[0] == worker):
            runs = [(r.started - t0, max(r.ended - t0, r.started - t0 + 1e-4)) for r in lanes[key]]
            bands.append((f"process {worker}, {_thread_label(key[2])}", colour, runs))
    return bands


def _draw_bands(ax: Axes, bands: list[_Band]) -> None:
    """The bands bottom-up (the first at the top), bars that overlap stacked in rows."""
    ticks, labels = [], []
    y = 0.0
    for label, colour, intervals in reversed(bands):
        rows = _pack([(begin, end, (begin, end)) for begin, end in intervals]) or [[]]
        band = min(3.0, max(1.0, len(rows) / 6))  # many overlapping bars: a taller band
        height = band / len(rows)
        for i, row in enumerate(rows):
            spans = [(begin, end - begin) for begin, end in row]
            ax.broken_barh(
                spans,
                (y + i * height + 0.05 * height, 0.9 * height),
                facecolor=colour,
                # Waiting is hatched as well as grey: it reads without colour, and in print.
                hatch=WAITING_HATCH if colour == WAITING else None,
                edgecolor="white",  # so back-to-back invocations stay apart
                linewidth=0.6 if len(rows) < 30 else 0.2,
            )
        ticks.append(y + band / 2)
        labels.append(label if intervals or "waiting" not in label else f"{label} (none)")
        ax.axhline(y - 0.05, color="#DDDDDD", linewidth=0.5)
        y += band + 0.1
    ax.set_yticks(ticks, labels, fontsize=8 if len(labels) > 12 else 9)
    ax.set_ylim(-0.1, y)


def _timeline_legend(ax: Axes, workers: list[int]) -> None:
    """The key under the plot: waiting (hatched), then running, for the first 4 processes."""
    handles = [
        Patch(
            facecolor=WAITING,
            edgecolor="white",
            hatch=WAITING_HATCH,
            label="waiting (sent, code not started), hatched",
        )
    ]
    handles += [
        Patch(color=SERIES[w % len(SERIES)], label=f"running in process {w}") for w in workers[:4]
    ]
    ax.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.16),
        ncol=len(handles),
        fontsize=8,
        frameon=False,
    )


# -- throughput against a setting ---------------------------------------------------------


def throughput_vs(
    summaries: Iterable[Any],
    x: str = "threads",
    ax: Axes | None = None,
    logx: bool | None = None,
    label: str | None = None,
    x_values: Sequence[float] | None = None,
    title: str | None = None,
) -> Figure:
    """Measured throughput (solid, markers) and its ideal (dashed) against a setting, each ±.

    ``x`` is a Summary attribute: "threads", "processes" or "concurrency"; or give the
    values yourself in ``x_values`` (one per summary; ``x`` then only names the axis).
    One pair of lines per function (or one named ``label``), and per value of the other
    settings: runs with different requests in flight, say, are not joined into one line.
    """
    items = [_summary(s) for s in summaries]
    xs_given = list(x_values) if x_values is not None else [getattr(s, x) or 0 for s in items]
    if len(xs_given) != len(items):
        raise ValueError(f"{len(xs_given)} x values for {len(items)} summaries")
    fig, ax = new_axes(ax)
    groups: dict[str, list[tuple[float, Summary]]] = {}
    for value, s in zip(xs_given, items, strict=True):
        groups.setdefault(_series_name(label or s.function, s, x, items), []).append((value, s))
    xs_all: list[float] = []
    for i, (name, pairs) in enumerate(groups.items()):
        pairs.sort(key=lambda pair: pair[0])
        colour = SERIES[i % len(SERIES)]
        ideal_colour = IDEAL if len(groups) == 1 else colour
        xs_all += _plot_measured_and_ideal(
            ax, name, pairs, colour, MARKERS[i % len(MARKERS)], ideal_colour
        )
    _setting_axis(ax, x, xs_all, logx)
    ax.set_ylabel("throughput (requests/s)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def _plot_measured_and_ideal(
    ax: Axes,
    name: str,
    pairs: list[tuple[float, Summary]],
    colour: str,
    marker: str,
    ideal_colour: str,
) -> list[float]:
    """One series: measured throughput (solid, markers) and its ideal (dashed), each ±.
    Returns the x values drawn."""
    xs = [v for v, _ in pairs]
    group = [s for _, s in pairs]
    ax.errorbar(
        xs,
        [s.throughput_rps for s in group],
        yerr=[s.throughput_error_rps for s in group],
        color=colour,
        marker=marker,
        linewidth=2,
        capsize=3,
        label=f"{name}: measured ±",
    )
    ideals = [s.ideal_rps if math.isfinite(s.ideal_rps) else math.nan for s in group]
    ax.errorbar(
        xs,
        ideals,
        yerr=[s.ideal_error_rps for s in group],
        color=ideal_colour,
        linestyle="--",
        linewidth=1.5,
        capsize=2,
        label=f"{name}: ideal (Little's law) ±",
    )
    return xs


def _setting_axis(ax: Axes, x: str, xs: list[float], logx: bool | None) -> None:
    """The setting's axis: log 2 when asked, or (``logx`` None) when it spans 16x or more;
    a tick at each value run, and the setting's name."""
    if logx is None:
        positive = [v for v in xs if v > 0]
        logx = bool(positive) and max(positive) / min(positive) >= 16
    if logx:
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    if xs:
        ax.set_xticks(sorted(set(xs)))
    ax.set_xlabel(X_LABELS.get(x, x))


def _series_name(name: str, s: Summary, x: str, items: Sequence[Summary]) -> str:
    """The function, plus whichever other settings differ between the runs plotted."""
    parts = [name]
    settings = (("processes", "process(es)"), ("threads", "threads"), ("concurrency", "in flight"))
    for other, unit in settings:
        if other != x and len({getattr(t, other) for t in items}) > 1:
            parts.append(f"{getattr(s, other)} {unit}")
    return ", ".join(parts)


# -- latency ------------------------------------------------------------------------------


def latency_hist(result: Any, ax: Axes | None = None, bins: int = 30) -> Figure:
    """How long requests took (host sent -> host got the answer), with p50/p95/p99.

    The dotted line is one invocation alone (the service time measured before the run):
    everything to its right is time spent waiting behind other invocations.
    """
    records = [r for r in _records(result) if r.ok]
    fig, ax = new_axes(ax)
    latencies = [r.latency_ms for r in records]
    if not latencies:
        ax.text(
            0.5, 0.5, "no successful invocations", ha="center", va="center", transform=ax.transAxes
        )
        return fig
    ax.hist(latencies, bins=bins, color=MEASURED, alpha=0.85)
    summary = _summary(result) if hasattr(result, "summary") else None
    marks = [
        ("p50", "-", OKABE_ITO["black"]),
        ("p95", "--", OKABE_ITO["vermillion"]),
        ("p99", ":", OKABE_ITO["reddish purple"]),
    ]
    for name, style, colour in marks:
        value = percentile(latencies, float(name[1:]))
        ax.axvline(
            value, color=colour, linestyle=style, linewidth=1.5, label=f"{name} {value:.0f} ms"
        )
    if summary is not None and summary.service_ms > 0:
        ax.axvline(
            summary.service_ms,
            color=IDEAL,
            linestyle="-.",
            linewidth=2,
            label=f"alone {summary.service_ms:.0f} ms",
        )
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("requests")
    ax.set_xlim(left=0)
    ax.legend(fontsize=8)
    ax.set_title(f"{records[0].function}: latency of {len(latencies)} requests", fontsize=10)
    return fig


# -- a thread x process sweep -------------------------------------------------------------


def heatmap(
    summaries: Iterable[Any], ax: Axes | None = None, value: str = "throughput_rps"
) -> Figure:
    """A thread x process sweep: each cell the measured value, with % of ideal under it."""
    items = [_summary(s) for s in summaries]
    fig, ax = new_axes(ax, (6.0, 3.8))
    threads = sorted({s.threads or 0 for s in items})
    processes = sorted({s.processes or 0 for s in items})
    grid = [[math.nan] * len(threads) for _ in processes]
    eff = [[math.nan] * len(threads) for _ in processes]
    for s in items:
        i, j = processes.index(s.processes or 0), threads.index(s.threads or 0)
        grid[i][j] = getattr(s, value)
        eff[i][j] = s.efficiency
    image = ax.imshow(grid, cmap="cividis", origin="lower", aspect="auto")
    finite = [v for row in grid for v in row if math.isfinite(v)]
    middle = (min(finite) + max(finite)) / 2 if finite else 0
    for i in range(len(processes)):
        for j in range(len(threads)):
            v = grid[i][j]
            if math.isfinite(v):
                text = f"{v:.0f}" if v >= 10 else f"{v:.1f}"
                if math.isfinite(eff[i][j]) and eff[i][j] > 0:
                    text += f"\n{eff[i][j]:.0%}"
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="black" if v > middle else "white",
                )
    ax.set_xticks(range(len(threads)), [str(t) for t in threads])
    ax.set_yticks(range(len(processes)), [str(p) for p in processes])
    ax.set_xlabel(X_LABELS["threads"])
    ax.set_ylabel("worker processes")
    name = "throughput (requests/s)" if value == "throughput_rps" else value.replace("_", " ")
    fig.colorbar(image, ax=ax, label=name)
    ax.set_title(
        f"{items[0].function if items else ''}: {name} (% = of the ideal)",
        fontsize=10,
    )
    return fig


# -- live progress of a run ---------------------------------------------------------------


def progress(
    records: Sequence[InvocationRecord],
    ax: Axes | None = None,
    ideal_rps: float | None = None,
    title: str | None = None,
    ideal_error_rps: float = 0.0,
) -> Figure:
    """Completed invocations over time, and the line the ideal rate would draw (± shaded)."""
    fig, ax = new_axes(ax, (5.0, 3.2))
    done = sorted(r.completed for r in records if r.completed)
    ax.set_xlabel("seconds into the run")
    ax.set_ylabel("requests completed")
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    if not done:
        return fig
    t0 = min(r.dispatched for r in records if r.dispatched)
    xs = [0.0] + [t - t0 for t in done]
    ax.step(
        xs,
        range(len(xs)),
        where="post",
        color=MEASURED,
        linewidth=2,
        label=f"measured {len(done) / max(xs[-1], 1e-9):.1f} req/s",
    )
    if ideal_rps and math.isfinite(ideal_rps):
        ax.plot(
            [0, xs[-1]],
            [0, ideal_rps * xs[-1]],
            color=IDEAL,
            linestyle="--",
            label=f"ideal {ideal_rps:.1f} ± {ideal_error_rps:.1f} req/s",
        )
        if ideal_error_rps > 0:
            end = xs[-1]
            ax.fill_between(
                [0, end],
                [0, (ideal_rps - ideal_error_rps) * end],
                [0, (ideal_rps + ideal_error_rps) * end],
                color=IDEAL,
                alpha=0.15,
                linewidth=0,
            )
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, loc="upper left")
    return fig


def bars(
    values: dict[str, float],
    ax: Axes | None = None,
    ylabel: str = "",
    ideal: dict[str, float] | None = None,
    fmt: str = "{:.1f}",
    colors: dict[str, str] | None = None,
) -> Figure:
    """Named measurements side by side, each with its ideal as a dashed mark if given."""
    fig, ax = new_axes(ax, (6.0, 3.2))
    names = list(values)
    heights = [values[n] for n in names]
    ax.bar(names, heights, color=[(colors or {}).get(n, MEASURED) for n in names])
    marks = {n: v for n, v in (ideal or {}).items() if n in values and math.isfinite(v)}
    for i, n in enumerate(names):
        if n in marks:
            ax.hlines(marks[n], i - 0.4, i + 0.4, colors=IDEAL, linestyles="--", linewidth=2)
    top = max([*heights, *marks.values(), 0.0]) or 1.0
    ax.set_ylim(0, top * 1.12)
    for i, n in enumerate(names):
        inside = values[n] > 0.2 * top
        ax.text(
            i,
            values[n] * (0.97 if inside else 1.0) + (0 if inside else 0.01 * top),
            fmt.format(values[n]),
            ha="center",
            va="top" if inside else "bottom",
            fontsize=9,
            color="white" if inside else "black",
        )
    if marks:
        ax.plot([], [], color=IDEAL, linestyle="--", linewidth=2, label="ideal")
        ax.legend(fontsize=8, loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    return fig

"""Figures read without their colours: alt text on every PNG a notebook shows, and the
timeline tells waiting from running by hatching and label as well as by colour."""

from __future__ import annotations

import pytest

from throughput_lab import plots
from throughput_lab.invocation import InvocationRecord

# Behaves the same on every Python: CI runs it once, with the first of CI_PYTHONS.
pytestmark = pytest.mark.once


def _records() -> list[InvocationRecord]:
    # Five requests sent at once to one thread: each waits for the one before it.
    return [
        InvocationRecord(
            i,
            "sync_io",
            worker=0,
            thread="ThreadPoolExecutor-0_0",
            dispatched=0.0,
            started=0.05 * i,
            ended=0.05 * (i + 1),
            completed=0.05 * (i + 1),
        )
        for i in range(5)
    ]


def test_a_shown_figure_carries_alt_text_from_its_own_labels() -> None:
    fig = plots.timeline(_records())
    data, metadata = fig._repr_mimebundle_()
    assert data["image/png"].startswith(b"\x89PNG")
    alt = metadata["image/png"]["alt"]
    assert "sync_io: requests over time" in alt
    assert "seconds since the first request was sent" in alt
    assert "waiting" in alt and "running in process 0" in alt


def test_alt_text_names_every_panel_of_a_figure() -> None:
    fig, (left, right) = plots.figure(ncols=2)
    left.set_title("this run")
    right.set_title("runs so far")
    right.set_ylabel("throughput (requests/s)")
    alt = plots.alt_text(fig)
    assert "this run" in alt and "runs so far: throughput (requests/s)" in alt


def test_the_timeline_hatches_waiting_and_not_running() -> None:
    ax = plots.timeline(_records()).axes[0]
    hatched = [bars.get_hatch() for bars in ax.collections if bars.get_facecolor().size]
    waiting = [h for h, bars in zip(hatched, ax.collections, strict=True) if h]
    assert waiting and len(waiting) < len(hatched), "waiting hatched, running solid"
    legend = {
        t.get_text(): h
        for t, h in zip(ax.get_legend().get_texts(), ax.get_legend().legend_handles, strict=True)
    }
    assert any("waiting" in text and handle.get_hatch() for text, handle in legend.items())
    assert any("running" in text and not handle.get_hatch() for text, handle in legend.items())


def test_a_bar_chart_says_each_bar_and_its_ideal() -> None:
    fig = plots.bars(
        {"1": 52.3, "2": 104.9}, ylabel="worker memory (MB)", ideal={"1": 60.0}, fmt="{:.0f}"
    )
    alt = plots.alt_text(fig)
    assert "a bar chart: worker memory (MB)" in alt and "against x" not in alt
    assert "bars: 1 = 52 (ideal 60); 2 = 105" in alt


def test_the_diagrams_say_in_words_what_they_draw() -> None:
    from throughput_lab import diagrams

    data, metadata = diagrams.worker_model(processes=3, threads=8)._repr_mimebundle_()
    assert data["image/png"].startswith(b"\x89PNG")
    alt = metadata["image/png"]["alt"]
    assert "3 worker process(es)" in alt and "8 thread(s)" in alt and "round-robin" in alt
    assert "async def functions run" in alt and "def functions run" in alt
    assert "FUNCTIONS_WORKER_PROCESS_COUNT" in alt and "PYTHON_THREADPOOL_THREAD_COUNT" in alt
    on_uvloop = diagrams.two_pools("uvloop", "libuv")._repr_mimebundle_()[1]["image/png"]["alt"]
    on_asyncio = diagrams.two_pools("asyncio")._repr_mimebundle_()[1]["image/png"]["alt"]
    assert "lookups (loop.getaddrinfo) run on the libuv" in on_uvloop
    assert "lookups (loop.getaddrinfo) run on the default executor" in on_asyncio
    assert all("no app setting sizes" in alt for alt in (on_uvloop, on_asyncio))

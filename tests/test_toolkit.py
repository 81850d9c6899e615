"""The notebook toolkit (plots, panels, checks) on made-up runs: fast, no worker processes."""

from __future__ import annotations

import asyncio
import importlib
import re
import sys
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import matplotlib
import pytest

from throughput_lab import checks, plots
from throughput_lab.channel import WorkerStats
from throughput_lab.invocation import InvocationRecord
from throughput_lab.lab import RunResult
from throughput_lab.metrics import Ideal, summarize
from throughput_lab.panel import CONTROLS, ControlPanel

matplotlib.use("Agg")
PNG = b"\x89PNG\r\n\x1a\n"


# -- made-up runs -------------------------------------------------------------------------


def records(
    n: int = 12,
    threads: int = 2,
    workers: int = 1,
    run_s: float = 0.1,
    function: str = "sync_io",
    thread_name: str | None = None,
) -> list[InvocationRecord]:
    """Requests all sent at 0, run ``threads`` at a time per worker, back to back."""
    out = []
    for i in range(n):
        worker = i % workers
        slot = (i // workers) % threads
        round_ = (i // workers) // threads
        started = 1.0 + round_ * run_s
        out.append(
            InvocationRecord(
                i,
                function,
                worker=worker,
                pid=1000 + worker,
                thread=thread_name or f"worker-pool_{slot}",
                dispatched=1.0,
                submitted=1.0,
                started=started,
                ended=started + run_s,
                completed=started + run_s + 0.001,
                cpu_ms=1.0,
                longest_step_ms=run_s * 1e3 if thread_name else 0.0,
                status=200,
            )
        )
    return out


def result(
    threads: int = 2, processes: int = 1, n: int = 12, function: str = "sync_io"
) -> RunResult:
    recs = records(n, threads, processes, function=function)
    elapsed = max(r.completed for r in recs) - 1.0
    ideal = Ideal(threads * processes / 0.1, "thread pool")
    summary = summarize(
        recs,
        function=function,
        processes=processes,
        threads=threads,
        concurrency=8,
        elapsed_s=elapsed,
        startup_s=0.3,
        ideal=ideal,
        service_s=0.1,
        worker_stats=[WorkerStats(max_loop_lag_ms=2.0, rss_bytes=50 * 2**20)],
        upstream_peak=4,
    )
    return RunResult(summary, recs)


# -- plots --------------------------------------------------------------------------------


def test_every_plot_returns_a_figure_that_shows_as_png():
    run = result()
    sweep = [result(t).summary for t in (1, 2, 4)]
    grid = [result(t, p).summary for t in (1, 2) for p in (1, 2)]
    figures = [
        plots.timeline(run),
        plots.throughput_vs(sweep, x="threads"),
        plots.latency_hist(run),
        plots.heatmap(grid),
        plots.progress(run.records, ideal_rps=20.0),
        plots.bars({"a": 1.0, "b": 2.0}, ideal={"a": 2.0}),
    ]
    for fig in figures:
        assert isinstance(fig, plots.WorkbookFigure)
        assert fig._repr_png_().startswith(PNG)


def test_plots_draw_into_given_axes():
    fig, axes = plots.figure((8, 3), ncols=2)
    assert plots.timeline(result(), ax=axes[0]) is fig
    assert plots.latency_hist(result(), ax=axes[1]) is fig


def test_timeline_has_a_waiting_band_and_one_lane_per_thread():
    fig = plots.timeline(result(threads=2, processes=2))
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert "process 0, waiting" in labels
    assert {"process 0, thread 0", "process 0, thread 1", "process 1, thread 1"} <= set(labels)


def test_timeline_names_the_event_loop_lane_and_stacks_overlapping_calls():
    recs = [
        InvocationRecord(
            i,
            "async_io",
            worker=0,
            thread="MainThread",
            dispatched=1.0,
            started=1.0,
            ended=1.1,
            completed=1.1,
            status=200,
        )
        for i in range(5)
    ]
    fig = plots.timeline(recs)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert "process 0, event loop" in labels
    bars = [c for c in fig.axes[0].collections if len(c.get_paths())]
    assert len(bars) >= 5  # five overlapping invocations: five rows in the loop's band


def test_timeline_limits_what_it_draws_and_says_so():
    fig = plots.timeline(result(n=40), limit=10)
    assert "first 10 of 40" in fig.axes[0].get_title()


def test_plots_use_the_okabe_ito_palette():
    fig = plots.throughput_vs([result(t).summary for t in (1, 2, 4)])
    colours = {matplotlib.colors.to_hex(line.get_color()).upper() for line in fig.axes[0].lines}
    assert colours <= {c.upper() for c in plots.OKABE_ITO.values()}


def test_throughput_vs_takes_its_own_x_values():
    summaries = [result(t).summary for t in (1, 2)]
    fig = plots.throughput_vs(summaries, x="upstream_delay_ms", x_values=[50, 100])
    assert fig.axes[0].get_xlabel() == "upstream delay (ms)"
    with pytest.raises(ValueError):
        plots.throughput_vs(summaries, x_values=[1])


def test_heatmap_writes_each_value_and_its_share_of_the_ideal():
    grid = [result(t, p).summary for t in (1, 2) for p in (1, 2)]
    texts = [t.get_text() for t in plots.heatmap(grid).axes[0].texts]
    assert len(texts) == 4
    assert all("%" in t for t in texts)


def test_empty_runs_still_draw():
    assert plots.timeline([])._repr_png_().startswith(PNG)
    assert plots.latency_hist([])._repr_png_().startswith(PNG)
    assert plots.progress([])._repr_png_().startswith(PNG)


# -- checks: lesson -----------------------------------------------------------------------


def test_lesson_prints_a_verdict_line_the_tests_can_read(capsys):
    checks.lesson("x", 4.2, 3.0, "claim")
    checks.lesson("y", 1.2, (0.8, 1.05), "claim")
    checks.lesson("z", float("nan"), 3.0, "claim")
    out = capsys.readouterr().out
    lines = re.findall(r"^LESSON (HELD|DID NOT HOLD): (\w+): ratio (\S+)", out, re.MULTILINE)
    assert lines == [
        ("HELD", "x", "4.20"),
        ("DID NOT HOLD", "y", "1.20"),
        ("DID NOT HOLD", "z", "nan"),
    ]
    assert "expected >= 3" in out and "expected 0.8 to 1.05" in out
    assert "did not reproduce" in out


# -- checks: exercises --------------------------------------------------------------------


@dataclass
class FakeUpstream:
    delay_ms: float = 100.0
    stats: object = field(default_factory=lambda: type("S", (), {"requests": 12})())


class FakeLab:
    """Stands in for Lab: run() returns a canned result and remembers what it was asked."""

    def __init__(self, run: RunResult | None = None, error: Exception | None = None) -> None:
        self.upstream = FakeUpstream()
        self._run, self._error = run or result(), error
        self.calls: list[dict] = []

    def run(self, function=None, **options):
        self.calls.append({"function": function, **options})
        if self._error:
            raise self._error
        return self._run


def exercise(**overrides) -> checks.Exercise:
    options = dict(
        name="demo",
        task="do it",
        criteria=[checks.no_errors(), checks.calls_upstream(1), checks.is_async(False)],
        hints=["first", "second"],
        load={"concurrency": 8, "requests": 12},
        explanation="because.",
    )
    options.update(overrides)
    return checks.Exercise(**options)


def sync_handler(req):
    return "ok"


async def async_handler(req):
    return "ok"


def test_check_runs_the_answer_under_load_and_explains(capsys):
    lab = FakeLab()
    ex = exercise(lab=lab)
    verdict = ex.check(sync_handler)
    out = capsys.readouterr().out
    assert lab.calls == [
        {"function": None, "handler": sync_handler, "concurrency": 8, "requests": 12}
    ]
    assert "✓ every request succeeds: 12 of 12" in out
    assert "1.00 upstream calls per invocation" in out
    assert "Correct! because." in out
    assert out.splitlines() == checks.feedback(verdict)
    assert verdict.passed and ex.passed is True and ex.verdict is verdict
    assert [(r.requirement, r.passed) for r in verdict.results] == [
        ("every request succeeds", True),
        ("calls UPSTREAM_URL 1 time(s) per invocation", True),
        ("is a plain def", True),
    ]
    assert verdict.results[1].measured == "1.00 upstream calls per invocation"
    assert verdict.runs[-1].evidence.result is lab._run and not verdict.retried


def test_check_says_which_criterion_failed_and_why(capsys):
    ex = exercise(lab=FakeLab())
    verdict = ex.check(async_handler)
    out = capsys.readouterr().out
    assert "✗ is a plain def: async def" in out
    assert "Not yet" in out
    missed = [(r.requirement, r.measured) for r in verdict.results if not r.passed]
    assert missed == [("is a plain def", "async def")]
    assert not verdict.passed and ex.passed is False and len(verdict.runs) == 1


def test_check_reports_a_run_that_could_not_start(capsys):
    ex = exercise(lab=FakeLab(error=TypeError("bad handler")))
    verdict = ex.check(sync_handler)
    assert "the run failed: TypeError: bad handler" in capsys.readouterr().out
    assert verdict.error == "TypeError: bad handler" and verdict.runs == ()
    assert not verdict.passed and ex.passed is False


def test_check_with_a_custom_runner_gets_the_answer():
    seen = []

    def runner(lab, answer):
        seen.append(answer)
        return lab.run("sync_io", threads=answer)

    ex = exercise(lab=FakeLab(), run=runner, criteria=[checks.no_errors()])
    verdict = ex.check(12)
    assert seen == [12] and verdict.passed and ex.passed


def test_check_needs_a_lab_and_an_answer(capsys):
    with pytest.raises(ValueError):
        exercise().check(sync_handler)
    verdict = exercise(lab=FakeLab()).check(None)
    assert "Nothing to check yet" in capsys.readouterr().out
    assert not verdict.answered and not verdict.passed and verdict.runs == ()


def test_judge_prints_nothing_and_concludes_as_check_does(capsys):
    lab = FakeLab()
    judged = exercise(lab=lab).judge(async_handler)
    assert capsys.readouterr().out == ""
    checked = exercise(lab=lab).check(async_handler)
    assert judged == checked and not judged.passed
    assert checks.feedback(judged) == capsys.readouterr().out.splitlines()


def test_a_notebook_cell_ending_in_check_shows_the_feedback_once():
    """The verdict check returns adds no Out[] of its own: the feedback is printed already."""
    from IPython.core.formatters import DisplayFormatter

    verdict = exercise(lab=FakeLab()).judge(sync_handler)
    assert DisplayFormatter().format(verdict) == ({}, {})


def test_hints_get_more_specific_then_repeat(capsys):
    ex = exercise()
    for _ in range(3):
        ex.hint()
    out = capsys.readouterr().out
    assert out.count("Hint 1/2") == 1 and out.count("Hint 2/2") == 2


def test_solution_is_shown_and_loadable(tmp_path: Path, monkeypatch, capsys):
    (tmp_path / "05_demo.py").write_text("def demo(req):\n    return 'solved'\n")
    monkeypatch.setattr(checks, "solutions_dir", lambda: tmp_path)
    ex = exercise(name="05_demo")
    ex.solution()
    assert "return 'solved'" in capsys.readouterr().out
    assert ex.answer_name == "demo" and ex.solution_answer()(None) == "solved"


NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"


def notebook_exercises() -> dict[str, list[checks.Exercise]]:
    """Every exercise of the workbook, by its module: notebooks/exercise_NN_name.py."""
    sys.path.insert(0, str(NOTEBOOK_DIR))
    try:
        found = {}
        for path in sorted(NOTEBOOK_DIR.glob("exercise_*.py")):
            module = importlib.import_module(path.stem)
            made = [f(FakeLab()) for n, f in vars(module).items() if re.fullmatch(r"ex\d\d", n)]
            found[path.stem] = [e for m in made for e in (m if isinstance(m, tuple) else (m,))]
        return found
    finally:
        sys.path.remove(str(NOTEBOOK_DIR))


def test_each_notebook_has_one_exercise_module_and_each_exercise_a_solution():
    solutions = NOTEBOOK_DIR / "solutions"
    assert checks.solutions_dir() == solutions
    names = []
    for stem, exercises in notebook_exercises().items():
        number = re.fullmatch(r"exercise_(\d\d)_\w+", stem).group(1)
        (notebook,) = NOTEBOOK_DIR.glob(f"{number}_*.ipynb")
        assert f"from {stem} import ex{number}" in notebook.read_text(), notebook.name
        assert exercises, stem
        for ex in exercises:
            assert ex.name.startswith(f"{number}_") and ex.solution_path().is_file(), ex.name
            assert ex.solution_answer() is not None, ex.name
            names.append(ex.name)
    assert len(names) == 13  # 00-08, 11, 12 and 13; 04 has two
    assert sorted(p.stem for p in solutions.glob("*.py")) == sorted(names)


def evidence(run: RunResult, answer=sync_handler, upstream=12, delay=100.0) -> checks.Evidence:
    return checks.Evidence(answer, run, upstream, delay)


def test_criteria_measure_what_they_say():
    run = result(threads=2)
    assert checks.overlap_at_least(1.5).test(evidence(run))[0]  # ~2 at once
    assert not checks.overlap_at_least(4).test(evidence(run))[0]
    assert checks.cpu_ratio_between(0.0, 0.1).test(evidence(run))[0]  # 1 ms CPU of 100 ms
    assert checks.latency_p50_below(1.6).test(evidence(result(threads=12)))[0]
    assert not checks.latency_p50_below(1.6).test(evidence(run))[0]  # most of them queued
    assert not checks.queue_p95_below(0.4).test(evidence(run))[0]
    assert checks.threads_all_used().test(evidence(run))[0]
    assert not checks.calls_upstream(2).test(evidence(run))[0]
    assert checks.loop_never_blocked(50).test(evidence(run))[0]


def test_source_criterion_ignores_the_function_name():
    async def fix_aiohttp(req):
        return None

    ok, measured = checks.source_uses("aiohttp.").test(evidence(result(), fix_aiohttp))
    assert not ok and measured == "uses none of them"


# -- panels -------------------------------------------------------------------------------


class FakeHandle:
    """A run that finishes after ``polls`` looks, filling its records as it goes."""

    def __init__(self, total: int, run: RunResult, polls: int = 2) -> None:
        self.total, self._run, self._polls = total, run, polls
        self.records: list[InvocationRecord] = []
        self.ideal = Ideal(run.summary.ideal_rps, run.summary.bottleneck)
        self.future: Future[RunResult] = Future()
        self.cancelled = False

    def done(self) -> bool:
        if not self.future.done():
            self._polls -= 1
            self.records = self._run.records[: len(self.records) + 4]
            if self.cancelled:
                self.future.set_exception(RuntimeError("the run was stopped"))
            elif self._polls <= 0:
                self.future.set_result(self._run)
        return self.future.done()

    def result(self, timeout=None) -> RunResult:
        return self.future.result(timeout)

    def cancel(self) -> None:
        self.cancelled = True


class PanelLab:
    def __init__(self, polls: int = 2) -> None:
        self.polls = polls
        self.started: list[dict] = []
        self.handles: list[FakeHandle] = []

    def start(self, function=None, **options):
        self.started.append({"function": function, **options})
        handle = FakeHandle(12, result(options["threads"]), self.polls)
        self.handles.append(handle)
        return handle


def test_panel_sliders_name_the_platform_settings():
    panel = ControlPanel(
        PanelLab(), "sync_io", controls=("threads", "processes", "concurrency", "upstream_delay_ms")
    )
    threads = panel.sliders["threads"]
    assert threads.description == "threads"
    assert "PYTHON_THREADPOOL_THREAD_COUNT" in threads.tooltip
    assert "FUNCTIONS_WORKER_PROCESS_COUNT" in panel.sliders["processes"].tooltip
    assert (panel.sliders["processes"].min, panel.sliders["processes"].max) == (1, 10)
    assert panel.run_button.description == "Run"
    assert panel.stop_button.disabled


def test_panel_shows_only_the_sliders_asked_for_and_uses_defaults_for_the_rest():
    panel = ControlPanel(PanelLab(), "sync_io", controls=("threads",), processes=2, concurrency=16)
    assert list(panel.sliders) == ["threads"]
    assert panel.settings() == {
        "threads": 4,
        "processes": 2,
        "concurrency": 16,
        "upstream_delay_ms": 100,
    }
    with pytest.raises(ValueError):
        ControlPanel(PanelLab(), "sync_io", controls=("nope",))
    assert set(CONTROLS) == {"threads", "processes", "concurrency", "upstream_delay_ms"}


def test_panel_run_starts_the_lab_with_the_settings_and_records_history():
    lab = PanelLab()
    panel = ControlPanel(lab, "sync_io", params={"x": "1"}, refresh_s=0.01)
    run = asyncio.run(panel.run(threads=8))
    assert run is not None and run.summary.threads == 8
    assert lab.started[0]["threads"] == 8 and lab.started[0]["params"] == {"x": "1"}
    assert panel.sliders["threads"].value == 8
    assert len(panel.history) == 1
    assert panel.progress.value == 1
    assert "sync_io:" in panel.summary.value
    assert bytes(panel.image.value).startswith(PNG)
    assert not panel.running and not panel.run_button.disabled
    assert list(panel.history_frame().columns[:4]) == [
        "threads",
        "processes",
        "concurrency",
        "upstream_delay_ms",
    ]


def test_panel_disables_run_while_running_and_stop_cancels():
    lab = PanelLab(polls=1000)
    panel = ControlPanel(lab, "sync_io", refresh_s=0.01)

    async def scenario():
        task = asyncio.ensure_future(panel.run())
        await asyncio.sleep(0.05)
        assert panel.running and panel.run_button.disabled and not panel.stop_button.disabled
        with pytest.raises(RuntimeError):
            await panel.run()
        panel.stop()
        return await task

    assert asyncio.run(scenario()) is None
    assert lab.handles[0].cancelled
    assert panel.status.value == "stopped: nothing added to the runs so far: 0"
    assert panel.history == [] and panel.last is None
    assert not panel.running and not panel.run_button.disabled


def test_panel_button_runs_in_the_background_and_shows_failures():
    class BrokenLab(PanelLab):
        def start(self, function=None, **options):
            raise RuntimeError("a run is already going")

    panel = ControlPanel(BrokenLab(), "sync_io", refresh_s=0.01)

    async def click():
        panel.run_button.click()
        await asyncio.sleep(0.05)

    asyncio.run(click())
    assert panel.status.value.startswith("failed: RuntimeError")


def test_panel_never_blocks_its_loop():
    """While a run goes, other tasks on the same loop keep running."""
    panel = ControlPanel(PanelLab(polls=5), "sync_io", refresh_s=0.02)
    ticks = []

    async def ticker():
        while panel.running or not ticks:
            ticks.append(threading.current_thread().name)
            await asyncio.sleep(0.005)

    async def both():
        await asyncio.gather(panel.run(), ticker())

    asyncio.run(both())
    assert len(ticks) > 5


def test_panel_double_click_starts_one_run():
    lab = PanelLab(polls=3)
    panel = ControlPanel(lab, "sync_io", refresh_s=0.01)

    async def clicks():
        panel.run_button.click()
        panel.run_button.click()
        assert panel.running and panel.run_button.disabled
        while panel.running:
            await asyncio.sleep(0.01)

    asyncio.run(clicks())
    assert len(lab.started) == 1 and len(panel.history) == 1


def test_interrupting_the_awaiting_cell_cancels_the_run():
    lab = PanelLab(polls=1000)
    panel = ControlPanel(lab, "sync_io", refresh_s=0.01)

    async def interrupted():
        task = asyncio.ensure_future(panel.run())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(interrupted())
    assert lab.handles[0].cancelled
    assert not panel.running and not panel.run_button.disabled


def test_panel_sends_its_request_options_with_each_run():
    lab = PanelLab()
    request = {"path": "/api/users/7", "method": "GET", "headers": {"X-Agent": "panel"}}
    panel = ControlPanel(lab, controls=("threads",), request=request, refresh_s=0.01)
    asyncio.run(panel.run(threads=8))
    assert {k: lab.started[0][k] for k in request} == request
    with pytest.raises(ValueError, match="request path"):
        ControlPanel(PanelLab(), controls=("threads",))


def test_cancelling_a_run_whose_loop_has_closed_is_harmless():
    """Stop pressed as the run ends: the run's loop is closed, and nothing may raise."""
    from throughput_lab.run import RunHandle

    handle = RunHandle(4)
    loop = asyncio.new_event_loop()
    handle._loop, handle._task = loop, SimpleNamespace(cancel=lambda: None)  # type: ignore
    loop.close()
    handle.cancel()  # the future is not done yet: its loop still refuses the call quietly
    handle.future.set_exception(RuntimeError("the run was stopped"))
    handle.cancel()

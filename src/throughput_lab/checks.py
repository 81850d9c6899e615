"""Exercises checked by measurement, and the closing "did the lesson hold?" verdict.

An ``Exercise`` runs the learner's answer under load through the engine (a handler written
in a notebook cell runs in one in-process worker: ``Lab.run(handler=...)``), then tests
what was measured against named criteria. The feedback says what was measured, what was
needed and why, in the style of Kaggle's learntools: ``q.check(answer)``, ``q.hint()``,
``q.solution()``. As there, judging is apart from its words: a check concludes a frozen
``Verdict`` (every run, every criterion as measured), and ``feedback`` (the view) turns it
into the lines printed; ``check`` prints them and returns the verdict, ``judge`` only
returns it.

``lesson()`` prints the one line each notebook ends with, starting "LESSON HELD:" or
"LESSON DID NOT HOLD:"; the workbook's tests read these lines.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
import re
import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .app_settings import available_cores
from .lab import Lab, RunResult, find_app
from .metrics import percentile
from .upstream import Upstream

if TYPE_CHECKING:  # the queue wing (azure.storage.queue) loads only where a notebook uses it
    from .queue.lab import DrainResult

HELD = "LESSON HELD:"
NOT_HELD = "LESSON DID NOT HOLD:"


# -- what a check looks at ----------------------------------------------------------------


@dataclass
class Evidence:
    """What one checked run produced: the answer, the run's result, the upstream's count."""

    answer: Any
    result: RunResult | DrainResult
    upstream_requests: int
    upstream_delay_ms: float

    @property
    def summary(self) -> Any:
        return self.result.summary


@dataclass(frozen=True)
class Criterion:
    """One requirement: ``test`` returns (passed, what was measured, in words).

    A test of a measured quantity may return a third item, True when the value landed
    within noise of its limit: a failure there is measured again before it counts.
    """

    requirement: str
    test: Callable[[Evidence], tuple[bool, str] | tuple[bool, str, bool]]
    why: str = ""

    def evaluate(self, evidence: Evidence) -> tuple[bool, str, bool]:
        ok, text, *near = self.test(evidence)
        return ok, text, bool(near and near[0])


NEAR = 0.25  # within this share of its limit, a measured value is too close to call


def near(value: float, limit: float) -> bool:
    """Whether ``value`` is within noise (``NEAR``) of ``limit``."""
    return limit > 0 and abs(value - limit) <= NEAR * limit


def digits(value: float, *limits: float) -> str:
    """``value`` with enough decimals that it does not print equal to a limit it misses."""
    for places in range(2, 6):
        text = f"{value:.{places}f}"
        if all(value == limit or text != f"{limit:.{places}f}" for limit in limits):
            return text
    return repr(value)


def no_errors(unit: str = "request") -> Criterion:
    """Every invocation succeeded; ``unit`` names them ("message" for a queue trigger)."""

    def test(e: Evidence) -> tuple[bool, str]:
        s = e.summary
        text = f"{s.ok} of {s.requests} {unit}s succeeded"
        if s.errors:
            text += f"; first error: {s.error_samples[0] if s.error_samples else '?'}"
        return s.errors == 0 and s.ok > 0, text

    return Criterion(f"every {unit} succeeds", test)


def calls_upstream(per_invocation: float = 1.0) -> Criterion:
    def test(e: Evidence) -> tuple[bool, str]:
        ok = max(e.summary.ok, 1)
        per = e.upstream_requests / ok
        return per >= per_invocation - 0.01, f"{per:.2f} upstream calls per invocation"

    return Criterion(
        f"calls UPSTREAM_URL {per_invocation:g} time(s) per invocation",
        test,
        "the handler must do the I/O it stands for, not skip it",
    )


def is_async(expected: bool = True) -> Criterion:
    def test(e: Evidence) -> tuple[bool, str]:
        actual = inspect.iscoroutinefunction(e.answer)
        return actual == expected, "async def" if actual else "plain def"

    word = "an async def" if expected else "a plain def"
    return Criterion(f"is {word}", test)


def source_uses(*names: str, label: str | None = None) -> Criterion:
    """The handler's body mentions one of ``names`` (e.g. "aiohttp.": its name is not enough)."""

    def test(e: Evidence) -> tuple[bool, str]:
        try:
            source = inspect.getsource(e.answer)
        except (OSError, TypeError):
            return False, "its source could not be read"
        body = re.sub(r"\bdef\s+\w+", "def", source)  # a function's own name does not count
        found = [n.rstrip("(.") for n in names if n in body]
        return bool(found), f"uses {', '.join(found)}" if found else "uses none of them"

    return Criterion(f"uses {label or ' or '.join(names)}", test)


def loop_never_blocked(max_lag_ms: float = 50.0) -> Criterion:
    def test(e: Evidence) -> tuple[bool, str]:
        lag = e.summary.max_loop_lag_ms
        longest = max((r.longest_step_ms for r in e.result.records), default=0.0)
        text = f"worst event-loop lag {lag:.0f} ms, longest step of one invocation {longest:.0f} ms"
        # A lag with no long step in the handler came from the machine, not from the code.
        return lag < max_lag_ms, text, longest < max_lag_ms

    return Criterion(
        f"never blocks the event loop (lag < {max_lag_ms:g} ms)",
        test,
        "while one invocation holds the loop, every other invocation in the process waits",
    )


def overlap_at_least(invocations: float) -> Criterion:
    """Little's law: throughput x time alone = how many ran at once, on average."""

    def test(e: Evidence) -> tuple[bool, str]:
        s = e.summary
        overlap = s.throughput_rps * s.service_ms / 1e3
        return (
            overlap >= invocations,
            f"{s.throughput_rps:.1f} req/s x {s.service_ms:.0f} ms alone = "
            f"{overlap:.1f} invocations at once",
            near(overlap, invocations),
        )

    return Criterion(
        f"runs at least {invocations:g} invocations at once (throughput x time alone)",
        test,
        "by Little's law, throughput x latency is how many were in progress together",
    )


def cpu_ratio_between(low: float, high: float) -> Criterion:
    def test(e: Evidence) -> tuple[bool, str]:
        r = e.summary.cpu_ratio
        close = abs(r - low) <= 0.1 or abs(r - high) <= 0.1
        return low <= r <= high, f"CPU time / wall time = {digits(r, low, high)}", close

    return Criterion(f"CPU time / wall time between {low:g} and {high:g}", test)


def latency_p50_below(factor: float) -> Criterion:
    """p50 latency under ``factor`` x the upstream delay."""

    def test(e: Evidence) -> tuple[bool, str]:
        p50 = e.summary.latency_ms["p50"]
        limit = factor * e.upstream_delay_ms
        return p50 < limit, f"p50 latency {p50:.0f} ms (limit {limit:.0f} ms)", near(p50, limit)

    return Criterion(f"p50 latency under {factor:g} x the upstream delay", test)


def queue_p95_below(fraction_of_service: float) -> Criterion:
    """Inside the worker, the p95 wait for a pool thread under a share of the time alone.

    Timed from the worker's hand-off to the pool to a thread picking it up, so a busy
    machine's delays in the host or the channel do not count as waiting for a thread.
    """

    def test(e: Evidence) -> tuple[bool, str, bool]:
        waits = [r.wait_ms for r in e.result.records if r.ok]
        p95 = percentile(waits, 95)
        limit = fraction_of_service * e.summary.service_ms
        text = f"p95 wait for a thread {p95:.0f} ms (limit {limit:.0f} ms)"
        return p95 < limit, text, p95 < 2 * limit

    return Criterion(
        "no request waits for a pool thread (p95 queue wait small)",
        test,
        "a request that finds every thread busy waits in the pool's queue",
    )


def reaches_cores_limit(
    fraction: float, why: str = "pure-Python work holds the GIL: one process uses one core"
) -> Criterion:
    """Throughput of at least ``fraction`` of free cores / CPU seconds each invocation needs.

    The free cores are measured during the run: other programs' CPU is not the answer's.
    """

    def test(e: Evidence) -> tuple[bool, str, bool]:
        s = e.summary
        cpu_s = s.cpu_ms / 1e3
        free = s.free_cores or available_cores()
        limit = free / cpu_s if cpu_s > 0 else math.inf
        got = s.throughput_rps
        return (
            got >= fraction * limit,
            f"{got:.1f} req/s of the {limit:.1f} req/s that {free:.1f} free core(s) allow "
            f"for {s.cpu_ms:.0f} ms of CPU each ({digits(got / limit, fraction)})",
            near(got, fraction * limit),
        )

    return Criterion(f"reaches {fraction:.0%} of what this machine's free cores allow", test, why)


def one_process_per_core() -> Criterion:
    """As many worker processes as this machine's cores: the GIL's rule for CPU-bound work.

    The machine's cores, not the cores free during one run: a program that happens to
    hold a core now does not change how many the app should be given.
    """
    cores = max(1, math.ceil(available_cores()))

    def test(e: Evidence) -> tuple[bool, str]:
        processes = e.summary.processes or 0
        rss = e.summary.worker_rss_mb
        return processes == cores, (
            f"{processes} process(es) for {cores} core(s), holding {sum(rss):.0f} MB "
            f"({sum(rss) / max(len(rss), 1):.0f} MB each)"
        )

    return Criterion(
        "one worker process per core",
        test,
        "a process computes on one core at a time (the GIL): with fewer, a core has nothing "
        "to run; with more, a process adds no CPU, only memory and switching",
    )


def threads_all_used(slack: int = 2) -> Criterion:
    def test(e: Evidence) -> tuple[bool, str]:
        threads_by_process: dict[int, set[str]] = {}
        for r in e.result.records:
            if r.thread:
                threads_by_process.setdefault(r.pid, set()).add(r.thread)
        used = max((len(t) for t in threads_by_process.values()), default=0)
        setting = e.summary.threads or 0  # the pool size of each worker process
        return setting <= used + slack, (
            f"at most {used} of a worker process's {setting} pool threads ever ran a request"
        )

    return Criterion(
        "no more threads than the load can use",
        test,
        "each idle thread still costs memory; C requests in flight can keep at most C busy",
    )


def sizing(
    target: float,
    *,
    unit: str,
    count: Callable[[Evidence], int],
    each_rps: Callable[[Evidence], float],
    measured: Callable[[Evidence], str],
    tolerance: float,
    spare: float,
    too_few: str,
    too_many: str,
) -> list[Criterion]:
    """Two criteria for a count of ``unit``s (threads, instances) sized for ``target`` req/s.

    By Little's law each unit carries ``each_rps`` (measured): the count carries the target
    when count x each >= ``tolerance`` x target, and wastes none when it is at most
    ``spare`` x the whole units the target needs, and one. ``measured`` says in words how
    one unit's rate was measured. The second criterion says how far over the target the
    count is, never how many would do: that is the exercise's answer.
    """

    def carries(e: Evidence) -> tuple[bool, str, bool]:
        total = count(e) * each_rps(e)
        return (
            total >= tolerance * target,
            f"{measured(e)}, so {count(e)} {unit}(s) carry {total:.1f} req/s",
            near(total, tolerance * target),
        )

    def not_wasteful(e: Evidence) -> tuple[bool, str, bool]:
        each, n = each_rps(e), count(e)
        needed = math.ceil(target / each) if each > 0 else math.inf
        return (
            n <= spare * needed + 1,
            f"{n} {unit}(s) carry {n * each:.0f} req/s, "
            f"{digits(n * each / target, 1, spare)}x the target",
            n <= spare * needed + 2,
        )

    return [
        Criterion(
            f"carries {target:g} req/s (less {1 - tolerance:.0%} for a noisy measurement)",
            carries,
            too_few,
        ),
        Criterion(
            f"no more {unit}s than {target:g} req/s keeps busy "
            f"(with {spare - 1:.0%} and one spare)",
            not_wasteful,
            too_many,
        ),
    ]


# -- what a check concludes ---------------------------------------------------------------


class ExerciseLab(Protocol):
    """What an exercise itself reads of its lab: the upstream the answer calls.

    Its call count and delay go into the evidence. Running the answer is the runner's
    job (``Lab.run``, ``QueueLab.drain``), so both labs fit; without a runner the answer is
    a handler, and the lab must be a ``Lab``.
    """

    @property
    def upstream(self) -> Upstream: ...


# A runner takes the lab of the exercise it was written for (a Lab or a QueueLab) and the
# answer, and returns what it measured.
Runner = Callable[[Any, Any], "RunResult | DrainResult"]


@dataclass(frozen=True)
class CriterionResult:
    """One criterion, as measured in one run."""

    requirement: str
    passed: bool
    measured: str  # what was measured, in words
    near_limit: bool  # within noise of its limit: a miss here is measured again
    why: str = ""  # said beside a miss


@dataclass(frozen=True)
class RunVerdict:
    """One run of the answer: the run's summary line and every criterion as measured."""

    line: str
    results: tuple[CriterionResult, ...]
    evidence: Evidence = field(repr=False, compare=False)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def close(self) -> bool:
        """Every miss landed within noise of its limit (a clear miss is final)."""
        return all(r.passed or r.near_limit for r in self.results)


@dataclass(frozen=True)
class Verdict:
    """What ``Exercise.check`` concluded, and all the feedback needs to say it.

    ``runs`` holds every run, in order: a run whose misses were all near their limits is
    followed by another, up to ``attempts``; the last run decides. ``running`` is True only
    in the snapshots ``check`` shows while a run is under way.
    """

    exercise: str
    task: str = ""
    answered: bool = True
    described: str = ""  # what is run, e.g. "hello under load (4 in flight, 40 requests)"
    attempts: int = 1  # runs at most
    runs: tuple[RunVerdict, ...] = ()
    error: str = ""  # why the answer could not be run, e.g. "TypeError: ..."
    explanation: str = ""  # said when the answer passes
    running: bool = False

    @property
    def passed(self) -> bool:
        return bool(self.runs) and not (self.error or self.running) and self.runs[-1].passed

    @property
    def results(self) -> tuple[CriterionResult, ...]:
        """Each criterion as the deciding (last) run measured it."""
        return self.runs[-1].results if self.runs else ()

    @property
    def retried(self) -> bool:
        """The answer was measured again because a run missed within noise of a limit."""
        return len(self.runs) > 1

    def _ipython_display_(self) -> None:
        """Nothing: a cell ending in ``q.check(answer)`` has printed the feedback already."""


# -- the view: a verdict in words ---------------------------------------------------------


def feedback(verdict: Verdict) -> list[str]:
    """The lines printed for ``verdict``.

    A snapshot taken later in the same check only adds lines, so ``check`` prints a run's
    lines as soon as it is measured.
    """
    name = verdict.exercise
    if not verdict.answered:
        return [f"[{name}] Nothing to check yet: {verdict.task}"]
    lines: list[str] = []
    under_way = verdict.running or bool(verdict.error)  # a run started, not measured
    for index in range(len(verdict.runs) + under_way):
        lines.append(
            f"[{name}] Running {verdict.described} ..." if index == 0 else "  measuring again ..."
        )
        if index == len(verdict.runs):  # under way, or it failed
            break
        run = verdict.runs[index]
        lines.append(f"  measured: {run.line}")
        lines += [_criterion_line(r) for r in run.results]
        if not run.passed and run.close and index + 1 < verdict.attempts:
            lines.append("  That was close to the line, and one run on a busy machine can be slow.")
    if verdict.running:
        return lines
    if verdict.error:
        lines.append(f"  ✗ the run failed: {verdict.error}")
        lines.append("Not yet. Fix the error above and check again.")
    elif verdict.passed:
        lines.append(f"Correct! {verdict.explanation}".rstrip())
    else:
        lines.append("Not yet: see the ✗ lines above. Call .hint() for a hint.")
    return lines


def _criterion_line(result: CriterionResult) -> str:
    why = "" if result.passed or not result.why else f" ({result.why})"
    return f"  {'✓' if result.passed else '✗'} {result.requirement}: {result.measured}{why}"


# -- exercises ----------------------------------------------------------------------------


def solutions_dir() -> Path:
    """``notebooks/solutions`` of this workbook (found from the app folder), or ./solutions."""
    beside_app = find_app().parent / "notebooks" / "solutions"
    return beside_app if beside_app.is_dir() else Path.cwd() / "solutions"


@dataclass
class Exercise:
    """An exercise: the learner's answer is run under load and measured.

    ``load`` is passed to ``Lab.run(handler=answer, **load)``; give ``run`` instead when
    the answer is not a handler (e.g. a thread count for a sample function). ``name`` is
    ``NN_answer``: the solution is ``solutions/NN_answer.py``, and defines ``answer``.
    """

    name: str
    task: str
    criteria: Sequence[Criterion]
    hints: Sequence[str] = ()
    load: dict[str, Any] = field(default_factory=dict)
    run: Runner | None = None
    lab: ExerciseLab | None = None
    explanation: str = ""
    attempts: int = 3  # runs at most, while every miss is within noise of its limit
    verdict: Verdict | None = field(default=None, init=False, repr=False)  # the last check's
    _hint_index: int = field(default=0, repr=False)

    @property
    def passed(self) -> bool | None:
        """The last check's outcome (None before the first)."""
        return None if self.verdict is None else self.verdict.passed

    def check(self, answer: Any, lab: ExerciseLab | None = None) -> Verdict:
        """Run ``answer`` under load, print each criterion as measured, return the verdict.

        The feedback is printed as each run is measured, not at the end: a run takes
        seconds, and the learner sees which one is under way.
        """
        shown = 0
        for verdict in self._judging(answer, lab):
            lines = feedback(verdict)
            for line in lines[shown:]:
                print(line)
            shown = len(lines)
        return verdict

    def judge(self, answer: Any, lab: ExerciseLab | None = None) -> Verdict:
        """What ``check`` returns, printing nothing (``feedback(verdict)`` has its words)."""
        *_, verdict = self._judging(answer, lab)
        return verdict

    def _judging(self, answer: Any, lab: ExerciseLab | None) -> Iterator[Verdict]:
        """The verdict before each run (``running``), and at the end (kept in ``.verdict``)."""
        lab = lab or self.lab
        if lab is None:
            raise ValueError("give a Lab: Exercise(..., lab=lab) or check(answer, lab=lab)")
        self.verdict = Verdict(self.name, self.task, answered=False)
        if answer is None or answer is Ellipsis:
            yield self.verdict
            return
        verdict = Verdict(
            self.name,
            self.task,
            described=self._describe_load(answer),
            attempts=self.attempts,
            explanation=self.explanation,
            running=True,
        )
        runner = self.run or self._run_handler
        for _ in range(self.attempts):
            yield verdict
            try:
                result = runner(lab, answer)
            except Exception as exc:  # the learner's answer could not even be run
                verdict = replace(verdict, error=f"{type(exc).__name__}: {exc}")
                break
            run = self._measure(answer, result, lab)
            verdict = replace(verdict, runs=(*verdict.runs, run))
            # A miss within noise of a limit is measured again: a busy machine slows one
            # run, so one slow run says nothing about the answer. A clear miss is final.
            if run.passed or not run.close:
                break
        self.verdict = replace(verdict, running=False)
        yield self.verdict

    def _run_handler(self, lab: Lab, answer: Any) -> RunResult:
        return lab.run(handler=answer, **self.load)

    def _measure(
        self, answer: Any, result: RunResult | DrainResult, lab: ExerciseLab
    ) -> RunVerdict:
        evidence = Evidence(
            answer, result, lab.upstream.stats.requests, float(lab.upstream.delay_ms)
        )
        results = tuple(
            CriterionResult(c.requirement, *c.evaluate(evidence), why=c.why) for c in self.criteria
        )
        return RunVerdict(result.line(), results, evidence)

    def _describe_load(self, answer: Any) -> str:
        name = getattr(answer, "__name__", repr(answer))
        load = self.load
        parts = [f"{load.get('concurrency', 8)} in flight"]
        if load.get("threads") is not None:
            parts.append(f"{load['threads']} pool thread(s)")
        if load.get("requests"):
            parts.append(f"{load['requests']} requests")
        if load.get("upstream_delay_ms") is not None:
            parts.append(f"upstream {load['upstream_delay_ms']:g} ms")
        return f"{name} under load ({', '.join(parts)})" if self.run is None else name

    def hint(self) -> None:
        """Print the next hint (they get more specific)."""
        if not self.hints:
            print(f"[{self.name}] No hint for this one.")
            return
        index = min(self._hint_index, len(self.hints) - 1)
        self._hint_index += 1
        more = " (call again for another)" if index + 1 < len(self.hints) else ""
        print(f"[{self.name}] Hint {index + 1}/{len(self.hints)}{more}: {self.hints[index]}")

    @property
    def answer_name(self) -> str:
        """The answer's name: the exercise's, without its notebook number."""
        return re.sub(r"^\d+_", "", self.name)

    def solution_path(self) -> Path:
        return solutions_dir() / f"{self.name}.py"

    def solution(self) -> None:
        """Show the reference solution (``%load solutions/NN_answer.py`` puts it in a cell)."""
        path = self.solution_path()
        text = path.read_text()
        try:
            from IPython import get_ipython
            from IPython.display import Markdown, display
        except ImportError:
            get_ipython = None  # type: ignore[assignment]
        if get_ipython is not None and get_ipython() is not None:
            display(Markdown(f"Solution (`%load solutions/{path.name}`):\n\n```python\n{text}```"))
        else:
            print(f"Solution (solutions/{path.name}):\n{text}")

    def solution_answer(self) -> Any:
        """The reference solution's answer: the object named ``answer_name`` in its file."""
        path = self.solution_path()
        spec = importlib.util.spec_from_file_location(f"solution_{self.name}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return getattr(module, self.answer_name)


# -- the lesson verdict -------------------------------------------------------------------


def lesson(
    name: str,
    measure: float | Callable[[], float],
    expected: float | tuple[float, float],
    claim: str | Callable[[float], str],
    *,
    first: float | None = None,
    attempts: int = 5,
    noise: float = NEAR,
) -> None:
    """Print whether the notebook's lesson held on this machine, with the ratio behind it.

    ``measure`` is the ratio, or a function that measures it once (compare the settings
    within one call, interleaved). A function is called again while its ratio lands
    within noise of ``expected`` (a band that narrows as measurements add up), up to
    ``attempts`` times, and the median decides: one slow run on a busy machine cannot
    flip a lesson. ``first`` is a ratio the notebook measured already: it counts as the
    first measurement, and ``measure`` runs only to measure again. ``expected`` is a
    minimum (``3.0`` means "at least 3x") or a ``(low, high)`` range; ``claim`` may be a
    function of the ratio. The line starts "LESSON HELD:" or "LESSON DID NOT HOLD:" (the
    tests read it).
    """
    if first is not None and not callable(measure):
        raise TypeError("first= is the first of measure()'s ratios: give measure as a function")
    low, high = expected if isinstance(expected, tuple) else (expected, math.inf)
    ratios: list[float] = []
    while True:
        if not ratios and first is not None:
            ratios.append(float(first))
        else:
            ratios.append(measure() if callable(measure) else float(measure))
        ratio = statistics.median(ratios)
        # The median of n measurements wavers about 1/sqrt(n) as much as one does.
        band = noise / math.sqrt(len(ratios))
        undecided = any(
            math.isfinite(limit) and abs(ratio - limit) <= band * limit for limit in (low, high)
        )
        if not callable(measure) or not undecided or len(ratios) >= attempts:
            break
    held = math.isfinite(ratio) and low <= ratio <= high
    wanted = f">= {low:g}" if math.isinf(high) else f"{low:g} to {high:g}"
    verdict = HELD if held else NOT_HELD
    shown = digits(ratio, *(x for x in (low, high) if math.isfinite(x)))
    runs = f", median of {len(ratios)} measurements" if len(ratios) > 1 else ""
    text = claim(ratio) if callable(claim) else claim
    print(f"{verdict} {name}: ratio {shown} (expected {wanted}{runs}). {text}")
    if not held:
        print(
            "This machine did not reproduce it. Likely causes: other programs using the "
            "CPU, fewer cores than the lesson needs, or a slow start; run the notebook again."
        )

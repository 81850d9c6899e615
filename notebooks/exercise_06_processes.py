"""Notebook 06's exercise: worker processes for a handler that computes, then waits.

``from exercise_06_processes import ex06, mixed_alone``. The check runs ``mixed`` (pure
Python, then one upstream call) with one pool thread per process and your
FUNCTIONS_WORKER_PROCESS_COUNT. A process with one thread computes only part of its time,
so one process per core leaves the cores idle while each waits. The settings are judged by
what was measured in the run, the CPU time of a request against its wait for the upstream,
against this machine's cores (not the cores another program left free for one run); the
throughput is judged against the cores that were free.

The work is sized on this machine (``iterations``): its computing part is the same share
of a request's time on a fast laptop as on a slow Binder node.
"""

from __future__ import annotations

import functools

from throughput_lab import MAX_PROCESSES, Lab, RunResult, available_cores
from throughput_lab.checks import Criterion, Evidence, Exercise, no_errors, reaches_cores_limit

UPSTREAM_MS = 100
CPU_SHARE = 0.4  # of a request's time alone spent computing: 2/3 of the upstream's delay
THREADS = 1  # PYTHON_THREADPOOL_THREAD_COUNT: the article's start for CPU-bound work
PROBE_ITERATIONS = 200_000


@functools.cache
def iterations(lab: Lab) -> int:
    """Iterations of ``mixed``'s pi loop that take CPU_SHARE of a request here.

    Measured in a worker process (the same Python as the runs), by CPU time, which another
    program on the machine does not stretch.
    """
    probe = lab.run(
        "cpu_bound",
        processes=1,
        threads=1,
        concurrency=1,
        requests=3,
        params={"iterations": str(PROBE_ITERATIONS)},
    ).summary
    cpu_ms = UPSTREAM_MS * CPU_SHARE / (1 - CPU_SHARE)
    per_iteration_ms = max(probe.cpu_ms, 1e-3) / PROBE_ITERATIONS
    return max(10_000, int(round(cpu_ms / per_iteration_ms, -4)))


def run_mixed(lab: Lab, processes: int, concurrency: int, **load: float) -> RunResult:
    return lab.run(
        "mixed",
        processes=processes,
        threads=THREADS,
        concurrency=concurrency,
        upstream_delay_ms=UPSTREAM_MS,
        params={"iterations": str(iterations(lab))},
        **load,
    )


def mixed_alone(lab: Lab) -> RunResult:
    """``mixed`` one request at a time, in one process: its CPU time and its time alone."""
    return run_mixed(lab, 1, 1, requests=8)


def cpu_share(e: Evidence) -> float:
    """The share of a request's time its process computes: CPU time / (CPU time + the wait).

    Both parts as they are on a free core: the CPU time is measured (another program on
    the machine does not stretch it, where it stretches the wall time), the wait is the
    upstream's delay.
    """
    cpu_ms = e.summary.cpu_ms
    return cpu_ms / (cpu_ms + e.upstream_delay_ms) if cpu_ms > 0 else 0.0


def cores_kept_busy(e: Evidence) -> float:
    return (e.summary.processes or 0) * cpu_share(e)


def _busy_text(e: Evidence, cores: float) -> str:
    processes = e.summary.processes or 0
    return (
        f"{processes} process(es), each computing {cpu_share(e):.0%} of its time "
        f"({e.summary.cpu_ms:.0f} ms CPU, then {e.upstream_delay_ms:.0f} ms waiting), keep "
        f"{cores_kept_busy(e):.1f} of {cores:g} core(s) busy"
    )


def fills_the_cores(fraction: float = 0.8) -> Criterion:
    cores = available_cores()

    def test(e: Evidence) -> tuple[bool, str]:
        wanted = fraction * min(cores, MAX_PROCESSES * cpu_share(e))  # the host's 10 at most
        return cpu_share(e) > 0 and cores_kept_busy(e) >= wanted, _busy_text(e, cores)

    return Criterion(
        "enough processes to keep this machine's cores busy",
        test,
        "with one thread, a process waiting for the upstream leaves its core idle",
    )


def no_spare_processes(spare: float = 0.3) -> Criterion:
    cores = available_cores()

    def test(e: Evidence) -> tuple[bool, str]:
        rss = e.summary.worker_rss_mb
        held = f"; they hold {sum(rss):.0f} MB" if rss else ""
        enough = cores_kept_busy(e) <= (1 + spare) * cores + cpu_share(e)
        return enough, _busy_text(e, cores) + held

    return Criterion(
        f"no more processes than that (with {spare:.0%} and one spare)",
        test,
        "a process beyond the cores' need adds no CPU, only a whole interpreter's memory",
    )


def ex06(lab: Lab) -> Exercise:
    def run(lab: Lab, processes: int) -> RunResult:
        processes = int(processes)
        # Two requests for each process: round-robin leaves none of them without work.
        return run_mixed(lab, processes, 2 * processes, duration_s=2.0)

    return Exercise(
        name="06_processes_for_mixed",
        task=(
            "set `processes_for_mixed` to the FUNCTIONS_WORKER_PROCESS_COUNT with which "
            f"`mixed` (one pool thread per process, upstream {UPSTREAM_MS} ms) keeps every "
            "core of this machine busy, without processes to spare."
        ),
        criteria=[
            no_errors(),
            fills_the_cores(),
            no_spare_processes(),
            reaches_cores_limit(0.5, "the processes must keep the cores that were free computing"),
        ],
        hints=[
            "One process with one thread runs one request at a time: while that request "
            "waits for the upstream, its process computes nothing. What share of a request's "
            "time does it compute? Its CPU time, out of its CPU time plus its wait.",
            "A process that computes a share s of its time keeps s of a core busy, so the "
            "cores need cores / s processes: round up, at most the host's "
            f"{MAX_PROCESSES}. `available_cores()` gives the cores.",
        ],
        run=run,
        lab=lab,
        explanation=(
            "Processes = cores / the share of its time a process computes. One per core is "
            "the rule for work that only computes; with waiting in it, a single-threaded "
            "process idles its core. Notebook 07 gives the waiting part threads instead, "
            "which cost far less memory than processes."
        ),
    )

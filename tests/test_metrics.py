import pytest

from throughput_lab import ideal_throughput, percentile


def test_nearest_rank_percentile():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile(values, 100) == 100
    assert percentile([], 50) == 0.0


def test_littles_law_ideal_and_its_bottleneck():
    # 8 in flight, 100 ms each, nothing else in the way: 80/s
    assert ideal_throughput(8, 0.1).rps == pytest.approx(80)
    # a def function on 1 process x 4 threads: the pool allows 4 at once
    pool = ideal_throughput(8, 0.1, slots=4)
    assert (pool.rps, pool.bottleneck) == (pytest.approx(40), "thread pool")
    # CPU work: 2 cores, 50 ms of CPU each -> at most 40/s whatever the concurrency
    cpu = ideal_throughput(16, 0.05, slots=16, cores=2, cpu_s=0.05)
    assert (cpu.rps, cpu.bottleneck) == (pytest.approx(40), "CPU cores")
    assert ideal_throughput(4, 0.0).rps == 0.0


def test_every_limit_of_the_worker_model_is_a_bound():
    # async def holding its loop 100 ms of every call: one invocation at a time per process
    loop = ideal_throughput(8, 0.1, processes=2, loop_s=0.1)
    assert (loop.rps, loop.bottleneck) == (pytest.approx(20), "event loop")
    # 1 s of default-executor thread time per invocation, 6 threads, 1 process: 6/s
    executor = ideal_throughput(4, 0.2, executor_threads=6, executor_s=1.0)
    assert (executor.rps, executor.bottleneck) == (
        pytest.approx(6),
        "asyncio's default executor",
    )
    # the pool is charged for the time on a thread, not the round trip
    pool = ideal_throughput(8, 0.11, slots=4, pool_s=0.1)
    assert pool.rps == pytest.approx(40)
    assert set(pool.bounds) == {"requests in flight", "thread pool"}
    assert ideal_throughput(8, 0.1, spread=0.05).error_rps == pytest.approx(4)


def _record(latency_ms: float, run_ms: float = 0.0, cpu_ms: float = 0.0, **fields):
    from throughput_lab import InvocationRecord

    return InvocationRecord(
        0,
        "f",
        dispatched=1.0,
        started=1.0,
        ended=1.0 + run_ms / 1e3,
        completed=1.0 + latency_ms / 1e3,
        cpu_ms=cpu_ms,
        status=200,
        **fields,
    )


def test_demand_takes_medians_alone_and_the_run_where_it_was_faster():
    from throughput_lab.metrics import Demand

    alone = [_record(120, 100, 5), _record(110, 100, 5), _record(400, 100, 5)]
    assert Demand.measure(alone).service_s == pytest.approx(0.12)
    # a cold start alone, faster under load: the ideal must not sit below what was done
    run = [_record(90, 90, 4)] * 5
    demand = Demand.measure(alone, run)
    assert demand.service_s == pytest.approx(0.09)
    assert demand.cpu_s == pytest.approx(0.004)
    # slower in the run (the GIL, a queue): the time alone stays the yardstick
    assert Demand.measure(alone, [_record(500, 300, 5)] * 5).pool_s == pytest.approx(0.1)
    failed = _record(10)
    failed.status = 500
    assert Demand.measure([failed]).samples == 0


def test_free_cores_are_at_least_what_the_lab_used_and_at_most_its_cores():
    from throughput_lab.cpu_share import CpuShare

    assert CpuShare(cores=2, ours=0.5, others=1.0).free == pytest.approx(1.0)
    assert CpuShare(cores=2, ours=1.3, others=1.0).free == pytest.approx(1.3)
    assert CpuShare(cores=2, ours=0.1, others=0.0).free == pytest.approx(2.0)


def test_a_run_far_under_its_ideal_names_what_held_it_back():
    from throughput_lab.metrics import Ideal, summarize

    records = [_record(200, 190, 180)] * 20
    common = dict(function="cpu_bound", concurrency=4, elapsed_s=4.0, startup_s=0.0, service_s=0.19)
    ideal = ideal_throughput(4, 0.19, slots=4, pool_s=0.19)
    gil = summarize(records, processes=1, threads=4, ideal=ideal, **common)
    assert gil.efficiency < 0.7 and gil.limited_by.startswith("the GIL")
    on_target = summarize(records, processes=1, threads=4, ideal=Ideal(5.2, "x"), **common)
    assert on_target.limited_by == ""
    assert "± " in on_target.line()


def test_a_run_over_its_ideal_says_so_only_within_the_error_of_both():
    import dataclasses

    from throughput_lab.metrics import Ideal, summarize

    records = [_record(200, 190, 180)] * 20
    common = dict(function="cpu_bound", concurrency=4, elapsed_s=4.0, startup_s=0.0, service_s=0.19)
    s = summarize(records, processes=1, threads=4, ideal=Ideal(4.5, "x"), **common)
    near = dataclasses.replace(
        s,
        throughput_rps=5.0,
        throughput_error_rps=0.2,
        ideal_rps=4.3,
        ideal_error_rps=0.4,
        efficiency=5.0 / 4.3,
    )
    assert "116%, equal within the ±" in near.line()
    far = dataclasses.replace(near, ideal_error_rps=0.1)  # 0.7 apart, 2 x 0.22 allowed
    assert "116%;" in far.line() and "equal within" not in far.line()
    under = dataclasses.replace(near, throughput_rps=4.0, efficiency=4.0 / 4.3)
    assert "93%;" in under.line()


def test_an_async_run_names_the_pool_it_left_unused():
    """Two async runs with different pools read differently: each names its pool size."""
    import dataclasses

    from throughput_lab.metrics import Ideal, summarize

    records = [_record(200, 190, 180)] * 20
    common = dict(function="cpu_bound", concurrency=4, elapsed_s=4.0, startup_s=0.0, service_s=0.19)
    s = summarize(records, processes=1, threads=32, ideal=Ideal(4.5, "x"), **common)
    s = dataclasses.replace(s, is_async=True)
    assert "async def on the event loop (pool of 32 threads unused)" in s.line()
    assert "(pool of 6 threads unused)" in dataclasses.replace(s, threads=6).line()


def test_most_at_once_counts_overlap_in_each_process_not_across_them():
    from throughput_lab import InvocationRecord, most_at_once

    def record(i: int, pid: int, started: float, ended: float) -> InvocationRecord:
        return InvocationRecord(i, "f", pid=pid, started=started, ended=ended)

    # one process: three overlap at 1.5; one that starts as another ends does not count
    one = [record(0, 1, 1, 2), record(1, 1, 1.2, 1.6), record(2, 1, 1.4, 1.9), record(3, 1, 2, 3)]
    assert most_at_once(one) == 3
    # two processes, one at a time each: never more than one in either
    two = [record(0, 1, 1, 2), record(1, 2, 1, 2), record(2, 1, 2, 3), record(3, 2, 2, 3)]
    assert most_at_once(two) == 1
    assert most_at_once([record(0, 1, 0, 0)]) == 0  # never started: not counted


def test_involuntary_switches_are_the_windows_growth_summed_over_workers():
    from throughput_lab.channel import WorkerStats
    from throughput_lab.run import involuntary_switches

    before = [WorkerStats(worker=0, involuntary_switches=10), WorkerStats(worker=1)]
    after = [
        WorkerStats(worker=0, involuntary_switches=25),
        WorkerStats(worker=1, involuntary_switches=4),
        WorkerStats(worker=2, involuntary_switches=3),  # a replacement: all of it is new
    ]
    assert involuntary_switches(before, after) == 15 + 4 + 3

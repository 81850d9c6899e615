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

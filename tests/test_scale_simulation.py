"""The scale-out simulation against queueing theory, Little's law and its own rules."""

from __future__ import annotations

import itertools
import random
import time
from types import SimpleNamespace

import pytest

from throughput_lab.scale.controller import ScaleRules
from throughput_lab.scale.queueing import mgc_wait_s, mmc_wait_s
from throughput_lab.scale.service import ServiceTimes
from throughput_lab.scale.simulation import instances_apart, simulate_requests
from throughput_lab.scale.traffic import SHAPES, Traffic

pytestmark = pytest.mark.once

SERVERS, MEAN_S, REQUESTS = 4, 0.1, 60_000


def fixed_pool(servers: int) -> ScaleRules:
    """One always-ready instance holding ``servers`` requests, no scale-out, no timeout."""
    return ScaleRules(
        per_instance_concurrency=servers, always_ready=1, max_instances=0, queue_timeout_s=1e9
    )


@pytest.mark.parametrize("rho", [0.5, 0.6, 0.7, 0.8, 0.9])
def test_mean_wait_matches_erlang_c_with_exponential_service(rho: float) -> None:
    service = ServiceTimes.exponential(MEAN_S, 50_000)
    rate = rho * SERVERS / service.mean(1)
    # Near saturation the mean wait settles slowly: more requests there (a fixed seed, so
    # the run is the same each time; other seeds land within the same 10 %).
    requests = REQUESTS if rho < 0.8 else 150_000
    result = simulate_requests(
        fixed_pool(SERVERS), Traffic("steady", rate, requests / rate), service, seed=1
    )
    theory = mmc_wait_s(SERVERS, rate, service.mean(1))
    assert result.waits_s_mean == pytest.approx(theory, rel=0.10)
    # Little's law: time-average in flight = throughput x mean time in the system.
    throughput = result.completed / result.elapsed_s
    assert result.mean_in_flight == pytest.approx(throughput * result.mean_latency_s, rel=0.02)


def test_general_service_matches_the_mgc_approximation() -> None:
    rng = random.Random(5)
    service = ServiceTimes({1: tuple(rng.uniform(0.05, 0.15) for _ in range(20_000))})
    rate = 0.85 * SERVERS / service.mean(1)
    result = simulate_requests(
        fixed_pool(SERVERS), Traffic("steady", rate, REQUESTS / rate), service, seed=4
    )
    # Allen-Cunneen is an approximation: good to about 15 % for c = 4 at this load.
    assert result.waits_s_mean == pytest.approx(mgc_wait_s(SERVERS, rate, service.at(1)), rel=0.15)


def test_scale_out_settles_at_in_flight_over_per_instance_concurrency() -> None:
    service = ServiceTimes({1: (0.2,), 4: (0.2,)})
    rules = ScaleRules(per_instance_concurrency=4, startup_s=2.0, scale_in_after_s=5.0)
    result = simulate_requests(rules, Traffic("steady", 200, 120), service, sample_s=1)
    settled = [s.instances for s in result.series if s.t_s > 60]
    # 200 req/s x 0.2 s = 40 in flight, 4 per instance: about 10 (Poisson bursts add some).
    assert min(settled) >= 10 and max(settled) <= 15
    assert result.rejected == 0
    assert result.cold_starts >= 10
    assert result.latency_ms(50) == pytest.approx(200, rel=0.05)
    assert result.instance_seconds == pytest.approx(
        sum(s.instances for s in result.series), rel=0.05
    )


def test_the_cap_rejects_what_waits_too_long() -> None:
    service = ServiceTimes({1: (0.5,)})
    rules = ScaleRules(max_instances=5, startup_s=1.0, queue_timeout_s=2.0)
    result = simulate_requests(rules, Traffic("steady", 50, 60), service)
    # 5 instances serve 10 req/s of the 50 arriving: the rest wait 2 s and are rejected.
    assert result.instances_max == 5
    assert result.completed / result.elapsed_s == pytest.approx(10, rel=0.1)
    assert result.rejected / (result.rejected + result.completed) > 0.7
    assert max(result.latencies_s) <= 2.0 + 0.5 + 1e-9


def test_always_ready_instances_take_the_first_burst_without_a_cold_start() -> None:
    service = ServiceTimes({1: (0.1,)})
    cold = simulate_requests(ScaleRules(startup_s=5.0), Traffic("steady", 20, 30), service)
    warm = simulate_requests(
        ScaleRules(always_ready=4, startup_s=5.0), Traffic("steady", 20, 30), service
    )
    assert warm.cold_starts < cold.cold_starts
    assert warm.latency_ms(99) < cold.latency_ms(99)


@pytest.mark.parametrize("shape", SHAPES)
def test_traffic_shapes_reach_their_peak(shape: str) -> None:
    traffic = Traffic(shape, 100, 100)
    assert max(traffic.rate(t) for t in range(101)) == pytest.approx(100, rel=0.01)
    arrivals = list(traffic.arrivals(random.Random(2)))
    assert len(arrivals) == pytest.approx(traffic.expected_requests(), rel=0.1)


def test_a_ten_minute_spike_to_2000_rps_on_1000_instances_simulates_in_under_30_s() -> None:
    service = ServiceTimes({1: tuple(0.45 + 0.001 * i for i in range(100))})
    rules = ScaleRules(max_instances=1000, startup_s=3.0)
    began = time.perf_counter()
    result = simulate_requests(rules, Traffic("spike", 2000, 600), service)
    took = time.perf_counter() - began
    assert result.instances_max == 1000
    assert result.completed > 500_000
    assert took < 30, f"took {took:.1f} s"  # the bound for this machine


def test_a_queue_scales_by_target_based_scaling() -> None:
    """Messages at 200/s taking 0.5 s: 100 in progress, 16 per instance (8 + 8) at most. Each
    listener fetches 8 and waits until its messages fall to 8, so it holds 8-16 and the
    queue always has some waiting: 7-9 instances in the end (ceil(100-140 / 16)), reached 4
    at a time every 30 s; the oldest message waits meanwhile."""
    service = ServiceTimes({16: (0.5,)})
    rules = ScaleRules.for_queue(batch_size=8, new_batch_threshold=8, startup_s=2.0)
    result = simulate_requests(rules, Traffic("steady", 200, 300), service, sample_s=1)
    at = {round(s.t_s): s.instances for s in result.series}
    steps = [b - a for a, b in itertools.pairwise(at.values()) if b > a]
    assert max(steps) <= 4  # at most 4 added per decision
    assert (at[25], at[35], at[65]) == (0, 4, 8)  # one decision every 30 s
    settled = [at[t] for t in range(220, 300)]  # the backlog gone and scaled in
    assert set(settled) <= {7, 8, 9}, settled
    assert result.rejected == 0  # messages wait in the queue
    assert max(s.oldest_wait_s for s in result.series) > 30


def _counts(counts: list[int], step_s: float = 0.5) -> SimpleNamespace:
    """A run's instance counts sampled every ``step_s`` (only what instances_apart reads)."""
    return SimpleNamespace(
        series=[SimpleNamespace(t_s=i * step_s, instances=n) for i, n in enumerate(counts)]
    )


def test_live_counts_are_judged_against_the_simulated_range_near_them() -> None:
    sim = _counts([1, 1, 1, 7, 7, 7, 7, 7, 7])
    # A step caught half-way on another clock phase is not apart; a steady miss is.
    assert not instances_apart(_counts([1, 1, 5, 5, 7, 7, 7, 7, 7]), sim, 0.0, 1.0)
    assert instances_apart(_counts([1, 1, 1, 7, 7, 7, 7, 4, 4]), sim, 0.0, 1.0) == [
        (3.5, 4),
        (4.0, 4),
    ]

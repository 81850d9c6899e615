"""Queueing theory the simulation is checked against: Erlang C (M/M/c) and the
Allen-Cunneen approximation for M/G/c (Erlang C's wait scaled by (1 + cs^2) / 2)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def erlang_c(servers: int, arrival_rps: float, service_s: float) -> float:
    """Probability that an arrival waits, in an M/M/c queue (Erlang's C formula)."""
    offered = arrival_rps * service_s
    if offered >= servers:
        raise ValueError(f"utilisation {offered / servers:.2f} >= 1: the queue never settles")
    # The recurrence for Erlang B, then C from B (stable for hundreds of servers).
    b = 1.0
    for k in range(1, servers + 1):
        b = offered * b / (k + offered * b)
    rho = offered / servers
    return b / (1 - rho + rho * b)


def mmc_wait_s(servers: int, arrival_rps: float, service_s: float) -> float:
    """Mean wait before service in an M/M/c queue."""
    c = erlang_c(servers, arrival_rps, service_s)
    return c * service_s / (servers - arrival_rps * service_s)


def mgc_wait_s(servers: int, arrival_rps: float, service_times_s: Sequence[float]) -> float:
    """Mean wait in an M/G/c queue, by Allen-Cunneen: M/M/c's times (1 + cs^2) / 2."""
    mean = statistics.fmean(service_times_s)
    cs2 = statistics.pvariance(service_times_s) / mean**2
    return mmc_wait_s(servers, arrival_rps, mean) * (1 + cs2) / 2

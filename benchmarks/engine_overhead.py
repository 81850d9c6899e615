"""What the engine itself costs, next to what it measures.

Prints (not a timed test; the figures go in the closing note of the engine issue):
- no-op ``async def`` invocations per second through one worker process, and the
  per-invocation overhead in microseconds, beside a bare ``asyncio.gather`` of the same
  coroutines in the same run;
- how long 10 worker processes take to be ready;
- peak RSS of a worker process.

Run: python benchmarks/engine_overhead.py [--invocations N]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import azure.functions as func

from throughput_lab import Host, HttpRequestFields
from throughput_lab.load import closed_loop, host_sender

APP = Path(__file__).resolve().parent.parent / "tests" / "apps" / "engine_app"


async def _noop(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("ok")


async def bare_gather(n: int) -> float:
    """Seconds for n no-op invocations awaited together on one loop, no worker around them."""
    request = HttpRequestFields(route="noop").to_request()
    started = time.perf_counter()
    await asyncio.gather(*(_noop(request) for _ in range(n)))
    return time.perf_counter() - started


async def through_worker(host: Host, n: int, concurrency: int) -> float:
    send = host_sender(host, "noop", HttpRequestFields(route="noop"), timeout_s=30)
    records, elapsed = await closed_loop(send, concurrency, n)
    assert all(r.ok for r in records)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invocations", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    n = args.invocations

    with Host(APP, processes=1) as host:
        asyncio.run(through_worker(host, 500, args.concurrency))  # warm
        worker_s = asyncio.run(through_worker(host, n, args.concurrency))
        peak_mb = max(s.peak_rss_bytes for s in host.stats()) / 2**20
    gather_s = asyncio.run(bare_gather(n))
    print(
        f"no-op async def through one worker: {n / worker_s:,.0f} invocations/s "
        f"({worker_s / n * 1e6:.1f} us each, {args.concurrency} in flight)"
    )
    print(
        f"bare asyncio.gather of the same:    {n / gather_s:,.0f} invocations/s "
        f"({gather_s / n * 1e6:.1f} us each)"
    )
    print(f"engine overhead per invocation:     {(worker_s - gather_s) / n * 1e6:.1f} us")

    started = time.monotonic()
    with Host(APP, processes=10) as host:
        ready_s = time.monotonic() - started
        peaks = [s.peak_rss_bytes / 2**20 for s in host.stats()]
    print(f"10 worker processes ready in:       {ready_s:.2f} s")
    print(
        f"peak RSS of a worker:               {peak_mb:.1f} MB after the no-op run; "
        f"{min(peaks):.1f}-{max(peaks):.1f} MB for the 10 fresh ones"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

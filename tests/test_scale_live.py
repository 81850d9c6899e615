"""Live scale-out on this machine: real host instances behind one router, against the model.

Sized for a busy 2-core machine: an I/O-bound handler (the upstream's delay), at most 7
instances. Tolerances are the issue's: instances within one of the simulation's at each
sample after warm-up, p95 within 25 %.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from conftest import session_processes, wait_gone

from throughput_lab import locust_export
from throughput_lab.load import closed_loop, url_sender
from throughput_lab.locust_export import locust_installed
from throughput_lab.scale.controller import ScaleRules
from throughput_lab.scale.lab import ScaleLab
from throughput_lab.scale.live import LiveScaleOut
from throughput_lab.scale.live_http import LiveHttp
from throughput_lab.scale.simulation import instances_apart, simulate_requests
from throughput_lab.scale.traffic import Traffic

SAMPLE_APP = Path(__file__).resolve().parent.parent / "sample_functions"
# Up to 7 instances with their workers on 2 cores, against a model: beside the other pytest
# worker's notebooks the live p95 measures this machine's load, not the scale-out.
pytestmark = pytest.mark.solo


def serve_processes() -> list:
    """Instances (``serve``) and their workers started by this test session."""
    return session_processes(
        lambda cmd: (
            any("throughput_lab" in part for part in cmd)
            and any("serve" in part or "worker_process" in part for part in cmd)
        )
    )


@pytest.fixture
def lab():
    before = {p.pid for p in serve_processes()}
    with ScaleLab(SAMPLE_APP, threads=8) as scale_lab:
        yield scale_lab
    left = wait_gone(serve_processes, before)
    assert not left, f"processes left behind: {[p.pid for p in left]}"


def test_live_scale_out_matches_the_simulation(lab: ScaleLab) -> None:
    traffic = Traffic("spike", 40, 24)
    # No scale-in within the run (30 s): when it comes follows when the live backlog
    # drained, which starting hosts on 2 cores delays; the controller's tests cover it.
    live = lab.live(
        "sync_io", traffic, per_instance_concurrency=1, max_instances=6, always_ready=1,
        scale_in_after_s=30,
    )  # fmt: skip
    # The same controller, traffic (same seed) and calibration; start-up as measured live.
    sim = simulate_requests(live.rules, traffic, live.service, seed=1, sample_s=0.5)
    assert live.failed == 0 and live.rejected == 0, live.errors
    assert live.cold_starts == 6 and live.instances_max == 7
    warm = live.rules.startup_s + 1.0
    # Within one instance of the simulation at every sample after warm-up, give or take two
    # decision intervals: the two decide once a second, each on its own clock, and starting
    # hosts takes CPU from the live run's load, so a live step can come a decision later.
    assert not instances_apart(live, sim, warm, 2 * live.rules.decision_s)
    assert live.latency_ms(95) == pytest.approx(sim.latency_ms(95), rel=0.25)


def test_a_killed_instance_is_replaced_and_only_its_requests_fail(lab: ScaleLab) -> None:
    lab.upstream_delay_ms = 400.0
    traffic = Traffic("steady", 20, 10)
    # 20 req/s x ~0.4 s = ~8 in flight over 3 always-ready instances of 4 slots each.
    live = lab.live(
        "sync_io", traffic, per_instance_concurrency=4, max_instances=3, always_ready=3,
        scale_in_after_s=30, faults={4.0: -1},
    )  # fmt: skip
    # What the busiest instance held when it died (its 4 slots), and any request the router
    # sent it in the moment before the first failure took it out of the rotation.
    assert 1 <= live.failed <= 6, (live.failed, live.errors)
    assert live.cold_starts >= 1  # its replacement
    after = [s for s in live.series if s.t_s > 4.0 + live.rules.startup_s + 2]
    assert after and max(s.instances for s in after) >= 3
    assert len(live.latencies_s) >= 0.8 * traffic.expected_requests() - live.failed


def test_ctrl_c_stops_every_instance(tmp_path: Path) -> None:
    before = {p.pid for p in serve_processes()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "throughput_lab", "scale", "--app", str(SAMPLE_APP),
         "--function", "sync_io", "--traffic", "steady", "--peak-rps", "20", "--live",
         "--always-ready", "2", "--max-instances", "2", "--duration", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while len(serve_processes()) - len(before) < 4 and time.monotonic() < deadline:
        time.sleep(0.2)  # two instances: each a serve and its worker
    assert len(serve_processes()) - len(before) >= 4
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert not wait_gone(serve_processes, before)


@pytest.mark.skipif(not locust_installed(), reason="Locust is not installed (the load extra)")
def test_distributed_locust_against_the_live_scale_out_agrees_with_the_engine(
    lab: ScaleLab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Locust's master and two workers on loopback, and the engine's own closed loop, at the
    same users and at the same time against the router: the same throughput within 10 %.

    sync_io waits 200 ms on its upstream, so both measure the instances' waiting, not their
    own CPU; running together, whatever else this machine does slows both alike."""
    users, seconds = 6, 10
    lab.upstream_delay_ms = 200.0
    rules = ScaleRules(
        per_instance_concurrency=4, max_instances=1, always_ready=3, scale_in_after_s=60
    )
    http = LiveHttp(lab.app, rules, "/api/sync_io", threads=8, upstream_delay_ms=200.0)
    scale_out = LiveScaleOut(rules, lab.service("sync_io", 1), http)
    plan = locust_export.scenario("http://127.0.0.1/api/sync_io", users=users)
    locustfile, _ = locust_export.write_load_test(plan, tmp_path)

    async def both(url: str) -> tuple[locust_export.LocustStats, float]:
        base = url.split("/api/")[0]
        swarm = asyncio.to_thread(
            locust_export.run_locust_distributed, locustfile, base, users, seconds,
            tmp_path / "stats", 2,
        )  # fmt: skip
        async with aiohttp.ClientSession() as session:
            # Longer than Locust's window, which begins once its workers have connected.
            engine = closed_loop(url_sender(session, url, {}), users, duration_s=seconds + 8)
            stats, (records, elapsed) = await asyncio.gather(swarm, engine)
        ok = sum(1 for r in records if r.ok)
        return stats, ok / elapsed

    (stats, engine_rps), _ = asyncio.run(scale_out.serve(both, seconds + 8))
    with capsys.disabled():
        print(
            f"\n[scale locust] distributed Locust {stats.throughput_rps:.1f} req/s, the engine "
            f"{engine_rps:.1f} req/s, {users} users each (x{stats.throughput_rps / engine_rps:.3f})"
        )
    assert not session_processes(lambda cmd: any("locust" in part for part in cmd))
    assert stats.failures == 0 and stats.requests > 0
    assert stats.throughput_rps == pytest.approx(engine_rps, rel=0.10)

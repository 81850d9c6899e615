"""How much CPU was free during a run: measured, not assumed from the core count.

A learner's laptop runs a browser and a video call; a Binder session shares its node. The
cores the lab may use (CPU affinity, a cgroup quota) are an upper limit; what other
programs used during the run is taken off it. ``CpuMeter`` reads the CPU time the machine
spent busy over the run's window (system-wide, or the container's own account under a
cgroup quota, as on Binder) and the CPU time of the lab's own processes, and calls the
difference "others". Low-priority (``nice``) work only counts where Linux groups
processes by session (autogroup, as most desktops do): there it does not yield to the lab;
elsewhere it only takes what the lab leaves idle.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from .app_settings import available_cores

CGROUP = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class CpuShare:
    """Cores' worth of CPU over one window: what the lab may use, used, and left to it."""

    cores: float  # the cores this lab may use at all (affinity, quota)
    ours: float  # used by the lab's processes (this one and its workers)
    others: float  # used by everything else, at normal priority

    @property
    def free(self) -> float:
        """What was left for the lab: at least what it used, at most its cores."""
        return min(self.cores, max(self.ours, self.cores - self.others))

    def text(self) -> str:
        return f"{self.free:.1f} of {self.cores:g} cores free"


def _quota_limited() -> bool:
    try:
        return (CGROUP / "cpu.max").read_text().split()[0] != "max"
    except (OSError, IndexError):
        return False


def _busy_s(cpus: set[int] | None) -> float:
    """CPU seconds the machine (or, under a quota, this container) has spent busy."""
    if _quota_limited():
        try:
            for line in (CGROUP / "cpu.stat").read_text().splitlines():
                key, value = line.split()
                if key == "usage_usec":
                    return int(value) / 1e6
        except (OSError, ValueError):
            pass
    per_cpu = psutil.cpu_times(percpu=True)
    chosen = [t for i, t in enumerate(per_cpu) if cpus is None or i in cpus]
    nice_competes = _autogroup()
    busy = 0.0
    for t in chosen:
        busy += t.user + t.system + (t.nice if nice_competes else 0.0)
        busy += sum(getattr(t, name, 0.0) for name in ("irq", "softirq", "steal"))
    return busy


def _autogroup() -> bool:
    """Whether Linux schedules by session group, so that nice does not yield across them."""
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return False


class CpuMeter:
    """``start(ours)`` and ``stop(ours)`` around a window; ``ours`` = the lab's CPU seconds."""

    def __init__(self, cpus: set[int] | None = None) -> None:
        self.cpus = cpus or _affinity()
        self.cores = available_cores() if cpus is None else min(available_cores(), len(cpus))
        self._start: tuple[float, float, float] | None = None

    def start(self, ours_s: float) -> None:
        self._start = (time.monotonic(), _busy_s(self.cpus), ours_s)

    def stop(self, ours_s: float) -> CpuShare:
        if self._start is None:
            raise RuntimeError("CpuMeter.stop() before start()")
        wall0, busy0, ours0 = self._start
        wall = max(time.monotonic() - wall0, 1e-6)
        ours = max(0.0, ours_s - ours0) / wall
        busy = max(0.0, _busy_s(self.cpus) - busy0) / wall
        return CpuShare(cores=self.cores, ours=ours, others=max(0.0, busy - ours))


def _affinity() -> set[int] | None:
    try:
        return set(psutil.Process().cpu_affinity() or ())
    except (AttributeError, psutil.Error):  # macOS has no affinity
        return None


def own_cpu_s() -> float:
    """CPU seconds of this process, all its threads (the host, the load, the upstream)."""
    times = psutil.Process().cpu_times()
    return times.user + times.system

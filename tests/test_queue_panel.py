"""Notebook 11's queue panel: Run, Stop and failures as the HTTP panel has them, and a Run
after the lab was closed (notebook 11's last cell) that starts the lab again and drains.

The first tests use a made-up lab (fast, no processes); the last one drives a real
QueueLab, Azurite and worker processes, by the Run button's click handler (no browser).
"""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

from conftest import SAMPLE_APP, azurite_processes, wait_gone, wait_no_workers, worker_processes

from throughput_lab.queue.lab import QueueLab
from throughput_lab.queue.panel import QueuePanel

PNG = b"\x89PNG\r\n\x1a\n"


def drain_result(messages: int) -> SimpleNamespace:
    """What the panel reads of a DrainResult: its line, its in-flight curve and its cap."""
    return SimpleNamespace(
        line=lambda: f"queue_sync_io: {messages} messages (ideal 1.0 ± 0.1)",
        in_flight_curve=[(0.0, 0), (0.1, 4), (0.2, 0)],
        options=SimpleNamespace(max_in_flight=24),
    )


class FakeQueueLab:
    """A QueueLab's face: Azurite and the upstream up or not, start, close, cancel, drain."""

    def __init__(self, running: bool = True, hold: bool = False) -> None:
        self.azurite = SimpleNamespace(running=running)
        self.upstream = SimpleNamespace(port=1234 if running else 0)
        self.calls: list[object] = []
        self.hold = hold  # drain until cancelled
        self.fail: Exception | None = None
        self._cancel = threading.Event()

    def start(self) -> FakeQueueLab:
        self.calls.append("start")
        self.azurite.running, self.upstream.port = True, 1234
        return self

    def close(self) -> None:
        self.calls.append("close")
        self.azurite.running, self.upstream.port = False, 0
        self._cancel.set()

    def cancel(self) -> None:
        self._cancel.set()

    def drain(self, function: str, messages: int, *, on_done=None, **values: int):
        self.calls.append(("drain", function, messages, values))
        if not self.upstream.port:
            raise RuntimeError("the upstream is not running; call start() first")
        self._cancel.clear()
        if self.fail is not None:
            raise self.fail
        for _ in range(messages):
            on_done(None)
        while self.hold and not self._cancel.wait(0.01):
            pass
        if self._cancel.is_set():
            raise TimeoutError(f"{messages} of {messages} messages done")  # as after a restart
        return drain_result(messages)


def click_and_wait(panel: QueuePanel, during=None, timeout_s: float = 10.0) -> None:
    """Press Run (its click handler), call ``during`` once the drain goes, wait for the end."""

    async def scenario() -> None:
        panel.run_button.click()
        assert panel.running and panel.run_button.disabled and not panel.stop_button.disabled
        deadline = time.monotonic() + timeout_s
        called = during is None
        while panel.running:
            assert time.monotonic() < deadline, f"still running: {panel.status.value}"
            if not called:
                called = during()
            await asyncio.sleep(0.01)

    asyncio.run(scenario())


def test_a_run_after_the_lab_was_closed_starts_it_again():
    lab = FakeQueueLab(running=False)
    panel = QueuePanel(lab, "queue_sync_io", messages=5, threads=8)
    click_and_wait(panel)
    assert lab.calls[:2] == ["close", "start"], lab.calls
    assert lab.calls[2] == (
        "drain",
        "queue_sync_io",
        5,
        {"batch_size": 16, "new_batch_threshold": 8, "threads": 8, "processes": 1},
    )
    assert panel.status.value.startswith("done in") and "runs so far: 1" in panel.status.value
    assert "5 messages" in panel.summary.value and panel.progress.value == 1
    assert bytes(panel.image.value).startswith(PNG)
    assert not panel.run_button.disabled and panel.stop_button.disabled


def test_a_running_lab_is_not_started_again():
    lab = FakeQueueLab(running=True)
    click_and_wait(QueuePanel(lab, "queue_sync_io", messages=3))
    assert [c for c in lab.calls if isinstance(c, str)] == []


def test_stop_ends_the_drain_and_adds_nothing():
    lab = FakeQueueLab(hold=True)
    panel = QueuePanel(lab, "queue_sync_io", messages=4)
    click_and_wait(panel, during=lambda: bool(panel._done) and (panel.stop() or True))
    assert panel.status.value == "stopped: nothing added to the runs so far: 0"
    assert panel.history == [] and panel.progress.value == 0
    assert not panel.run_button.disabled and panel.stop_button.disabled


def test_a_failure_is_one_line_and_the_last_result_is_cleared():
    lab = FakeQueueLab()
    panel = QueuePanel(lab, "queue_sync_io", messages=3)
    click_and_wait(panel)
    lab.fail = ValueError("bad messages must be 0-3, got 9")
    click_and_wait(panel)
    assert panel.status.value == "failed: ValueError: bad messages must be 0-3, got 9"
    assert panel.summary.value == "" and bytes(panel.image.value) == b""
    assert len(panel.history) == 1 and not panel.run_button.disabled


def test_the_queue_panel_runs_as_awaited_from_a_cell():
    panel = QueuePanel(FakeQueueLab(), "queue_sync_io", messages=3)
    result = asyncio.run(panel.run(batch_size=32, new_batch_threshold=16))
    assert result is panel.history[0]
    assert (panel.sliders["batch_size"].value, panel.sliders["new_batch_threshold"].value) == (
        32,
        16,
    )


# -- a real lab ---------------------------------------------------------------------------


def test_run_after_the_lab_was_closed_drains_and_stop_still_stops():
    """Notebook 11 after Run All: its last cell closed the lab; Run then drains, Stop stops."""
    workers_before = {p.pid for p in worker_processes()}
    azurite_before = {p.pid for p in azurite_processes()}
    lab = QueueLab(SAMPLE_APP, upstream_delay_ms=20).start()
    try:
        panel = QueuePanel(lab, "queue_sync_io", messages=20, threads=8)
        lab.close()  # notebook 11's last cell
        click_and_wait(panel, timeout_s=180)
        assert panel.status.value.startswith("done in"), panel.status.value
        assert len(panel.history) == 1 and panel.history[0].summary.ok == 20
        assert "queue_sync_io:" in panel.summary.value
        assert bytes(panel.image.value).startswith(PNG)

        # Stop on the lab started again: stopped, nothing added, within seconds. A drain of
        # about 10 s (8 threads, 200 ms each), so that Stop comes well before its end.
        panel.messages, lab.upstream.delay_ms = 400, 200
        pressed: list[float] = []

        def stop_once_draining() -> bool:
            if "draining" in panel.status.value and panel._done >= 5:
                pressed.append(time.monotonic())
                panel.stop()
                return True
            return False

        click_and_wait(panel, during=stop_once_draining, timeout_s=180)
        assert pressed and time.monotonic() - pressed[0] < 10
        assert panel.status.value == "stopped: nothing added to the runs so far: 1"
        assert not panel.run_button.disabled and panel.stop_button.disabled
    finally:
        lab.close()
    assert not wait_no_workers(workers_before)
    assert not wait_gone(azurite_processes, azurite_before)

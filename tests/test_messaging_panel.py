"""Notebook 13's panel on real labs (no browser): Run after the lab was closed starts it
again and drains; Stop ends a drain within seconds and adds nothing."""

from __future__ import annotations

import asyncio
import time

from conftest import SAMPLE_APP, wait_no_workers, worker_processes

from throughput_lab.eventhubs.lab import EventHubLab
from throughput_lab.messaging_panel import MessagingPanel
from throughput_lab.servicebus.lab import ServiceBusLab

PNG = b"\x89PNG\r\n\x1a\n"


def click_and_wait(panel: MessagingPanel, during=None, timeout_s: float = 60.0) -> None:
    """Press Run (its click handler), call ``during`` until it says done, wait for the end."""

    async def scenario() -> None:
        panel.run_button.click()
        assert panel.running and not panel.stop_button.disabled
        deadline = time.monotonic() + timeout_s
        called = during is None
        while panel.running:
            assert time.monotonic() < deadline, f"still running: {panel.status.value}"
            if not called:
                called = during()
            await asyncio.sleep(0.01)

    asyncio.run(scenario())


def test_event_hubs_panel_runs_after_the_lab_was_closed():
    before = {p.pid for p in worker_processes()}
    lab = EventHubLab(SAMPLE_APP, upstream_delay_ms=20).start()
    try:
        panel = MessagingPanel(lab, "eh_batch_awaited", messages=40, max_event_batch_size=5)
        assert set(panel.sliders) == {"partitions", "max_event_batch_size", "threads", "processes"}
        lab.close()  # the notebook's last cell
        click_and_wait(panel)
        assert panel.status.value.startswith("done in"), panel.status.value
        (result,) = panel.history
        assert result.summary.errors == 0 and len(result.events) == 40
        assert "eh_batch_awaited:" in panel.summary.value
        assert bytes(panel.image.value).startswith(PNG)
    finally:
        lab.close()
    assert not wait_no_workers(before)


def test_service_bus_panel_stop_ends_a_drain_and_adds_nothing():
    before = {p.pid for p in worker_processes()}
    lab = ServiceBusLab(SAMPLE_APP, upstream_delay_ms=200).start()
    try:
        # 400 messages, 2 at once, 200 ms each: 40 s, so Stop comes well before the end.
        panel = MessagingPanel(lab, "sb_async_io", messages=400, max_concurrent_calls=2)
        pressed: list[float] = []

        def stop_once_draining() -> bool:
            if time.monotonic() - began > 3:
                pressed.append(time.monotonic())
                panel.stop()
                return True
            return False

        began = time.monotonic()
        click_and_wait(panel, during=stop_once_draining)
        assert pressed and time.monotonic() - pressed[0] < 10
        assert panel.status.value == "stopped: nothing added to the runs so far: 0"
        assert panel.history == [] and not panel.run_button.disabled
    finally:
        lab.close()
    assert not wait_no_workers(before)

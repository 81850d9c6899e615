"""Service Bus triggers: the extension's settings, the listener with real workers on the
in-process queue entity, and the done-when measurements of issue 25 (as ratios).

Facts checked here come from Azure/azure-sdk-for-net, WebJobs Service Bus extension
(``Config/ServiceBusOptions.cs``, ``Listeners/ServiceBusListener.cs``,
``Primitives/MessageProcessor.cs``) and Learn ("Service Bus dead-letter queues",
"Message sessions").
"""

from __future__ import annotations

import json

import azure.functions as func
import pytest
from conftest import APPS, SAMPLE_APP

from throughput_lab.app_loader import AppLoadError, index_app
from throughput_lab.messaging_lab import find_triggered
from throughput_lab.queue.lab import find_queue_function
from throughput_lab.servicebus.lab import ServiceBusLab, session_of
from throughput_lab.servicebus.listener import ServiceBusOptions, ServiceBusSettingError
from throughput_lab.servicebus.message import ServiceBusMessageFields


@pytest.fixture(scope="module")
def lab():
    with ServiceBusLab(SAMPLE_APP, upstream_delay_ms=100) as bus_lab:
        yield bus_lab


# -- the settings, without a run ---------------------------------------------------------


def test_service_bus_options_defaults_are_the_extensions():
    """ServiceBusOptions.cs: 16 x processor count calls, 8 sessions, prefetch 0,
    autoCompleteMessages true."""
    options = ServiceBusOptions(processor_count=4)
    assert options.calls == 64
    assert options.max_concurrent_sessions == 8
    assert options.prefetch_count == 0
    assert options.auto_complete_messages is True
    assert options.session_idle_timeout_s == 60
    assert options.max_in_flight(sessions_enabled=False) == 64
    assert options.max_in_flight(sessions_enabled=True) == 8


def test_service_bus_options_read_host_json(tmp_path):
    (tmp_path / "host.json").write_text(
        json.dumps(
            {
                "version": "2.0",
                "extensions": {
                    "serviceBus": {
                        "maxConcurrentCalls": 3,
                        "maxConcurrentSessions": 2,
                        "autoCompleteMessages": False,
                        "sessionIdleTimeout": "00:00:05",
                    }
                },
            }
        )
    )
    options = ServiceBusOptions.from_host_json(tmp_path)
    assert (options.calls, options.max_concurrent_sessions) == (3, 2)
    assert options.auto_complete_messages is False and options.session_idle_timeout_s == 5
    assert ServiceBusOptions.from_host_json(tmp_path, max_concurrent_calls=7).calls == 7


@pytest.mark.parametrize(
    "kwargs, says",
    [
        ({"max_concurrent_calls": 0}, "maxConcurrentCalls must be >= 1"),
        ({"max_concurrent_sessions": 0}, "maxConcurrentSessions must be >= 1"),
        ({"prefetch_count": -1}, "prefetchCount"),
    ],
)
def test_bad_settings_are_one_line(kwargs, says):
    with pytest.raises(ServiceBusSettingError, match=says) as caught:
        ServiceBusOptions(**kwargs)
    assert "\n" not in str(caught.value)


def test_the_worker_gets_a_service_bus_message_with_its_properties():
    """azure-functions servicebus.py: the converter builds ServiceBusMessage with these."""
    msg = ServiceBusMessageFields("m1", b'{"n": 1}', delivery_count=2, session_id="s").to_request()
    assert isinstance(msg, func.ServiceBusMessage)
    assert (msg.message_id, msg.delivery_count, msg.session_id) == ("m1", 2, "s")
    assert msg.get_body() == b'{"n": 1}'


def test_a_service_bus_queue_trigger_is_not_a_storage_queue():
    """Issue 23 item 7: a serviceBusTrigger has a queue name too, but is not drained as a
    storage queue; the Service Bus lab takes it."""
    app = func.FunctionApp()

    @app.service_bus_queue_trigger(arg_name="msg", queue_name="orders", connection="SB")
    def orders(msg: func.ServiceBusMessage) -> None:
        pass

    info = index_app(app)["orders"]
    assert info.queue is None and info.setting("queueName") == "orders"
    described = {"orders": info.describe()}
    with pytest.raises(AppLoadError, match="is not queue-triggered"):
        find_queue_function(described, "orders")
    assert find_triggered(described, "orders", "serviceBusTrigger", "Service Bus").name == "orders"


def test_sessions_spread_with_one_hot_session():
    sessions = [session_of(i, 100, 4, 0.5) for i in range(100)]
    assert sessions.count("s0") == 50 + 13 and sessions.count("s3") == 12


# -- runs with real workers ----------------------------------------------------------------


def slots_ratio(result, calls: int, processes: int, threads: int) -> float:
    """Measured / (min(maxConcurrentCalls, threads x processes) / time alone)."""
    s = result.summary
    return s.throughput_rps / (min(calls, threads * processes) / (s.service_ms / 1e3))


@pytest.mark.timing
@pytest.mark.parametrize(
    "calls, processes, threads, messages",
    [(1, 1, 4, 12), (16, 2, 4, 64), (4, 2, 32, 32)],
)
def test_throughput_follows_max_concurrent_calls_threads_and_processes(
    lab, calls, processes, threads, messages
):
    """A 100 ms I/O-bound def: throughput = min(maxConcurrentCalls, threads x processes) /
    time alone, within 0.8-1.1. maxConcurrentCalls is one cap per host instance, shared by
    its worker processes (ServiceBusListener.cs: one processor per function)."""
    result = lab.drain(
        "sb_sync_io", messages, processes=processes, threads=threads, max_concurrent_calls=calls
    )
    assert result.summary.errors == 0 and result.left_in_queue == 0
    assert 0.8 <= slots_ratio(result, calls, processes, threads) <= 1.1, result.line()
    assert max(n for _, n in result.in_flight_curve) <= calls


@pytest.mark.timing
def test_a_hot_session_runs_in_order_one_message_at_a_time(lab):
    """Message sessions: 4 sessions, half the messages in one; each session's messages
    start in sequence order, and the hot one bounds the run, as the ideal says."""
    result = lab.drain("sb_session_io", 48, sessions=4, hot_share=0.5)
    assert result.summary.errors == 0
    assert result.order_per_session() == {"s0": True, "s1": True, "s2": True, "s3": True}
    assert result.summary.bottleneck.startswith("sessions")
    assert 0.8 <= result.summary.efficiency <= 1.1, result.line()
    alone_rps = 4 / (result.summary.service_ms / 1e3)  # four sessions, none hot
    assert result.summary.throughput_rps < 0.75 * alone_rps, result.line()


def test_sessions_beyond_max_concurrent_sessions_wait_out_the_idle_timeout(lab):
    """ServiceBusOptions.SessionIdleTimeout: a session whose messages are done is held that
    long before the processor accepts the next; with more sessions than it holds at once,
    that sets the pace, and the run's line says so."""
    result = lab.drain(
        "sb_session_io", 16, sessions=4, max_concurrent_sessions=2,
        session_idle_timeout_s=1.0, upstream_delay_ms=20,
    )  # fmt: skip
    lab.upstream.delay_ms = 100
    assert result.summary.errors == 0 and all(result.order_per_session().values())
    assert result.summary.elapsed_s >= 1.0  # the second pair waited for the first's timeout
    assert "sessionIdleTimeout" in result.summary.limited_by, result.line()


def test_a_failing_message_is_dead_lettered_at_max_delivery_count(lab):
    """Dead-letter queues + MessageProcessor: a message whose function raises is abandoned,
    delivered again, and after max delivery count tries moved to the dead-letter queue:
    kept there, not lost; the good ones are completed once."""
    result = lab.drain(
        "sb_async_io", 20, bad_messages=2, max_delivery_count=3, upstream_delay_ms=10
    )
    dead = [m for m in result.messages if m.dead_lettered]
    assert len(dead) == 2 and all(m.tries == 3 for m in dead)
    assert result.in_dead_letter_queue == 2 and result.left_in_queue == 0
    good = [m for m in result.messages if not m.dead_lettered]
    assert len(good) == 18 and all(m.tries == 1 for m in good)
    assert result.retries == 4


def test_without_auto_complete_an_unsettled_message_comes_back(lab):
    """autoCompleteMessages false: a Python function that does not settle its message
    leaves it locked; at the lock's expiry it is delivered again (and dead-lettered at the
    max delivery count), though the function succeeded every time."""
    result = lab.drain(
        "sb_async_io",
        3,
        auto_complete_messages=False,
        lock_duration_s=0.5,
        max_delivery_count=2,
        upstream_delay_ms=10,
    )
    assert result.summary.errors == 0
    assert all(m.tries == 2 and m.dead_lettered for m in result.messages)


def test_bad_drain_values_are_one_line(lab):
    with pytest.raises(ServiceBusSettingError, match="not session-enabled"):
        lab.drain("sb_sync_io", 5, sessions=2)
    with pytest.raises(AppLoadError, match="is not Service Bus-triggered"):
        lab.drain("sync_io", 5)
    with pytest.raises(ServiceBusSettingError, match="messages must be >= 1"):
        lab.drain("sb_sync_io", 0)


BATCH_APP = APPS / "servicebus_batch_app"


def test_a_batch_function_runs_one_batch_at_a_time():
    """RunBatchReceiveLoopAsync: "only executes functions at a concurrency level of 1",
    up to maxMessageBatchSize messages; maxConcurrentCalls does not apply."""
    with ServiceBusLab(BATCH_APP, upstream_delay_ms=0) as batch_lab:
        result = batch_lab.drain("orders_batch", 30, max_message_batch_size=10)
    assert result.many and result.summary.errors == 0
    assert result.summary.requests == 3  # three invocations of 10
    assert {len({id(i) for i in m.invocations}) for m in result.messages} == {1}
    assert result.summary.bottleneck == "one batch at a time"
    assert result.messages_per_s > 2 * result.summary.throughput_rps


def test_one_poison_message_takes_its_batch_to_the_dead_letter_queue():
    """TriggerAndCompleteMessagesInternal: a failed batch abandons every message in it, so
    the batch comes back whole and, at the max delivery count, is dead-lettered whole."""
    with ServiceBusLab(BATCH_APP, upstream_delay_ms=0) as batch_lab:
        result = batch_lab.drain(
            "orders_batch", 30, max_message_batch_size=10, bad_messages=1, max_delivery_count=3
        )
    dead = [m for m in result.messages if m.dead_lettered]
    assert len(dead) == 10 and all(m.tries == 3 for m in dead)
    assert result.in_dead_letter_queue == 10 and result.left_in_queue == 0
    assert result.summary.requests == 5 and result.summary.errors == 3

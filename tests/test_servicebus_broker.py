"""The emulated Service Bus queue keeps the entity's documented rules, one test per rule.

Sources (Learn): "Message transfers, locks, and settlement" (peek-lock, abandon, lock
expiry, delivery count), "Service Bus dead-letter queues" (MaxDeliveryCount, default 10,
reason MaxDeliveryCountExceeded), "Message sessions" (session id required, one receiver
per session, order within a session), "Message sequencing and timestamps".
"""

from __future__ import annotations

import pytest

from throughput_lab.servicebus.broker import (
    DEFAULT_LOCK_DURATION_S,
    DEFAULT_MAX_DELIVERY_COUNT,
    MAX_DELIVERY_COUNT_EXCEEDED,
    MessageLockLostError,
    ServiceBusQueue,
    SessionRequiredError,
)

# Pure Python, no worker: the same on every Python.
pytestmark = pytest.mark.once


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def queue(**kwargs: object) -> tuple[ServiceBusQueue, Clock]:
    clock = Clock()
    return ServiceBusQueue("q", now=clock, **kwargs), clock  # type: ignore[arg-type]


def test_defaults_are_the_entitys() -> None:
    """Queue properties: LockDuration 1 minute, MaxDeliveryCount 10."""
    q, _ = queue()
    assert q.lock_duration_s == DEFAULT_LOCK_DURATION_S == 60
    assert q.max_delivery_count == DEFAULT_MAX_DELIVERY_COUNT == 10
    with pytest.raises(ValueError, match="5 minutes"):
        ServiceBusQueue("q", lock_duration_s=301)


def test_sequence_numbers_follow_the_order_sent() -> None:
    """Message sequencing: each accepted message gets the next sequence number."""
    q, _ = queue()
    sent = [q.send(b"x") for _ in range(5)]
    assert [m.sequence_number for m in sent] == [1, 2, 3, 4, 5]
    assert [m.sequence_number for m in q.receive(5)] == [1, 2, 3, 4, 5]


def test_peek_lock_hides_a_message_from_other_receivers() -> None:
    """Peek-lock: a received message is locked; no one else receives it meanwhile."""
    q, _ = queue()
    q.send(b"a")
    first = q.receive(1)
    assert len(first) == 1 and first[0].delivery_count == 1
    assert q.receive(1) == []
    assert q.active_count == 1  # locked, not gone


def test_complete_removes_the_message() -> None:
    q, _ = queue()
    q.send(b"a")
    (m,) = q.receive(1)
    q.complete(m)
    assert q.active_count == 0 and q.completed == 1


def test_abandon_releases_it_at_once_with_its_delivery_count_up() -> None:
    """Abandon: the lock goes now; the next delivery counts one more."""
    q, _ = queue()
    q.send(b"a")
    (m,) = q.receive(1)
    q.abandon(m)
    (again,) = q.receive(1)
    assert again.message_id == m.message_id and again.delivery_count == 2


def test_an_expired_lock_releases_the_message_and_settling_it_fails() -> None:
    """Lock expiry: after LockDuration the message is delivered again; the first
    receiver's settlement fails (MessageLockLost)."""
    q, clock = queue(lock_duration_s=30)
    q.send(b"a")
    (m,) = q.receive(1)
    token = m.lock_token
    clock.t += 29
    assert q.receive(1) == []
    clock.t += 2
    (again,) = q.receive(1)
    assert again.delivery_count == 2 and again.lock_token != token
    stale = type(m)(**{**m.__dict__, "lock_token": token})
    with pytest.raises(MessageLockLostError):
        q.complete(stale)


def test_dead_lettered_when_the_delivery_count_reaches_max_delivery_count() -> None:
    """Dead-letter queues: past MaxDeliveryCount deliveries it goes to the dead-letter
    queue with reason MaxDeliveryCountExceeded: exactly max_delivery_count tries."""
    q, _ = queue(max_delivery_count=3)
    q.send(b"poison")
    tries = 0
    while batch := q.receive(1):
        tries += 1
        q.abandon(batch[0])
    assert tries == 3
    assert q.active_count == 0
    (dead,) = q.dead_letters
    assert dead.dead_letter_reason == MAX_DELIVERY_COUNT_EXCEEDED and dead.delivery_count == 3


def test_lock_expiry_counts_towards_dead_lettering_too() -> None:
    q, clock = queue(max_delivery_count=2, lock_duration_s=1)
    q.send(b"slow")
    q.receive(1)
    clock.t += 2
    q.receive(1)
    clock.t += 2
    assert q.receive(1) == [] and len(q.dead_letters) == 1


def test_a_session_entity_needs_a_session_id_and_a_plain_one_refuses_it() -> None:
    """Message sessions: a session-enabled entity refuses a message without a session id."""
    sessions, _ = queue(requires_session=True)
    with pytest.raises(SessionRequiredError):
        sessions.send(b"a")
    plain, _ = queue()
    with pytest.raises(SessionRequiredError):
        plain.send(b"a", session_id="s1")


def test_one_receiver_holds_a_session_and_gets_its_messages_in_order() -> None:
    """Message sessions: accepting a session locks it for one receiver; its messages come
    in the order sent, and an abandoned one comes back first."""
    q, _ = queue(requires_session=True)
    for i in range(3):
        q.send(f"a{i}".encode(), session_id="A")
        q.send(f"b{i}".encode(), session_id="B")
    assert q.accept_next_session("r1") == "A"
    assert q.accept_next_session("r2") == "B"
    assert q.accept_next_session("r3") is None  # both held
    (first,) = q.receive(1, session_id="A")
    q.abandon(first)
    (again,) = q.receive(1, session_id="A")
    assert again.body == b"a0"
    q.complete(again)
    bodies = []
    while batch := q.receive(1, session_id="A"):
        bodies.append(batch[0].body)
        q.complete(batch[0])
    assert bodies == [b"a1", b"a2"]
    q.release_session("A")
    assert not q.session_has_messages("A") and q.session_has_messages("B")


def test_a_session_not_held_cannot_be_read() -> None:
    q, _ = queue(requires_session=True)
    q.send(b"a", session_id="A")
    with pytest.raises(MessageLockLostError):
        q.receive(1, session_id="A")

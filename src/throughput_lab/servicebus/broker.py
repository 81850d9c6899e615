"""An emulated Service Bus queue, in process: the entity's rules, not the service.

No Service Bus emulator installs from PyPI or npm (Microsoft's runs as a container image),
so the lab keeps the entity here, with exactly the semantics the trigger depends on
(Learn, "Message transfers, locks, and settlement", "Service Bus dead-letter queues",
"Message sessions", "Message sequencing and timestamps"):

- **Sequence numbers**: each message gets the next one, in the order it was accepted.
- **Peek-lock**: a received message is locked for the entity's ``LockDuration`` (default
  1 minute, at most 5) and no other receiver gets it meanwhile; its ``DeliveryCount``
  goes up by one on every delivery (the first delivery reads 1).
- **Settlement**: complete removes it; abandon releases the lock at once, and so does the
  lock expiring; settling with an expired lock fails (``MessageLockLost``).
- **Dead-lettering**: a message whose delivery count has reached ``MaxDeliveryCount``
  (default 10) when its lock is released goes to the dead-letter queue with reason
  ``MaxDeliveryCountExceeded``, instead of back to the queue.
- **Sessions** (an entity created with ``RequiresSession``): every message needs a session
  id; a receiver accepts one session at a time and holds its lock, no other receiver
  gets that session's messages, and within a session messages come in sequence order
  (an abandoned one comes back first).

What it leaves out: the network (no latency, no prefetch effect), scheduled messages,
time to live, duplicate detection, topics' filters. Time comes from ``now`` (seconds), so
tests can move it on without waiting.
"""

from __future__ import annotations

import datetime
import itertools
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

DEFAULT_LOCK_DURATION_S = 60.0  # Learn, queue properties: LockDuration PT1M
MAX_LOCK_DURATION_S = 300.0  # at most 5 minutes
DEFAULT_MAX_DELIVERY_COUNT = 10  # Learn, dead-letter queues: MaxDeliveryCount 10
MAX_DELIVERY_COUNT_EXCEEDED = "MaxDeliveryCountExceeded"


class MessageLockLostError(RuntimeError):
    """Settling a message whose lock expired or was released (ServiceBusFailureReason)."""


class SessionRequiredError(ValueError):
    """A session-enabled entity refuses a message without a session id, and vice versa."""


@dataclass
class BrokeredMessage:
    """One message on the entity, with what the broker knows of it."""

    message_id: str
    body: bytes
    sequence_number: int
    enqueued_at: float  # ``now()`` when accepted
    enqueued_time: datetime.datetime
    session_id: str | None = None
    delivery_count: int = 0
    lock_token: str = ""
    locked_until: float = 0.0
    dead_letter_reason: str | None = None
    dead_letter_error_description: str | None = None
    application_properties: dict[str, str] = field(default_factory=dict)


class ServiceBusQueue:
    """One queue entity with its dead-letter queue. Thread-safe."""

    def __init__(
        self,
        name: str,
        *,
        requires_session: bool = False,
        lock_duration_s: float = DEFAULT_LOCK_DURATION_S,
        max_delivery_count: int = DEFAULT_MAX_DELIVERY_COUNT,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < lock_duration_s <= MAX_LOCK_DURATION_S:
            raise ValueError(
                f"LockDuration must be over 0 and at most 5 minutes, got {lock_duration_s}"
            )
        if max_delivery_count < 1:
            raise ValueError(f"MaxDeliveryCount must be >= 1, got {max_delivery_count}")
        self.name = name
        self.requires_session = requires_session
        self.lock_duration_s = lock_duration_s
        self.max_delivery_count = max_delivery_count
        self.now = now
        self.dead_letters: list[BrokeredMessage] = []
        self.completed = 0
        self._available: list[BrokeredMessage] = []  # in sequence order
        self._locked: dict[str, BrokeredMessage] = {}  # lock token -> message
        self._session_owner: dict[str, str] = {}  # session id -> receiver holding it
        self._sequence = itertools.count(1)
        self._lock = threading.Lock()

    # -- sending -----------------------------------------------------------------------

    def send(
        self,
        body: bytes,
        *,
        session_id: str | None = None,
        message_id: str | None = None,
        application_properties: dict[str, str] | None = None,
    ) -> BrokeredMessage:
        if self.requires_session and not session_id:
            raise SessionRequiredError(
                f"queue {self.name!r} requires sessions: a message needs a session id"
            )
        if not self.requires_session and session_id:
            raise SessionRequiredError(f"queue {self.name!r} is not session-enabled")
        with self._lock:
            message = BrokeredMessage(
                message_id=message_id or uuid.uuid4().hex,
                body=body,
                sequence_number=next(self._sequence),
                enqueued_at=self.now(),
                enqueued_time=datetime.datetime.now(datetime.UTC),
                session_id=session_id,
                application_properties=dict(application_properties or {}),
            )
            self._available.append(message)
            return message

    # -- receiving (peek-lock) ---------------------------------------------------------

    def receive(
        self, max_messages: int = 1, *, session_id: str | None = None
    ) -> list[BrokeredMessage]:
        """Lock and return up to ``max_messages`` available messages (of one session, for a
        session receiver that holds it)."""
        with self._lock:
            self._expire_locks()
            if self.requires_session:
                if session_id is None:
                    raise SessionRequiredError("a session-enabled queue is read by session")
                if session_id not in self._session_owner:
                    raise MessageLockLostError(f"session {session_id!r} is not held")
            taken: list[BrokeredMessage] = []
            for message in list(self._available):
                if len(taken) == max_messages:
                    break
                if session_id is not None and message.session_id != session_id:
                    continue
                self._available.remove(message)
                message.delivery_count += 1
                message.lock_token = uuid.uuid4().hex
                message.locked_until = self.now() + self.lock_duration_s
                self._locked[message.lock_token] = message
                taken.append(message)
            return taken

    def accept_next_session(self, receiver: str) -> str | None:
        """Lock the first session with a message available that no one holds, or None."""
        with self._lock:
            self._expire_locks()
            for message in self._available:
                sid = message.session_id
                if sid is not None and sid not in self._session_owner:
                    self._session_owner[sid] = receiver
                    return sid
            return None

    def release_session(self, session_id: str) -> None:
        with self._lock:
            self._session_owner.pop(session_id, None)

    def session_has_messages(self, session_id: str) -> bool:
        """Available or locked messages of this session (a locked one may come back)."""
        with self._lock:
            self._expire_locks()
            return any(
                m.session_id == session_id for m in [*self._available, *self._locked.values()]
            )

    # -- settling ----------------------------------------------------------------------

    def complete(self, message: BrokeredMessage) -> None:
        with self._lock:
            self._take_lock(message)
            self.completed += 1

    def abandon(self, message: BrokeredMessage) -> None:
        """Release the lock now: back to the queue, or dead-lettered at MaxDeliveryCount."""
        with self._lock:
            self._take_lock(message)
            self._release(message)

    def dead_letter(self, message: BrokeredMessage, reason: str, description: str = "") -> None:
        with self._lock:
            self._take_lock(message)
            self._to_dead_letter(message, reason, description)

    # -- counts ------------------------------------------------------------------------

    @property
    def active_count(self) -> int:
        """Messages not yet completed or dead-lettered (available or locked)."""
        with self._lock:
            return len(self._available) + len(self._locked)

    # -- rules -------------------------------------------------------------------------

    def _take_lock(self, message: BrokeredMessage) -> None:
        self._expire_locks()
        if self._locked.pop(message.lock_token, None) is None:
            raise MessageLockLostError(
                f"message {message.message_id}: its lock expired or was released"
            )

    def _expire_locks(self) -> None:
        now = self.now()
        for token, message in list(self._locked.items()):
            if message.locked_until <= now:
                del self._locked[token]
                self._release(message)

    def _release(self, message: BrokeredMessage) -> None:
        message.lock_token, message.locked_until = "", 0.0
        if message.delivery_count >= self.max_delivery_count:
            self._to_dead_letter(
                message,
                MAX_DELIVERY_COUNT_EXCEEDED,
                f"Message could not be consumed after {self.max_delivery_count} delivery attempts.",
            )
            return
        # Back in sequence order: within a session it is delivered next again.
        index = next(
            (
                i
                for i, m in enumerate(self._available)
                if m.sequence_number > message.sequence_number
            ),
            len(self._available),
        )
        self._available.insert(index, message)

    def _to_dead_letter(self, message: BrokeredMessage, reason: str, description: str) -> None:
        message.dead_letter_reason = reason
        message.dead_letter_error_description = description
        self.dead_letters.append(message)

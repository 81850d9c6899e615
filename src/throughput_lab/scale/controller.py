"""The scale controller's rules, in one place: the simulation and the live scale-out both
decide with these, and notebooks 08 and 12 describe them. Each rule names its source;
what the platform does not document is a stated, adjustable assumption (``ScaleRules``).

Documented:

- HTTP on Flex Consumption: instances = requests in flight / per-instance concurrency,
  the per-instance concurrency defaulting to 1 for Python apps (Learn, "Concurrency in
  Azure Functions", HTTP trigger concurrency: 4 / 16 / 32 by instance size, "In Python
  apps, all instance sizes use an HTTP trigger concurrency level of one by default").
- ``maximumInstanceCount`` bounds the on-demand instances of a function group (default
  100, 1 to 1000); always-ready instances run on top of them (Learn, Flex Consumption
  plan; Event-driven scaling, Flex Consumption: "The maximum instance count applies to
  on-demand instances").
- Queues, target-based scaling: desired = ceil(queue length / target executions per
  instance). Learn's table names batchSize as the target; the extension's code divides by
  batchSize + newBatchThreshold (azure-sdk-for-net, Storage.Common's
  ``src/Shared/Queues/QueueTargetScaler.cs``, ``GetScaleResultInternal``; its tests in
  ``QueueTargetScalerTests.cs``: 160 messages at 8 + 8 give 10 instances). The code
  wins. Target-based scaling adds at most four instances per decision (Learn,
  "Target-based scaling": it "allows for scale up of four instances at a time").
- Decision interval: "For HTTP triggers, new instances are allocated, at most, once per
  second. For non-HTTP triggers ... at most, once every 30 seconds" (Learn, Event-driven
  scaling, the Consumption plan's "New instance rate"; Flex's own rate, its "scale
  curve", is not published).

Assumed (the platform does not say; each is a field of ``ScaleRules``):

- HTTP adds as many instances per decision as it needs (``max_added``: None).
- Scale-in: an instance is removed only once no decision in the last ``scale_in_after_s``
  wanted it; it drains first (no new requests; it stops once it has answered its own).
- The front end holds a request that finds no free slot until one frees, and rejects it
  (as a 429) after ``queue_timeout_s``.
- A new instance serves after ``startup_s``: the platform's allocation (``allocation_s``)
  plus the host starting its workers and importing the app, which the live run measures.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

# Learn, Concurrency in Azure Functions: the HTTP per-instance concurrency a Python app gets.
PYTHON_HTTP_CONCURRENCY = 1
# Learn, Flex Consumption plan: maximumInstanceCount's default and its range.
DEFAULT_MAX_INSTANCES, LOWEST_MAX_INSTANCES, HIGHEST_MAX_INSTANCES = 100, 1, 1000
# Learn, Event-driven scaling ("New instance rate"): the decision interval by trigger kind.
HTTP_DECISION_S, QUEUE_DECISION_S = 1.0, 30.0
# Learn, Target-based scaling: "scale up of four instances at a time".
TARGET_BASED_MAX_ADDED = 4
# Assumptions, adjustable (see the module's docstring).
ALLOCATION_S = 1.0  # the platform finding and assigning an instance
SCALE_IN_AFTER_S = 60.0
QUEUE_TIMEOUT_S = 30.0
NEVER_S = 1e9  # a queue's messages wait (their time to live is days)


def http_desired(in_flight: int, per_instance_concurrency: int) -> int:
    """Instances HTTP on Flex Consumption asks for: requests in flight / per-instance
    concurrency, rounded up."""
    if per_instance_concurrency < 1:
        raise ValueError(f"per-instance concurrency must be >= 1, got {per_instance_concurrency}")
    return math.ceil(max(0, in_flight) / per_instance_concurrency)


def queue_desired(queue_length: int, batch_size: int, new_batch_threshold: int) -> int:
    """Instances target-based scaling asks for a Storage queue: ceil(length / (batchSize +
    newBatchThreshold)), as the extension's ``QueueTargetScaler`` computes it."""
    per_instance = batch_size + new_batch_threshold
    if per_instance < 1:
        raise ValueError(f"batchSize + newBatchThreshold must be >= 1, got {per_instance}")
    return math.ceil(max(0, queue_length) / per_instance)


@dataclass
class ScaleRules:
    """One function group's scale settings: the platform's and the stated assumptions.

    ``max_instances`` 0 means no on-demand instances (a fixed pool of always-ready ones,
    as the queueing-theory checks use); the platform's lowest is 1.
    """

    per_instance_concurrency: int = PYTHON_HTTP_CONCURRENCY
    max_instances: int = DEFAULT_MAX_INSTANCES
    always_ready: int = 0
    decision_s: float = HTTP_DECISION_S
    max_added: int | None = None  # None: as many as desired (HTTP); 4 for target-based
    startup_s: float = ALLOCATION_S
    scale_in_after_s: float = SCALE_IN_AFTER_S
    queue_timeout_s: float = QUEUE_TIMEOUT_S
    trigger: str = "http"  # "queue": desired from the queue's length as the extension reads it
    # A queue's listener on each instance (``queue.listener``): it fetches batch_size
    # messages, then waits until those in progress fall to per_instance_concurrency -
    # batch_size (newBatchThreshold); an empty poll backs off up to max_polling_s.
    batch_size: int = 0
    max_polling_s: float = 60.0

    def __post_init__(self) -> None:
        if self.trigger not in ("http", "queue"):
            raise ValueError(f"trigger must be http or queue, got {self.trigger!r}")
        if self.per_instance_concurrency < 1:
            raise ValueError(
                f"per-instance concurrency must be >= 1, got {self.per_instance_concurrency}"
            )
        if not 0 <= self.max_instances <= HIGHEST_MAX_INSTANCES:
            raise ValueError(
                f"maximum instances must be {LOWEST_MAX_INSTANCES}-{HIGHEST_MAX_INSTANCES}, "
                f"got {self.max_instances}"
            )
        if self.always_ready < 0:
            raise ValueError(f"always-ready instances must be >= 0, got {self.always_ready}")
        if self.always_ready + self.max_instances < 1:
            raise ValueError("no instance could ever run: give always-ready or max instances")
        if self.max_added is not None and self.max_added < 1:
            raise ValueError(f"instances added per decision must be >= 1, got {self.max_added}")
        if self.trigger == "queue" and not 1 <= self.batch_size <= self.per_instance_concurrency:
            raise ValueError(
                f"a queue's batch size must be 1-{self.per_instance_concurrency}, "
                f"got {self.batch_size}"
            )
        for name in (
            "decision_s",
            "startup_s",
            "scale_in_after_s",
            "queue_timeout_s",
            "max_polling_s",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0) or (name == "decision_s" and value == 0):
                raise ValueError(f"{name} must be a number >= 0 (decision_s > 0), got {value}")

    @classmethod
    def for_queue(
        cls, batch_size: int = 16, new_batch_threshold: int = 8, **overrides: object
    ) -> ScaleRules:
        """Target-based scaling of a Storage queue trigger: each instance's listener runs
        up to batchSize + newBatchThreshold messages, a decision every 30 s adds at most 4,
        and messages wait in the queue (no front end rejects them)."""
        settings: dict[str, object] = {
            "trigger": "queue",
            "batch_size": batch_size,
            "per_instance_concurrency": batch_size + new_batch_threshold,
            "decision_s": QUEUE_DECISION_S,
            "max_added": TARGET_BASED_MAX_ADDED,
            "queue_timeout_s": NEVER_S,
        }
        settings.update(overrides)
        return cls(**settings)  # type: ignore[arg-type]

    @property
    def most_instances(self) -> int:
        return self.always_ready + self.max_instances


@dataclass
class Controller:
    """Decides the instance count at each decision from the desired count.

    ``decide(now, current, desired)`` returns the new count: at least the always-ready
    instances, at most always-ready + maximum, at most ``max_added`` more than now, and
    lower only when no decision in the last ``scale_in_after_s`` wanted more.
    """

    rules: ScaleRules
    _wanted: deque[tuple[float, int]] = field(default_factory=deque)

    def decide(self, now: float, current: int, desired: int) -> int:
        rules = self.rules
        wanted = min(max(desired, rules.always_ready), rules.most_instances)
        self._wanted.append((now, wanted))
        while self._wanted and self._wanted[0][0] < now - rules.scale_in_after_s:
            self._wanted.popleft()
        if wanted > current:
            step = wanted - current
            if rules.max_added is not None:
                step = min(step, rules.max_added)
            return current + step
        # Scale in only to the most any decision in the window wanted.
        return max(wanted, min(current, max(w for _, w in self._wanted)))

"""``bench --function NAME --messages N`` for a function a broker triggers: which lab drains it.

The CLI asks the app which trigger ``NAME`` has (indexed here, as the worker indexes it)
and sends it to its own lab: a storage queue to ``QueueLab`` (Azurite), Service Bus to
``ServiceBusLab`` and Event Hubs to ``EventHubLab`` (both brokers in process). A flag
that belongs to another trigger is refused with one line, not ignored.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .app_loader import AppLoadError, load_app

STORAGE_QUEUE, SERVICE_BUS, EVENT_HUBS = "queueTrigger", "serviceBusTrigger", "eventHubTrigger"
# The flags only one trigger takes: (flag, argparse dest, its trigger).
OWN_FLAGS = (
    ("--batch-size", "batch_size", STORAGE_QUEUE),
    ("--new-batch-threshold", "new_batch_threshold", STORAGE_QUEUE),
    ("--max-concurrent-calls", "max_concurrent_calls", SERVICE_BUS),
    ("--max-concurrent-sessions", "max_concurrent_sessions", SERVICE_BUS),
    ("--max-message-batch-size", "max_message_batch_size", SERVICE_BUS),
    ("--sessions", "sessions", SERVICE_BUS),
    ("--hot-session-share", "hot_session_share", SERVICE_BUS),
    ("--session-idle-timeout", "session_idle_timeout", SERVICE_BUS),
    ("--partitions", "partitions", EVENT_HUBS),
    ("--max-event-batch-size", "max_event_batch_size", EVENT_HUBS),
)
NAMES = {STORAGE_QUEUE: "storage queue", SERVICE_BUS: "Service Bus", EVENT_HUBS: "Event Hubs"}


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a share from 0 to 1, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a share from 0 to 1, got {text!r}")
    return value


def add_broker_options(bench: argparse.ArgumentParser) -> None:
    """The Service Bus and Event Hubs knobs of ``bench --messages``."""
    bench.add_argument(
        "--max-concurrent-calls", type=int, help="Service Bus maxConcurrentCalls (16 x cores)"
    )
    bench.add_argument(
        "--max-concurrent-sessions", type=int, help="Service Bus maxConcurrentSessions (8)"
    )
    bench.add_argument(
        "--max-message-batch-size",
        type=int,
        help="Service Bus batch functions: maxMessageBatchSize (1000)",
    )
    bench.add_argument(
        "--sessions", type=int, help="session-enabled Service Bus: sessions to spread over (4)"
    )
    bench.add_argument(
        "--hot-session-share",
        type=_share,
        help="of the messages, the share sent to one session first (0-1, default 0)",
    )
    bench.add_argument(
        "--session-idle-timeout",
        type=float,
        help="Service Bus sessionIdleTimeout in seconds (host.json, else 60)",
    )
    bench.add_argument("--partitions", type=int, help="Event Hubs: the event hub's partitions (4)")
    bench.add_argument(
        "--max-event-batch-size", type=int, help="Event Hubs maxEventBatchSize (host.json, 100)"
    )


def trigger_of(app: Path, function: str) -> str:
    """``function``'s trigger type, if a broker's listener runs it; else one line why not."""
    functions = load_app(app)
    info = functions.get(function)
    if info is None:
        known = ", ".join(sorted(functions)) or "none"
        raise AppLoadError(f"unknown function {function!r}; this app has: {known}")
    kind = next((k for k in NAMES if k.lower() == info.trigger_type.lower()), None)
    if kind is None:
        brokered = sorted(
            n for n, f in functions.items() if f.trigger_type.lower() in {k.lower() for k in NAMES}
        )
        raise AppLoadError(
            f"function {function!r} is not queue-triggered, nor Service Bus or Event Hubs "
            f"({info.trigger_type}); --messages runs those: {', '.join(brokered) or 'none here'}"
        )
    return kind


def check_flags(args: argparse.Namespace, kind: str) -> None:
    """Refuse a flag that belongs to another trigger (one line)."""
    for flag, dest, owner in OWN_FLAGS:
        if getattr(args, dest, None) is not None and owner != kind:
            raise AppLoadError(
                f"{flag} is for {NAMES[owner]} triggers; {args.function!r} is {NAMES[kind]}"
            )


def bench_broker(args: argparse.Namespace, processes: int, app: Path, kind: str) -> Any:
    """One drain of a Service Bus or Event Hubs function in a fresh lab; its result."""
    from .eventhubs.lab import DEFAULT_PARTITIONS, EventHubLab
    from .servicebus.lab import ServiceBusLab

    common = {"upstream_delay_ms": args.upstream_delay_ms, "timeout_s": args.timeout}
    if kind == SERVICE_BUS:
        with ServiceBusLab(app, **common) as lab:
            return lab.drain(
                args.function,
                args.messages,
                processes=processes,
                threads=args.threads,
                max_concurrent_calls=args.max_concurrent_calls,
                max_concurrent_sessions=args.max_concurrent_sessions,
                max_message_batch_size=args.max_message_batch_size,
                sessions=args.sessions,
                hot_share=args.hot_session_share or 0.0,
                session_idle_timeout_s=args.session_idle_timeout,
                bad_messages=args.bad_messages,
            )
    with EventHubLab(app, **common) as lab:
        return lab.drain(
            args.function,
            args.messages,
            processes=processes,
            threads=args.threads,
            partitions=DEFAULT_PARTITIONS if args.partitions is None else args.partitions,
            max_event_batch_size=args.max_event_batch_size,
            bad_events=args.bad_messages,
        )


def drained_hint(trigger_type: str, function: str) -> str | None:
    """What to run instead, for a function a broker triggers (serve and tune say it)."""
    if trigger_type.lower() not in {k.lower() for k in NAMES}:
        return None
    return f"not served over HTTP: bench --function {function} --messages N drains it"


def refuse_for_tune(app: Path, function: str) -> None:
    """``tune`` tries HTTP settings under a closed loop of requests: a broker's function has
    no requests; say which command measures it."""
    info = load_app(app).get(function)
    if info is None or info.is_http:
        return
    hint = drained_hint(info.trigger_type, function)
    raise AppLoadError(
        f"tune measures HTTP functions; {function!r} is {info.trigger_type}-triggered"
        + (f" ({hint}, with --threads and --processes to compare)" if hint else "")
    )

"""The host-worker channel: every message one typed kind, each kind handled by one handler.

Microsoft's worker routes each gRPC message kind to one handler; here the kinds are small
frozen dataclasses, pickled over a ``multiprocessing.connection`` channel whose two ends
have proved the shared key to each other (HMAC challenge both ways) before anything is
unpickled.

host -> worker: ``Invoke`` | ``StatsRequest`` | ``Stop``
worker -> host: ``Hello`` (first, on the start-up listener) | ``Ready`` | ``LoadError``
                | ``Result`` | ``WorkerStats``
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .invocation import HttpResponseFields, InvocationRecord

# -- host -> worker --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Invoke:
    """Run one invocation. ``request`` is a trigger's plain fields (``HttpRequestFields``,
    ``QueueMessageFields``): azure.functions objects do not pickle, so the worker builds
    them, which is also where the real worker decodes its input."""

    record: InvocationRecord
    request: Any


@dataclass(frozen=True, slots=True)
class StatsRequest:
    """Report ``WorkerStats`` now (and restart the loop-lag and executor peaks)."""


@dataclass(frozen=True, slots=True)
class Stop:
    """Finish: cancel what is in flight and leave."""


# -- worker -> host --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    """The first message on a new connection: which process the host is talking to."""

    pid: int


@dataclass(frozen=True, slots=True)
class Ready:
    """The app is indexed: the worker's pool size and its functions, as it sees them."""

    pid: int
    threads: int
    functions: tuple[Mapping[str, Any], ...]
    python: str
    event_loop: str
    http_uri: str = ""  # the worker's web server for HTTP streaming (http_streaming), if any
    app_load_s: float = 0.0  # importing and indexing the app: its share of a cold start


@dataclass(frozen=True, slots=True)
class LoadError:
    """The app could not be indexed; ``text`` says why, for a learner."""

    text: str


@dataclass(frozen=True, slots=True)
class Result:
    record: InvocationRecord
    response: HttpResponseFields


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """One worker process, as it reports itself. Lag and executor peak are since the last
    report; CPU seconds are since the process started."""

    pid: int = 0
    worker: int = -1  # the host's index for it, filled in by the host
    max_loop_lag_ms: float = 0.0
    executor_peak: int = 0  # most default-executor threads busy at once
    loop_cpu_s: float = 0.0  # CPU of the event loop's own thread
    cpu_s: float = 0.0  # CPU of the whole process
    rss_bytes: int = 0
    peak_rss_bytes: int = 0
    threads: int = 0  # threads alive in the process
    # Times the OS took the CPU from it while it could still run (Linux; 0 where unknown).
    involuntary_switches: int = 0
    python: str = ""
    event_loop: str = ""


# -- dispatch --------------------------------------------------------------------------


def dispatcher(handlers: Mapping[type, Callable[[Any], None]]) -> Callable[[object], None]:
    """One handler per message kind; a kind nobody handles is a bug on the other side."""

    def dispatch(message: object) -> None:
        handler = handlers.get(type(message))
        if handler is None:
            raise TypeError(f"no handler for {type(message).__name__} on this end of the channel")
        handler(message)

    return dispatch

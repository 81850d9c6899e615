"""An invocation crossing the host-worker boundary: plain fields out, plain fields back.

``azure.functions.HttpRequest`` cannot be pickled, so the host sends plain fields and the
worker builds the request object, which is also where the real worker decodes it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlencode

import azure.functions as func
from azure.functions.http import HttpResponseConverter

# One clock for host and workers: CLOCK_MONOTONIC (Linux), mach time (macOS) and QPC
# (Windows) are system-wide, so timestamps from different processes compare.
clock = time.monotonic


@dataclass
class HttpRequestFields:
    """What the host sends to a worker for an HTTP-triggered invocation."""

    method: str = "GET"
    route: str = ""
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    route_params: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    url: str = ""  # the full URL the host received, as the host passes it (scheme://host/path?q)

    def to_request(self) -> func.HttpRequest:
        query = f"?{urlencode(self.params)}" if self.params else ""
        return func.HttpRequest(
            method=self.method,
            url=self.url or f"http://127.0.0.1/api/{self.route}{query}",
            headers=self.headers,
            params=self.params,
            route_params=self.route_params,
            body=self.body,
        )


@dataclass
class HttpResponseFields:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    cookies: list[str] = field(default_factory=list)  # one Set-Cookie header value each

    @classmethod
    def from_return(cls, value: Any) -> HttpResponseFields:
        """Encode a function's return value as the worker does for an HTTP output.

        Only ``HttpResponse`` and ``str`` can be encoded; anything else (``None``, ``bytes``)
        fails the invocation, and the host answers 500.
        """
        if isinstance(value, func.HttpResponse):
            # azure.functions' own encoder: it sets content-type the way the worker sends it,
            # and moves every Set-Cookie header into ``cookies``, which the host writes back.
            datum = HttpResponseConverter.encode(value, expected_type=None)
            cookies = [
                morsel.OutputString()
                for cookie in (datum.value.get("cookies") or [])
                for morsel in cookie.values()
            ]
            return cls(value.status_code, value.get_body(), dict(value.headers), cookies)
        if isinstance(value, str):
            return cls(200, value.encode(), {"content-type": "text/plain; charset=utf-8"})
        raise TypeError(
            f"an HTTP function must return func.HttpResponse or str, not {type(value).__name__}"
        )


@dataclass
class InvocationRecord:
    """One invocation, timed. Times are ``clock()`` seconds, comparable across processes."""

    invocation_id: int
    function: str
    worker: int = -1  # index of the worker process, -1 for a URL target
    pid: int = 0
    thread: str = ""
    dispatched: float = 0.0  # host sent it
    submitted: float = 0.0  # the worker handed it to the pool (``def``) or the loop
    started: float = 0.0  # user code began (for ``def``: a pool thread picked it up)
    ended: float = 0.0  # user code returned or raised
    completed: float = 0.0  # host received the response (a streamed one: its last byte)
    first_byte: float = 0.0  # a streamed response: its first body byte reached the host
    cpu_ms: float = 0.0  # CPU time of the user code (its thread, its coroutine's steps)
    longest_step_ms: float = 0.0  # ``async def``: longest stretch it held the event loop
    loop_ms: float = 0.0  # ``async def``: all the time it held the event loop
    executor_ms: float = 0.0  # thread time in asyncio's default executor (run_in_executor)
    status: int = 0
    error: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)  # output bindings' values, by name
    # Blob output bindings' bytes, by argument: the host writes them after the invocation.
    output_data: dict[str, bytes] = field(default_factory=dict)
    logs: list[str] = field(default_factory=list)  # the function's logging, when captured
    traceback: str = ""  # a failed invocation's traceback, from the function's own frames

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 400 and not self.error

    @property
    def latency_ms(self) -> float:
        return (self.completed - self.dispatched) * 1e3

    @property
    def queue_ms(self) -> float:
        return max(0.0, self.started - self.dispatched) * 1e3 if self.started else 0.0

    @property
    def wait_ms(self) -> float:
        """Waiting inside the worker for a pool thread (``def``) or the loop's turn."""
        return max(0.0, self.started - self.submitted) * 1e3 if self.submitted else 0.0

    @property
    def first_byte_ms(self) -> float:
        return (self.first_byte - self.dispatched) * 1e3 if self.first_byte else 0.0

    @property
    def run_ms(self) -> float:
        return (self.ended - self.started) * 1e3 if self.started else 0.0

    def as_row(self) -> dict[str, Any]:
        row = asdict(self)
        row.update(
            ok=self.ok,
            latency_ms=self.latency_ms,
            queue_ms=self.queue_ms,
            wait_ms=self.wait_ms,
            run_ms=self.run_ms,
            first_byte_ms=self.first_byte_ms,
        )
        return row

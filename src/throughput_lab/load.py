"""Closed-loop load: keep C invocations in flight until N are done (or time is up).

A closed loop is how a fixed number of users behaves: each sends its next request when
the last one is answered. By Little's law its throughput is C / latency, which is why
every measurement here has an ideal to be compared with.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

import aiohttp
from yarl import URL

from .host import Host, WorkerDiedError
from .http_streaming import client_session, forward
from .invocation import HttpRequestFields, InvocationRecord, clock

Send = Callable[[int], Awaitable[InvocationRecord]]


def host_sender(
    host: Host, function: str, request: HttpRequestFields, timeout_s: float | None = None
) -> Send:
    """Invocations of ``function`` through ``host``; a reply after ``timeout_s`` is an error."""

    async def send(index: int) -> InvocationRecord:
        dispatched = clock()
        try:
            future = host.invoke(function, request)
            record, _ = await asyncio.wait_for(asyncio.wrap_future(future), timeout_s)
            return record
        except (WorkerDiedError, asyncio.TimeoutError) as exc:
            why = str(exc) or f"no reply within {timeout_s:g} s"
            return InvocationRecord(
                index, function, dispatched=dispatched, completed=clock(), status=500, error=why
            )

    return send


class StreamingSender:
    """Invocations of an app that streams HTTP (``http_streaming``): the host sends the
    invocation, forwards the request to the chosen worker's web server, and reads the
    response as it comes: the record's ``first_byte`` and, at the last byte, ``completed``.
    Call ``aclose()`` when done (it closes the HTTP client, on the run's loop)."""

    def __init__(
        self, host: Host, function: str, request: HttpRequestFields, timeout_s: float | None
    ) -> None:
        self.host, self.function, self.request, self.timeout_s = host, function, request, timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self, index: int) -> InvocationRecord:
        if self._session is None:
            self._session = client_session()
        dispatched = clock()
        first: list[float] = []  # when the first body byte came, if it did
        try:
            return await asyncio.wait_for(self._stream(self._session, first), self.timeout_s)
        except (WorkerDiedError, asyncio.TimeoutError, aiohttp.ClientError) as exc:
            why = str(exc) or f"no reply within {self.timeout_s:g} s"
            if first and isinstance(exc, asyncio.TimeoutError):
                why = (
                    f"the streamed response had not ended after {self.timeout_s:g} s (its "
                    f"first byte came after {(first[0] - dispatched) * 1e3:.0f} ms): bench "
                    "times whole responses, and an endless stream never ends"
                )
            return InvocationRecord(
                index,
                self.function,
                dispatched=dispatched,
                completed=clock(),
                status=500,
                error=why,
            )

    async def _stream(self, session: aiohttp.ClientSession, first: list[float]) -> InvocationRecord:
        record = self.host.new_record(self.function)
        future = self.host.invoke(self.function, self.request, record)
        uri = self.host.http_uri(record.worker)
        status, _, body = await forward(session, uri, self.request, record.invocation_id)
        async for chunk in body:
            if chunk and not first:
                first.append(clock())
        last = clock()
        done, _ = await asyncio.wrap_future(future)
        done.first_byte, done.completed, done.status = (first or [0.0])[0], last, status
        if status >= 400 and not done.error:
            done.error = f"HTTP {status}"
        return done

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 10
KEY_HEADERS = ("x-functions-key", "authorization")


def url_sender(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    method: str = "GET",
    body: bytes = b"",
    name: str | None = None,
    redact: Callable[[str], str] = str,
) -> Send:
    """Send ``method`` to ``url`` over HTTP (GET by default), e.g. a deployed function app.

    Redirects are followed here, not by aiohttp: one to another origin (scheme, host, port)
    is refused when the request carries credentials (a function key header, or a key or
    password in the URL), so a key goes only to the origin it was given for. ``name`` is
    what records show for the URL; ``redact`` cleans error text of secrets.
    """
    start = URL(url)
    carries_key = (
        any(k.lower() in KEY_HEADERS for k in headers)
        or start.password is not None
        or "code" in start.query
    )

    async def send(index: int) -> InvocationRecord:
        record = InvocationRecord(index, name or url, dispatched=clock())
        target, verb, data = start, method, body or None
        try:
            for _ in range(MAX_REDIRECTS + 1):
                async with session.request(
                    verb, target, headers=headers, data=data, allow_redirects=False
                ) as response:
                    await response.read()
                    location = response.headers.get("Location")
                    if response.status in REDIRECTS and location:
                        target = response.url.join(URL(location))
                        if target.origin() != start.origin() and carries_key:
                            record.status = 599
                            record.error = (
                                f"redirected to another origin ({target.origin()}): not "
                                "followed, so the function key is not sent there"
                            )
                            break
                        if response.status == 303 or (response.status < 303 and verb == "POST"):
                            verb, data = "GET", None  # as browsers and aiohttp do
                        continue
                    record.status = response.status
                    if response.status >= 400:
                        record.error = f"HTTP {response.status} {response.reason}"
                    break
            else:
                record.status, record.error = 599, f"more than {MAX_REDIRECTS} redirects"
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            record.status, record.error = 599, redact(f"{type(exc).__name__}: {exc}")
        record.completed = clock()
        return record

    return send


async def closed_loop(
    send: Send,
    concurrency: int,
    requests: int | None = None,
    duration_s: float | None = None,
    on_record: Callable[[InvocationRecord], None] | None = None,
) -> tuple[list[InvocationRecord], float]:
    """Run the loop; returns the records and the elapsed seconds of the measured window."""
    if requests is None and duration_s is None:
        raise ValueError("give a number of requests or a duration")
    records: list[InvocationRecord] = []
    counter = itertools.count()
    started = clock()
    deadline = started + duration_s if duration_s is not None else None

    async def user() -> None:
        while True:
            index = next(counter)
            if requests is not None and index >= requests:
                return
            if deadline is not None and clock() >= deadline:
                return
            record = await send(index)
            records.append(record)
            if on_record is not None:
                on_record(record)

    users = max(1, concurrency if requests is None else min(concurrency, requests))
    await asyncio.gather(*(user() for _ in range(users)))
    return records, clock() - started

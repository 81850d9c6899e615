"""Measure a live HTTP endpoint, such as a deployed function app, with the same closed loop.

The function key comes from the environment variable ``FUNCTION_KEY`` (sent as
``x-functions-key``) and is never printed; a key in the URL (``?code=``, or a password
before the host) is masked wherever the URL is shown. A redirect to another origin is not
followed with a key (see ``load.url_sender``). Against an address that is not loopback the
load is bounded by default, and what will be sent is said before it is sent.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import statistics
import sys
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp

from .invocation import InvocationRecord
from .learner_errors import LearnerError
from .load import closed_loop, url_sender
from .metrics import Summary, ideal_throughput, summarize

REMOTE_MAX_REQUESTS = 200
REMOTE_MAX_DURATION_S = 60.0
KEY_VARIABLE = "FUNCTION_KEY"
KEY_PARAM = "code"  # the query parameter that carries a function key
MASK = "***"


class UnreachableError(LearnerError, RuntimeError):
    """The endpoint could not be reached at all."""


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def url_secrets(url: str) -> list[str]:
    """The secrets a URL carries: its password and its ``code`` values, and $FUNCTION_KEY."""
    parts = urlsplit(url)
    found = [parts.password or ""] + [v for k, v in parse_qsl(parts.query) if k == KEY_PARAM]
    found.append(os.environ.get(KEY_VARIABLE, ""))
    return sorted({s for s in found if s}, key=len, reverse=True)


def mask_url(url: str) -> str:
    """The URL fit to print: password and ``code`` values replaced by ***."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username or ''}:{MASK}@{netloc.rpartition('@')[2]}"
    query = parts.query
    if any(k == KEY_PARAM for k, _ in parse_qsl(query)):
        pairs = [(k, MASK if k == KEY_PARAM else v) for k, v in parse_qsl(query, True)]
        query = urlencode(pairs, safe="*")
    return redact(urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment)), url)


def redact(text: str, url: str) -> str:
    """``text`` with every secret of ``url`` (and $FUNCTION_KEY) replaced by ***."""
    for secret in url_secrets(url):
        text = text.replace(secret, MASK)
    return text


def check_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"--url must be an http:// or https:// address, got {mask_url(url)!r}")


async def bench_url(
    url: str,
    concurrency: int,
    requests: int | None,
    duration_s: float | None,
    on_record: Callable[[InvocationRecord], None] | None = None,
    timeout_s: float = 30.0,
    method: str = "GET",
    body: bytes = b"",
    request_headers: dict[str, str] | None = None,
) -> Summary:
    """Warm up and time three requests alone, then run the closed loop against ``url``."""
    if requests is not None:
        concurrency = min(concurrency, requests)  # no more in flight than there are
    headers = {"x-functions-key": os.environ[KEY_VARIABLE]} if os.environ.get(KEY_VARIABLE) else {}
    connector = aiohttp.TCPConnector(limit=concurrency)
    client_timeout = aiohttp.ClientTimeout(total=timeout_s)
    shown = mask_url(url)
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        send = url_sender(
            session,
            url,
            {**(request_headers or {}), **headers},
            method,
            body,
            name=shown,
            redact=lambda text: redact(text, url),
        )
        first = await send(-1)
        if first.status == 599:
            raise UnreachableError(f"cannot reach {shown}: {first.error}")
        alone = [await send(-2 - i) for i in range(3)]
        service_s = statistics.median(r.latency_ms for r in alone) / 1e3
        records, elapsed = await closed_loop(send, concurrency, requests, duration_s, on_record)
    return summarize(
        records,
        function=shown,
        processes=None,
        threads=None,
        concurrency=concurrency,
        elapsed_s=elapsed,
        startup_s=0.0,
        ideal=ideal_throughput(concurrency, service_s),
        service_s=service_s,
    )


def plan_remote_load(
    url: str, requests: int | None, duration_s: float | None, asked: bool
) -> tuple[int | None, float | None]:
    """Bound the load on a non-loopback address unless the user asked for more, and say so."""
    if not is_loopback(url) and not asked:
        requests = min(requests or REMOTE_MAX_REQUESTS, REMOTE_MAX_REQUESTS)
        duration_s = min(duration_s or REMOTE_MAX_DURATION_S, REMOTE_MAX_DURATION_S)
    what = f"{requests} requests" if requests is not None else "requests"
    limit = f" for at most {duration_s:g} s" if duration_s is not None else ""
    key = f", with the key from ${KEY_VARIABLE}" if os.environ.get(KEY_VARIABLE) else ""
    print(f"Sending {what}{limit} to {mask_url(url)}{key}.", file=sys.stderr)
    return requests, duration_s


def run_bench_url(
    url: str,
    concurrency: int,
    requests: int | None,
    duration_s: float | None,
    on_record: Callable[[InvocationRecord], None] | None = None,
    method: str = "GET",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> Summary:
    return asyncio.run(
        bench_url(
            url,
            concurrency,
            requests,
            duration_s,
            on_record,
            method=method,
            body=body,
            request_headers=headers,
        )
    )

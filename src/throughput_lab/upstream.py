"""The slow upstream service the I/O handlers call: an aiohttp server on 127.0.0.1.

It runs on its own thread with its own event loop, never on a notebook kernel's loop:
a handler that blocks (``requests.get`` inside ``async def``, run in process) would
otherwise wait for a server that cannot answer until the handler returns, a deadlock.
Its URL reaches the workers as the app setting ``UPSTREAM_URL``.
"""

from __future__ import annotations

import asyncio
import random
import threading
from dataclasses import dataclass

from aiohttp import web


@dataclass
class UpstreamStats:
    requests: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0


class Upstream:
    """GET ``/upstream`` answers after ``delay_ms`` (+- ``jitter_ms``, uniform)."""

    PATH = "/upstream"

    def __init__(self, delay_ms: float = 100.0, jitter_ms: float = 0.0) -> None:
        self.delay_ms = delay_ms
        self.jitter_ms = jitter_ms
        self.stats = UpstreamStats()
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("the upstream is not running; call start() first")
        return f"http://127.0.0.1:{self.port}{self.PATH}"

    def reset_stats(self) -> UpstreamStats:
        with self._lock:
            old, self.stats = self.stats, UpstreamStats(in_flight=self.stats.in_flight)
            self.stats.peak_in_flight = self.stats.in_flight
        return old

    async def _answer(self, request: web.Request) -> web.Response:
        with self._lock:
            self.stats.requests += 1
            self.stats.in_flight += 1
            self.stats.peak_in_flight = max(self.stats.peak_in_flight, self.stats.in_flight)
        try:
            jitter = random.uniform(-self.jitter_ms, self.jitter_ms) if self.jitter_ms else 0.0
            await asyncio.sleep(max(0.0, self.delay_ms + jitter) / 1e3)
            return web.Response(text="upstream ok")
        finally:
            with self._lock:
                self.stats.in_flight -= 1

    def start(self) -> Upstream:
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._open())
            except BaseException as exc:  # e.g. no loopback: report it to start()
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup() if self._runner else asyncio.sleep(0))
            loop.close()

        self._thread = threading.Thread(target=serve, name="upstream", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread = None
            raise failure[0]
        return self

    async def _open(self) -> None:
        app = web.Application()
        app.router.add_get(self.PATH, self._answer)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._thread = None
        self.port = 0

    def __enter__(self) -> Upstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

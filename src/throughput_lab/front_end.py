"""The host's HTTP front end during a bench run, so ``req.url`` points somewhere that answers.

The host passes each HTTP function the URL it received (``req.url``), and apps call their
own other functions with it (build the URL from ``req.url``, then ``requests.get``). Under
``serve`` that is serve's own address. Under bench and the notebooks, requests go straight
to the host object, so this starts the same front end as ``serve`` (``serve.build_app``:
the host's routes, on 127.0.0.1) on a free port for as long as the host is used, and the
lab writes that address into each request's URL. A function's call to itself then goes
through a real HTTP front end into the same workers, as it would under ``func start``.
"""

from __future__ import annotations

import asyncio
import io
import threading

from aiohttp import web

from .host import Host

START_TIMEOUT_S = 10.0


class _Discard(io.StringIO):
    """Serve's line per request, not wanted under bench."""

    def write(self, text: str) -> int:
        return len(text)


class FrontEnd:
    """``serve``'s HTTP front end for ``host`` on 127.0.0.1, on a thread of its own."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.base = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> FrontEnd:
        from .serve import build_app  # serve imports the host; import when first used

        ready = threading.Event()
        failed: list[BaseException] = []

        async def begin() -> None:
            self._runner = web.AppRunner(build_app(self.host, _Discard()), access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.base = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(begin())
            except BaseException as exc:
                failed.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup() if self._runner else asyncio.sleep(0))
            loop.close()

        self._thread = threading.Thread(target=run, name="front-end", daemon=True)
        self._thread.start()
        if not ready.wait(START_TIMEOUT_S) or failed:
            self.stop()
            raise RuntimeError(f"the HTTP front end did not start: {failed[0] if failed else ''}")
        return self

    def stop(self) -> None:
        """Stop listening and end the thread. Safe to call twice."""
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(START_TIMEOUT_S)
            self._thread = None

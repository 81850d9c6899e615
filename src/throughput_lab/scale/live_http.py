"""HTTP's part of the live scale-out: ``serve`` instances behind one router.

Each instance is ``serve`` (``served.start_serve``) on a port of its own. One HTTP router on
127.0.0.1 stands in for the platform's front end (``frontend.FrontEnd``: per-instance
concurrency, first come first served, rejects after a timeout) and forwards each request
to an instance; the controller reads the requests in flight there. An instance that dies
fails the requests it held: the router answers them 502 and counts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from pathlib import Path

import aiohttp
from aiohttp import web

from ..invocation import clock
from ..served import start_serve
from ..supervisor import SupervisedProcess, answers, free_port
from .controller import ScaleRules, http_desired
from .frontend import FrontEnd
from .live import LiveInstance, Tally, start_instance
from .traffic import Traffic

REQUEST_TIMEOUT_S = 60.0
STOP_GRACE_S = 1.0


class LiveHttp:
    """Requests to ``path`` of ``app``'s instances, through the router."""

    wait_idle_to_retire = True  # a retiring instance answers what it holds, then stops

    def __init__(
        self,
        app: Path,
        rules: ScaleRules,
        path: str,
        *,
        processes: int = 1,
        threads: int | None = None,
        upstream_delay_ms: float = 100.0,
    ) -> None:
        self.app, self.path = app, path
        self.processes, self.threads = processes, threads
        self.upstream_delay_ms = upstream_delay_ms
        self.front = FrontEnd(rules.per_instance_concurrency, rules.queue_timeout_s)
        self.tally = Tally()

    @property
    def busy_peak(self) -> int:
        return self.front.busy_peak

    # -- instances ---------------------------------------------------------------------

    def start(self, inst: LiveInstance, on_exit: Callable[[SupervisedProcess], None]) -> bool:
        inst.port = free_port()
        return start_instance(
            inst,
            lambda: start_serve(
                self.app, inst.port, self.processes, self.threads, self.upstream_delay_ms, on_exit
            ),
            lambda: answers(inst.port, 0.5),
        )

    def admit(self, inst: LiveInstance) -> None:
        self.front.add(inst)

    def drop(self, inst: LiveInstance) -> None:
        self.front.remove(inst)

    async def desired(self, rules: ScaleRules) -> int:
        return http_desired(self.front.in_flight, rules.per_instance_concurrency)

    def demand(self) -> tuple[int, int, float]:
        return self.front.in_flight, self.front.waiting, self.front.oldest_wait_s()

    # -- the router ----------------------------------------------------------------------

    async def open(self) -> str:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
            connector=aiohttp.TCPConnector(limit=0),
        )
        # Stopping waits at most STOP_GRACE_S for the router's requests still being answered.
        self._runner = web.AppRunner(
            web.Application(), access_log=None, handle_signals=False, shutdown_timeout=STOP_GRACE_S
        )
        self._runner.app.router.add_route("*", "/{tail:.*}", self._route)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}{self.path}"

    def closing(self) -> None:
        self.front.close()

    async def close(self) -> None:
        await self._session.close()
        await self._runner.cleanup()

    async def _route(self, request: web.Request) -> web.StreamResponse:
        inst = await self.front.acquire()
        if inst is None:
            self.tally.reject()
            return web.Response(status=429, text="no instance took it in time\n")
        try:
            async with self._session.request(
                request.method, inst.url + request.path_qs, data=await request.read()
            ) as answer:
                body = await answer.read()
                return web.Response(status=answer.status, body=body)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            self.tally.fail(f"instance {inst.index}: {type(exc).__name__}: {exc}")
            lost = isinstance(exc, (aiohttp.ClientConnectionError, OSError))
            if lost and not inst.gone:  # as a front end's health check would: no more to it
                self.front.remove(inst)
            return web.Response(status=502, text=f"instance {inst.index} failed: {exc}\n")
        finally:
            self.front.release(inst)

    def result_fields(self) -> dict[str, int]:
        return {}

    # -- the load ------------------------------------------------------------------------

    async def _send(self, client: aiohttp.ClientSession, url: str) -> None:
        began = clock()
        with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
            async with client.get(url) as answer:
                await answer.read()
                if answer.status < 400:
                    self.tally.completed(clock() - began)

    async def load(self, traffic: Traffic, where: str, seed: int) -> None:
        """Open-loop: each request sent at its arrival time, whatever the others do."""
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as client:
            began, sends = clock(), []
            for t in traffic.arrivals(random.Random(seed)):
                await asyncio.sleep(max(0.0, began + t - clock()))
                sends.append(asyncio.create_task(self._send(client, where)))
            await asyncio.gather(*sends)

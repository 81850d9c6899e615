"""Drain a container: put N blobs in it, let the blob trigger run them, time it.

``BlobLab`` owns what a blob-triggered app needs locally: Azurite's blob service, the slow
upstream, and the worker processes (a ``Host`` per setting). ``drain()`` uploads the blobs
first (not timed), then delivers them to the function the way its trigger's source does:

- ``source="EventGrid"`` (the only blob trigger Flex Consumption runs; the host refuses
  the other there, ``ScriptHost.ValidateFunction``): Event Grid posts a ``BlobCreated``
  event per new blob to the app. Azurite has no Event Grid, so the lab delivers those
  events itself, one per blob, in upload order: "BlobCreated events, delivered by the lab
  in place of Event Grid".
- ``source="LogsAndContainerScan"`` (the classic trigger, the default): the host polls the
  container, listing its blobs and keeping a receipt of each one it has run; the lab scans
  the same way until every blob has a receipt: "container scans (polling)".

Either way the host reads each blob (and any blob input binding, its path filled from the
trigger's ``{name}``), invokes the function with at most ``maxDegreeOfParallelism`` in
flight (host.json ``extensions.blobs``, default 8 x cores), and writes what the function
set on its blob output bindings. Retries and poison blobs are not emulated: a failed
invocation is counted as an error.
Sources: Learn "Azure Blob storage trigger for Azure Functions" (polling, Event Grid
source) and "Azure Blob storage bindings" (host.json ``maxDegreeOfParallelism``: "8 *
(the number of available cores)"); azure-functions-host ``ScriptHost.ValidateFunction``
("The Flex Consumption SKU only supports EventGrid as the source for BlobTrigger
functions").
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..app_loader import AppLoadError, FunctionInfo
from ..app_settings import available_cores
from ..azurite import Azurite
from ..invocation import InvocationRecord, clock
from ..metrics import Summary
from ..run import (
    RunHandle,
    code_stamp,
)
from ..trigger_lab import FunctionTrigger, TriggerLab
from .message import BlobFields, fill, path_values

EVENT_GRID, CONTAINER_SCAN = "EventGrid", "LogsAndContainerScan"
DELIVERY = {
    EVENT_GRID: "BlobCreated events, delivered by the lab in place of Event Grid",
    CONTAINER_SCAN: "container scans (polling), as the classic blob trigger",
}
SCAN_INTERVAL_S = 0.5  # between container scans while blobs are still without a receipt


def max_parallelism(app: Path) -> int:
    """host.json ``extensions.blobs.maxDegreeOfParallelism``, else 8 x available cores."""
    try:
        config = json.loads((app / "host.json").read_text(encoding="utf-8-sig"))
        value = config.get("extensions", {}).get("blobs", {}).get("maxDegreeOfParallelism")
    except (OSError, ValueError, AttributeError):
        value = None
    if value is not None and int(value) >= 1:
        return int(value)
    return max(1, int(8 * available_cores()))


def sample_image(width: int = 800, height: int = 600) -> bytes:
    """A PNG photo-sized test image (Pillow), the same bytes for every blob of a drain."""
    from PIL import Image

    image = Image.radial_gradient("L").resize((width, height)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def find_blob_function(functions: dict[str, dict[str, Any]], name: str) -> FunctionInfo:
    """The blob-triggered function called ``name``, or an error that lists them."""
    infos = {n: FunctionInfo.from_description(f) for n, f in functions.items()}
    triggered = {n: i for n, i in infos.items() if i.blob_path}
    if name not in triggered:
        known = ", ".join(sorted(triggered)) or "none"
        what = "is not blob-triggered" if name in infos else "is unknown"
        raise AppLoadError(f"function {name!r} {what}; this app's blob functions: {known}")
    info = triggered[name]
    if info.error or info.load_error or info.unsupported:
        raise AppLoadError(info.error or info.load_error or info.unsupported or "")
    return info


@dataclass
class BlobDrainResult:
    summary: Summary
    source: str
    container: str
    blobs: int
    written: int  # blobs the output bindings wrote
    scans: int = 0  # container scans (the classic trigger's polling)

    @property
    def delivery(self) -> str:
        return DELIVERY[self.source]

    def as_dict(self) -> dict[str, Any]:
        extra = {"source": self.source, "delivery": self.delivery, "blobs": self.blobs}
        return {**self.summary.as_dict(), **extra, "written": self.written, "scans": self.scans}

    def line(self) -> str:
        errors = self.summary.error_samples
        sampled = f"\nerrors: {' | '.join(errors)}" if errors else ""
        return (
            f"{self.summary.line()}\n{self.blobs} blobs in {self.container}/, by "
            f"{self.delivery}; {self.written} blobs written by output bindings{sampled}"
        )

    def __repr__(self) -> str:
        return self.line()


@dataclass
class BlobTrigger(FunctionTrigger["BlobLab"]):
    """A blob trigger's part of a measured run (``run.Trigger``)."""

    blobs: int
    parallelism: int
    image: bytes
    written: int = 0
    scans: int = 0
    bound_name: str = "maxDegreeOfParallelism"  # the bound it adds to the ideal, by name
    _service: Any = field(default=None, repr=False)

    @property
    def concurrency(self) -> int:
        return self.blobs

    @property
    def queue_batch(self) -> int:
        return self.parallelism

    @property
    def container(self) -> str:
        return (self.info.blob_path or "").split("/", 1)[0]

    @property
    def alone_key(self) -> Hashable:
        delay = float(self.lab.upstream.delay_ms)
        return (self.function, delay, len(self.image), code_stamp(self.lab.app))

    def service(self) -> Any:
        """The Storage client the host uses, made on the run's loop."""
        if self._service is None:
            from azure.storage.blob.aio import BlobServiceClient

            self._service = BlobServiceClient.from_connection_string(
                self.lab.storage.connection_string
            )
        return self._service

    def names(self) -> list[str]:
        return [f"image-{i:05d}.png" for i in range(self.blobs)]

    async def invoke(self, index: int) -> InvocationRecord:
        """Alone: the same image, not read from storage; outputs not written."""
        path = f"{self.container}/alone-{-index}.png"
        values = path_values(self.info.blob_path or "", path) or {}
        fields = BlobFields(path, self.image, inputs=await self.read_inputs(values))
        return await self.send(fields)

    async def before_window(self) -> None:
        container = self.service().get_container_client(self.container)
        with contextlib.suppress(Exception):  # an empty container for every drain
            await container.delete_container()
        await container.create_container()
        semaphore = asyncio.Semaphore(16)

        async def upload(name: str) -> None:
            async with semaphore:
                await container.upload_blob(name, self.image, overwrite=True)

        await asyncio.gather(*(upload(n) for n in self.names()))

    async def drive(
        self, record: Callable[[InvocationRecord], None]
    ) -> tuple[list[InvocationRecord], float]:
        began = clock()
        semaphore = asyncio.Semaphore(self.parallelism)
        records: list[InvocationRecord] = []

        async def run(name: str) -> None:
            async with semaphore:
                self.handle.check()
                done = await self.process(name)
            records.append(done)
            record(done)

        try:
            if self.info.blob_source == EVENT_GRID:
                await asyncio.gather(*(run(n) for n in self.names()))  # an event per blob
            else:
                await self.scan_until_done(run)
        finally:
            await self.service().close()
            self._service = None
        last = max((r.completed for r in records), default=began)
        return records, max(last - began, 1e-9)

    async def scan_until_done(self, run: Callable[[str], Any]) -> None:
        """Poll the container as the classic trigger does: each new blob once (a receipt)."""
        container = self.service().get_container_client(self.container)
        receipts: set[str] = set()
        tasks: list[asyncio.Task[None]] = []
        while len(receipts) < self.blobs:
            self.scans += 1
            async for blob in container.list_blobs():
                if blob.name not in receipts:
                    receipts.add(blob.name)
                    tasks.append(asyncio.ensure_future(run(blob.name)))
            if len(receipts) < self.blobs:
                await asyncio.sleep(SCAN_INTERVAL_S)
        await asyncio.gather(*tasks)

    async def process(self, name: str) -> InvocationRecord:
        """Read the blob and the input bindings, invoke, write the output bindings."""
        path = f"{self.container}/{name}"
        values = path_values(self.info.blob_path or "", path) or {}
        blob = self.service().get_blob_client(self.container, name)
        data = await (await blob.download_blob()).readall()
        fields = BlobFields(path, data, blob.url, await self.read_inputs(values))
        done = await self.send(fields)
        if done.ok:
            for argument, direction, pattern in self.info.blob_bindings:
                if direction == "out" and argument in done.output_data:
                    await self.write(fill(pattern, values), done.output_data[argument])
        return done

    async def read_inputs(self, values: dict[str, str]) -> dict[str, bytes]:
        inputs = {}
        for argument, direction, pattern in self.info.blob_bindings:
            if direction == "in":
                container, _, name = fill(pattern, values).partition("/")
                blob = self.service().get_blob_client(container, name)
                inputs[argument] = await (await blob.download_blob()).readall()
        return inputs

    async def write(self, path: str, data: bytes) -> None:
        container, _, name = path.partition("/")
        client = self.service().get_container_client(container)
        with contextlib.suppress(Exception):  # created by the first write
            await client.create_container()
        await client.upload_blob(name, data, overwrite=True)
        self.written += 1

    def other_cpu_s(self) -> float:
        return self.lab.storage.cpu_s()  # the emulator's CPU is the lab's too

    def explain(self, summary: Summary) -> str:
        return ""


class BlobLab(TriggerLab):
    """Azurite's blob service, the upstream and worker processes for blob-triggered functions."""

    def __init__(
        self,
        app: str | Path | None = None,
        *,
        upstream_delay_ms: float = 100.0,
        timeout_s: float | None = None,
    ) -> None:
        super().__init__(
            app,
            upstream_delay_ms=upstream_delay_ms,
            timeout_s=timeout_s,
            azurite=Azurite(service="blob"),
        )

    @property
    def storage(self) -> Azurite:
        assert self.azurite is not None
        return self.azurite

    def drain(
        self,
        function: str,
        blobs: int = 50,
        *,
        processes: int = 1,
        threads: int | None = None,
        image: bytes | None = None,
    ) -> BlobDrainResult:
        """Upload ``blobs`` images to the trigger's container and run them all."""
        if blobs < 1:
            raise ValueError(f"blobs must be >= 1, got {blobs}")
        self.prepare(None)
        self.start()
        host = self.host(processes, threads)
        info = find_blob_function(host.functions, function)
        handle = RunHandle(blobs)
        parallelism = max_parallelism(self.app)
        trigger = BlobTrigger(
            self, host, info, blobs, parallelism, image or sample_image(), handle=handle
        )
        return self.measure(
            host,
            trigger,
            handle,
            lambda measured: BlobDrainResult(
                measured.summary,
                info.blob_source or CONTAINER_SCAN,
                trigger.container,
                blobs,
                trigger.written,
                trigger.scans,
            ),
        )

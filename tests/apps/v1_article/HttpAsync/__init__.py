# The article's async example (python-scale-performance-reference.md): aiohttp awaited on
# the worker's event loop. Its URL placeholder is the app setting UPSTREAM_URL here.
import os

import aiohttp
import azure.functions as func


async def main(req: func.HttpRequest) -> func.HttpResponse:
    async with aiohttp.ClientSession() as client:  # noqa: SIM117 - as the article has it
        async with client.get(os.environ["UPSTREAM_URL"]) as response:
            return func.HttpResponse(await response.text())

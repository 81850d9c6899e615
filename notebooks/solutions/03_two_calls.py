import asyncio
import os

import aiohttp
import azure.functions as func


async def two_calls(req: func.HttpRequest) -> func.HttpResponse:
    url = os.environ["UPSTREAM_URL"]
    async with aiohttp.ClientSession() as session:

        async def get() -> int:
            async with session.get(url) as response:
                await response.read()
                return response.status

        first, second = await asyncio.gather(get(), get())
    return func.HttpResponse(f"upstream {first} and {second}")

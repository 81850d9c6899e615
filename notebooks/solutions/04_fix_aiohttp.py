import os

import aiohttp
import azure.functions as func


async def fix_aiohttp(req: func.HttpRequest) -> func.HttpResponse:
    # Awaiting gives the event loop back while the upstream answers. (A session shared by
    # every call is faster still: see notebook 03 and sample_functions/function_app.py.)
    url = os.environ["UPSTREAM_URL"]
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        await response.read()
        return func.HttpResponse(f"upstream {response.status}")

import asyncio
import functools
import os

import azure.functions as func
import requests


async def fix_executor(req: func.HttpRequest) -> func.HttpResponse:
    # requests.get still blocks, but a thread of the loop's default executor does the
    # blocking while the loop runs other invocations. That executor has min(32, cores + 4)
    # threads whatever PYTHON_THREADPOOL_THREAD_COUNT says (notebook 05).
    get = functools.partial(requests.get, os.environ["UPSTREAM_URL"], timeout=30)
    response = await asyncio.get_running_loop().run_in_executor(None, get)
    return func.HttpResponse(f"upstream {response.status_code}")

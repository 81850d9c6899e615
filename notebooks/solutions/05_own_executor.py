import asyncio
import functools
import json
import os
from concurrent.futures import ThreadPoolExecutor

import azure.functions as func
import requests


async def own_executor(req: func.HttpRequest) -> func.HttpResponse:
    # A pool of this invocation's own, one thread per call: every call waits at the same
    # time, whatever the size of asyncio's default executor (min(32, cpus + 4)) and whatever
    # PYTHON_THREADPOOL_THREAD_COUNT says.
    # Creating a few threads costs well under a millisecond each; for very many small calls,
    # a module-level pool sized to (calls x invocations in flight) avoids even that.
    calls = int(req.params.get("calls", "10"))
    get = functools.partial(requests.get, os.environ["UPSTREAM_URL"], timeout=30)
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(max_workers=calls, thread_name_prefix="own-executor")
    try:
        responses = await asyncio.gather(*(loop.run_in_executor(pool, get) for _ in range(calls)))
    finally:
        pool.shutdown(wait=False)  # every call has finished: nothing to wait for
    return func.HttpResponse(
        json.dumps([r.status_code for r in responses]), mimetype="application/json"
    )

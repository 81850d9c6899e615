import asyncio

import azure.functions as func


# An async def runs on the worker's event loop, not on the pool's one thread. While it
# awaits, the loop runs the other invocations, so all 8 waits overlap. time.sleep here
# would hold the loop instead: one at a time again.
async def hello(req: func.HttpRequest) -> func.HttpResponse:
    await asyncio.sleep(0.1)
    return func.HttpResponse("hello")

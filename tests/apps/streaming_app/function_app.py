"""HTTP streaming with the FastAPI extension, as Azure-Samples/azure-functions-python-stream."""

import asyncio

import azure.functions as func
from azurefunctions.extensions.http.fastapi import JSONResponse, Request, StreamingResponse

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
CHUNKS, PAUSE_S = 5, 0.05  # five chunks, 50 ms apart: the whole answer takes >= 200 ms


async def chunks(n: int):
    for i in range(n):
        yield f"chunk {i}\n".encode()
        await asyncio.sleep(PAUSE_S)


@app.route(route="stream", methods=[func.HttpMethod.GET])
async def stream(req: Request) -> StreamingResponse:
    return StreamingResponse(chunks(CHUNKS), media_type="text/plain")


@app.route(route="upload/{name}", methods=[func.HttpMethod.POST])
async def upload(req: Request) -> JSONResponse:
    size = 0
    async for part in req.stream():  # the request body, as it arrives
        size += len(part)
    return JSONResponse({"name": req.path_params["name"], "bytes": size})

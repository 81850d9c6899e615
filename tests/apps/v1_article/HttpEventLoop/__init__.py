# The article's "managing the event loop" example: ten requests.get calls wrapped in
# run_in_executor(None, ...), the loop's default executor.
import asyncio
import json
import logging
import os

import azure.functions as func
from requests import Response, get


async def invoke_get_request(eventloop: asyncio.AbstractEventLoop) -> Response:
    return await eventloop.run_in_executor(None, get, os.environ["UPSTREAM_URL"])


async def main(req: func.HttpRequest) -> func.HttpResponse:
    logging.info("Python HTTP trigger function processed a request.")
    eventloop = asyncio.get_event_loop()
    tasks = [asyncio.create_task(invoke_get_request(eventloop)) for _ in range(10)]
    done_tasks, _ = await asyncio.wait(tasks)
    status_codes = [d.result().status_code for d in done_tasks]
    return func.HttpResponse(body=json.dumps(status_codes), mimetype="application/json")

import os
import time

import azure.functions as func
import requests


def half_and_half(req: func.HttpRequest) -> func.HttpResponse:
    # Compute for 0.1 s of CPU time (measured by this thread's CPU clock, so the same on any
    # machine), then wait about as long for the upstream.
    start = time.thread_time()
    n = 0
    while time.thread_time() - start < 0.1:
        n += 1
    response = requests.get(os.environ["UPSTREAM_URL"], timeout=30)
    return func.HttpResponse(f"{n} loops, upstream {response.status_code}")

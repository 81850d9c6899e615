"""The same app with the heavy import inside the handler (notebook 06's cold start).

The worker is ready without pandas; the first invocation that needs it pays the import,
and Python's module cache makes every later one free.
"""

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="summary")
def summary(req: func.HttpRequest) -> func.HttpResponse:
    import pandas as pd  # lazy: paid by the first invocation, not by the worker's start

    frame = pd.DataFrame({"n": range(1000)})
    return func.HttpResponse(f"mean {frame.n.mean():.1f}")

"""An app that imports a heavy library at the top, as most apps do (notebook 06's cold start).

Every worker process pays pandas' import (and NumPy's under it) before it is ready, and holds
both in memory whether an invocation uses them or not.
"""

import azure.functions as func
import pandas as pd

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="summary")
def summary(req: func.HttpRequest) -> func.HttpResponse:
    frame = pd.DataFrame({"n": range(1000)})
    return func.HttpResponse(f"mean {frame.n.mean():.1f}")

"""A function that calls the app's other function at its own URL, as Azure-Samples apps do."""

from urllib.parse import urlsplit

import azure.functions as func
import requests

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="outer")
def outer(req: func.HttpRequest) -> func.HttpResponse:
    here = urlsplit(req.url)
    answer = requests.get(f"{here.scheme}://{here.netloc}/api/inner", timeout=10)
    answer.raise_for_status()
    return func.HttpResponse(f"outer got {answer.text}")


@app.route(route="inner")
def inner(req: func.HttpRequest) -> str:
    return "inner"

"""A request that changes state: each POST /api/buy takes one item from a stock of 40."""

import threading

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
STOCK = {"left": 40}  # per worker process, as an in-memory store would be
_lock = threading.Lock()


@app.route(route="buy", methods=["POST"])
def buy(req: func.HttpRequest) -> func.HttpResponse:
    with _lock:
        if STOCK["left"] == 0:
            return func.HttpResponse("sold out", status_code=409)
        STOCK["left"] -= 1
    return func.HttpResponse(status_code=201)


@app.route(route="stock", methods=["GET"])
def stock(req: func.HttpRequest) -> str:
    return str(STOCK["left"])

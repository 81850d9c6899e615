"""A REST app from blueprints: two functions on one route by method, constrained, optional
and catch-all route parameters, context, a queue output binding, a timer beside them."""

import azure.functions as func
from users import bp

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_blueprint(bp)


@app.route(route="files/{*path}", methods=["GET"])
def files(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"file {req.route_params.get('path', '')}")


@app.route(route="pages/{page:alpha?}", methods=["GET"])
def pages(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"page {req.route_params.get('page', 'index')}")


@app.route(route="broken", methods=["GET"])
def broken(req: func.HttpRequest) -> func.HttpResponse:
    raise ValueError("this function always fails")


@app.schedule(schedule="0 */5 * * * *", arg_name="timer")
def cleanup(timer: func.TimerRequest) -> None:
    pass

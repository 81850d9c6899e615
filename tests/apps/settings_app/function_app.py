"""App settings the way func start gives them: local.settings.json, %SETTING% expressions."""

import os

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="greet")
def greet(req: func.HttpRequest) -> func.HttpResponse:
    # KeyError (a 500) when local.settings.json was not read.
    return func.HttpResponse(os.environ["GREETING"])


@app.route(route="same", methods=["GET"])
def same_a(req: func.HttpRequest) -> str:
    return "a"


@app.route(route="/Same/", methods=["GET", "POST"])
def same_b(req: func.HttpRequest) -> str:  # conflicts with same_a: GET on the same route
    return "b"


@app.route(route="same", methods=["DELETE"])
def same_c(req: func.HttpRequest) -> str:  # same route, other method: no conflict
    return "c"


@app.route(route="admin/tools")
def tools(req: func.HttpRequest) -> str:  # under the host's own admin routes
    return "tools"


@app.queue_trigger(arg_name="msg", queue_name="%WORK_QUEUE%", connection="AzureWebJobsStorage")
def work(msg: func.QueueMessage) -> None:
    msg.get_json()


@app.queue_trigger(arg_name="msg", queue_name="%NO_SUCH_SETTING%", connection="AzureWebJobsStorage")
def lost(msg: func.QueueMessage) -> None:
    pass


@app.route(route="forward")
@app.queue_output(arg_name="out", queue_name="%NO_OUTPUT_QUEUE%", connection="AzureWebJobsStorage")
def forward(req: func.HttpRequest, out: func.Out[str]) -> str:  # its output's name: no setting
    out.set("x")
    return "sent"

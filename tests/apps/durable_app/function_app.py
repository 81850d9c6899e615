"""Durable Functions' quickstart shape: an HTTP starter with a durable client, an
orchestrator, an activity; and a plain HTTP route beside them."""

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="orchestrators/{functionName}")
@app.durable_client_input(client_name="client")
async def http_start(req: func.HttpRequest, client):
    instance_id = await client.start_new(req.route_params["functionName"])
    return client.create_check_status_response(req, instance_id)


@app.orchestration_trigger(context_name="context")
def hello_orchestrator(context):
    result = yield context.call_activity("hello", "Seattle")
    return [result]


@app.activity_trigger(input_name="city")
def hello(city: str):
    return f"Hello {city}"


@app.route(route="ping", methods=["GET"])
def ping(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("pong")

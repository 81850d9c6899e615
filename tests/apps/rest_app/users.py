import json
import logging

import azure.functions as func

bp = func.Blueprint()


@bp.route(route="users", methods=["GET"])
def list_users(req: func.HttpRequest) -> func.HttpResponse:
    # Repeated query keys reach the function joined by commas, as the host passes them.
    return func.HttpResponse(json.dumps({"role": req.params.get("role"), "url": req.url}))


@bp.route(route="users", methods=["POST"])
@bp.queue_output(arg_name="msg", queue_name="new-users", connection="AzureWebJobsStorage")
def create_user(
    req: func.HttpRequest, msg: func.Out[str], context: func.Context
) -> func.HttpResponse:
    user = req.get_json()
    logging.info("creating user %s", user["name"])
    msg.set(json.dumps({"name": user["name"], "by": context.function_name}))
    response = func.HttpResponse(json.dumps(user), status_code=201, mimetype="application/json")
    response.headers.add("Set-Cookie", "session=abc; Path=/")
    response.headers.add("Set-Cookie", "theme=dark")
    return response


@bp.route(route="users/{id:int}", methods=["GET"])
async def get_user(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    body = {
        "id": int(req.route_params["id"]),
        "function": context.function_name,
        "invocation_id": context.invocation_id,
        "agent": req.headers.get("x-agent"),
    }
    return func.HttpResponse(json.dumps(body), mimetype="application/json")

import azure.functions as func

bp = func.Blueprint()


@bp.route(route="items/{id}", methods=["GET", "POST"], auth_level=func.AuthLevel.FUNCTION)
async def item(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"item {req.route_params.get('id')}")

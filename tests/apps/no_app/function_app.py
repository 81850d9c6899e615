import azure.functions as func


def not_registered(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("nothing")

import azure.functions as func


async def hello(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("hello")

import a_package_this_app_forgot  # noqa: F401 - the import that fails
import azure.functions as func


def main(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("never")

import a_module_that_does_not_exist  # noqa: F401
import azure.functions as func

app = func.FunctionApp()

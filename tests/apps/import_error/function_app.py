import azure.functions as func

app = func.FunctionApp()

import a_module_that_does_not_exist  # noqa: E402, F401

"""Blob triggers of both sources, a blob input binding and blob output bindings."""

import azure.functions as func
from PIL import Image

app = func.FunctionApp()


@app.blob_trigger(arg_name="image", path="uploads/{name}", connection="AzureWebJobsStorage")
@app.blob_input(arg_name="mark", path="assets/mark.txt", connection="AzureWebJobsStorage")
@app.blob_output(arg_name="size", path="sizes/{name}.txt", connection="AzureWebJobsStorage")
def polled(image: func.InputStream, mark: func.InputStream, size: func.Out[str]) -> None:
    with Image.open(image) as opened:
        size.set(f"{mark.read().decode()} {image.name} {opened.width}x{opened.height}")

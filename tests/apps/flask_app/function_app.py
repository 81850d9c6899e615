"""A Flask app behind WsgiFunctionApp, as the Flask samples for Azure Functions write it."""

import os

import azure.functions as func
import requests
from flask import Flask, jsonify, request

flask_app = Flask(__name__)


@flask_app.get("/hello/<name>")
def hello(name: str):
    return jsonify(greeting=f"hello {name}", tags=request.args.getlist("tag"))


@flask_app.post("/echo")
def echo():
    return jsonify(received=request.get_json(), agent=request.headers.get("X-Agent"))


@flask_app.get("/upstream")
def upstream():
    # Blocking I/O in a def: the worker runs it on its thread pool.
    r = requests.get(os.environ["UPSTREAM_URL"], timeout=30)
    return jsonify(upstream_status=r.status_code)


app = func.WsgiFunctionApp(app=flask_app.wsgi_app, http_auth_level=func.AuthLevel.ANONYMOUS)

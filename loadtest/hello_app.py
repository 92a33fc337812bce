"""The framework's ceiling: a bare Flask JSON endpoint, served by the same gunicorn settings."""

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue

app = Flask(__name__)


@app.get("/healthz")
@app.get("/hello")
def hello() -> ResponseReturnValue:
    return jsonify({"code": 0, "message": "ok", "data": {"hello": "world"}})

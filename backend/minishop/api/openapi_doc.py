"""The served OpenAPI document: flask-openapi3's, plus the error envelope on every operation.

flask-openapi3 documents only the success responses we declare, and describes a 400 with its
own validation-error shape. Every operation can in fact answer with our error envelope (400 for
validation, 401, 429, 503, ...), so a client generator or a fuzzer (schemathesis, in the tests)
must see that: each operation gets `400` and `default` responses with the ErrorEnvelope schema.
An operation marked `x-own-error-format` (WeChat Pay's notify endpoint, whose caller is WeChat)
declares its answers itself and keeps them.
"""

from __future__ import annotations

from typing import Any

from flask_openapi3 import OpenAPI

from minishop.envelope import ErrorEnvelope

REF_PREFIX = "#/components/schemas/"
OWN_ERROR_FORMAT = "x-own-error-format"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _error_response(description: str) -> dict[str, Any]:
    schema = {"$ref": f"{REF_PREFIX}{ErrorEnvelope.__name__}"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def document(app: OpenAPI) -> dict[str, Any]:
    """A copy of the app's document with the error responses added (the app's own stays as is)."""
    doc: dict[str, Any] = {**app.api_doc, "paths": {}}
    schema = ErrorEnvelope.model_json_schema(ref_template=f"{REF_PREFIX}{{model}}")
    components = dict(doc.get("components", {}))
    components["schemas"] = {
        **components.get("schemas", {}),
        **schema.pop("$defs", {}),
        ErrorEnvelope.__name__: schema,
    }
    doc["components"] = components
    for path, item in app.api_doc["paths"].items():
        doc["paths"][path] = {
            method: (
                operation
                | {
                    "responses": operation.get("responses", {})
                    | {
                        "400": _error_response("invalid parameters (see the error envelope)"),
                        "default": _error_response("error: see `code` in the envelope"),
                    }
                }
                if method in HTTP_METHODS and not operation.get(OWN_ERROR_FORMAT)
                else operation
            )
            for method, operation in item.items()
        }
    return doc

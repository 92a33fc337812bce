"""GET /docs: the API reference for people, Swagger UI rendering /openapi.json.

The Swagger UI files come from the pinned `flask-openapi3-swagger` package and are served by the
app under /docs/static/, so the page loads nothing from another host. Being HTML that runs
scripts, it cannot have the API's `default-src 'none'` policy: it gets its own, which allows this
origin's scripts, styles, images and fetches only. With no inline script (the start-up code is a
file too), that policy needs no 'unsafe-inline'. A plain Flask blueprint, so the page is no API
operation of /openapi.json.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from flask import Blueprint, Response, abort, render_template_string, send_from_directory, url_for

bp = Blueprint("docs", __name__)

SWAGGER_UI_DIR = Path(str(resources.files("flask_openapi3_swagger"))) / "templates" / "swagger"
# The files the page uses, by the name they are served under.
SWAGGER_UI_FILES = {
    "swagger-ui-bundle.js": "js/swagger-ui-bundle.js",
    "swagger-ui.css": "css/swagger-ui.css",
    "swagger.svg": "images/swagger.svg",
}
START_SCRIPT = "docs.js"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",  # swagger-ui.css draws its icons as data: URLs
        "connect-src 'self'",  # the document, and "Try it out"
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    ]
)

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>MiniShop API reference</title>
<link rel="icon" href="{{ asset('swagger.svg') }}">
<link rel="stylesheet" href="{{ asset('swagger-ui.css') }}">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{{ openapi_url }}"></div>
<script src="{{ asset('swagger-ui-bundle.js') }}"></script>
<script src="{{ asset('docs.js') }}"></script>
</body>
</html>
"""

# No validator badge (it would call a public validator) and no top bar (it would let the page
# load any other URL's document).
START = """window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    domNode: root,
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
"""


def _asset_url(name: str) -> str:
    return url_for("docs.asset", name=name)


@bp.get("/docs")
def page() -> Response:
    html = render_template_string(PAGE, asset=_asset_url, openapi_url=url_for("openapi_document"))
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response


@bp.get("/docs/static/<name>")
def asset(name: str) -> Response:
    if name == START_SCRIPT:
        return Response(START, mimetype="text/javascript")
    if name not in SWAGGER_UI_FILES:
        abort(404)
    return send_from_directory(SWAGGER_UI_DIR, SWAGGER_UI_FILES[name])

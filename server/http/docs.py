"""`GET /docs`: Swagger UI over `GET /openapi.json`, to read the API and try it from a browser.

The service runs air-gapped, so the page loads nothing from a CDN: Swagger UI's files come from the
swagger-ui-py wheel and are served from here, and the page's Content-Security-Policy lets the
browser fetch only from this server.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

DOCS = "/docs"
ASSETS = "/docs/assets"
INIT = "/docs/init.js"
SPEC = "/openapi.json"

# The files of the distribution the page uses; the wheel holds more (the editor, source maps).
ASSET_FILES = ("swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png")

# Paths a browser must reach without an API key to show the page; the API calls made from the page
# still need one. The description of the API is not secret.
DOCS_PUBLIC_PATHS = (DOCS, INIT, SPEC, *(f"{ASSETS}/{name}" for name in ASSET_FILES))

# Only this server: scripts and styles from files (no inline script), images inline (Swagger UI's
# icons are data: URIs), requests to this origin. A stray request to the internet is blocked and
# reported in the console instead of hanging on a network that is not there.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>rerank-server API</title>
<link rel="stylesheet" href="{ASSETS}/swagger-ui.css">
<link rel="icon" type="image/png" href="{ASSETS}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{ASSETS}/swagger-ui-bundle.js"></script>
<script src="{INIT}"></script>
</body>
</html>
"""

# validatorUrl null: the default sends the document to validator.swagger.io, off this machine.
INIT_JS = f"""window.ui = SwaggerUIBundle({{
  url: "{SPEC}",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  displayRequestDuration: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
}});
"""


def swagger_ui_dir() -> Path:
    """The wheel's static folder, found without importing `swagger_ui` (its framework glue pulls
    in jinja2 and yaml for nothing)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed; it serves /docs (pip install swagger-ui-py)")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


async def docs_page(request: Request) -> Response:
    """The page, under the policy that keeps it on this server; not cached, so that a new version of
    the server never meets an old page."""
    return HTMLResponse(PAGE, headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"})


async def docs_init(request: Request) -> Response:
    """The page's configuration, as a file so that the policy can forbid inline scripts."""
    return Response(INIT_JS, media_type="text/javascript", headers={"Cache-Control": "no-cache"})


DOCS_ROUTES: list[BaseRoute] = [
    Route(DOCS, docs_page, methods=["GET"]),
    Route(INIT, docs_init, methods=["GET"]),
    Mount(ASSETS, app=StaticFiles(directory=swagger_ui_dir()), name="docs-assets"),
]

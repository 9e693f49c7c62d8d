"""The chat page at ``/``, liveness and readiness, and the API docs at ``/docs`` (Swagger UI served from
this process: nothing is fetched from a CDN)."""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from rq import Worker
from starlette.concurrency import run_in_threadpool

from genpool.gateway.auth import gateway

router = APIRouter(tags=["service"])
DOCS_STATIC = "/docs-static"


@router.get("/", include_in_schema=False)
async def page() -> HTMLResponse:
    """The chat page (one HTML file, no build step)."""
    html = resources.files("genpool.gateway").joinpath("page/index.html").read_text(encoding="utf-8")
    return HTMLResponse(html, headers={"Cache-Control": "no-cache"})


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Redis unreachable or the event reader stopped"}})
async def readyz(request: Request) -> Any:
    """Ready to take jobs: Redis answers and the event reader runs; also how many workers are registered."""
    gw = gateway(request)
    try:
        await gw.redis.ping()
        workers = await run_in_threadpool(Worker.count, connection=gw.pool.connection)
    except Exception:  # noqa: BLE001 - not ready is the answer, whatever the cause
        return JSONResponse({"code": "not_ready", "message": "the queue (Redis) cannot be reached"}, status_code=503)
    if not gw.hub.running:
        return JSONResponse({"code": "not_ready", "message": "the event reader is not running"}, status_code=503)
    return {"status": "ready", "workers": workers, "following": gw.hub.following()}


def mount_docs(app: FastAPI) -> None:
    static = resources.files("fastapi_offline").joinpath("static")
    app.mount(DOCS_STATIC, StaticFiles(directory=str(static)), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title="genpool gateway",
                                   swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_STATIC}/favicon.png")
